//! `RoomName::new` / `validate_room_name` and `UserName::new`.
#![cfg_attr(feature = "libfuzzer", no_main)]

mod engine;

fn check(data: &[u8]) {
    let text = chat_protocol_fuzz::text_of(data);
    chat_protocol_fuzz::room_name(&text);
    chat_protocol_fuzz::user_name(&text);
}

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    engine::run(check);
}
