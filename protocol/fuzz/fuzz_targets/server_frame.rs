//! Server frames as clients parse them: typed events, plain frames, room lists.
#![cfg_attr(feature = "libfuzzer", no_main)]

mod engine;

fn check(data: &[u8]) {
    chat_protocol_fuzz::server_frame(&chat_protocol_fuzz::text_of(data));
}

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    engine::run(check);
}
