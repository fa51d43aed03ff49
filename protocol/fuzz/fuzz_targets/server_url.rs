//! `ServerUrl::parse` and the URLs built from what it accepts.
#![cfg_attr(feature = "libfuzzer", no_main)]

mod engine;

fn check(data: &[u8]) {
    chat_protocol_fuzz::server_url(&chat_protocol_fuzz::text_of(data));
}

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    engine::run(check);
}
