//! Inputs that fuzzing (`tests/fuzz_properties.rs`, or the AFL++ targets in
//! `fuzz/`) once broke a property with, each pinned as a plain test that
//! names what went wrong. The same inputs sit in `fuzz/seeds/*/regression-*`
//! so that the long runs start from them too.

use chat_protocol::ServerUrl;

/// Found by `server_urls_from_tricky_parts` as `ws:\\h/..`: a server mounted
/// under a path ending in `//` printed with one slash less, which parses as
/// another server (prefix `/` instead of `//`).
#[test]
fn a_server_url_prints_as_itself_when_its_prefix_ends_with_two_slashes() {
    for input in ["ws://h//", "http://h/chat//", "ws:\\\\h/.."] {
        let server = ServerUrl::parse(input).unwrap();
        let shown = server.to_string();
        assert_eq!(
            ServerUrl::parse(&shown),
            Ok(server),
            "{input:?} shown as {shown:?}"
        );
    }
    assert_eq!(
        ServerUrl::parse("ws://h//").unwrap().to_string(),
        "ws://h//"
    );
    // The usual case keeps its short form.
    assert_eq!(
        ServerUrl::parse("ws://h/p/").unwrap().to_string(),
        "ws://h/p"
    );
    assert_eq!(ServerUrl::parse("ws://h").unwrap().to_string(), "ws://h");
}

/// Seen while reading `close.rs` for the fuzz properties, then shown by
/// `backoff_never_panics`: a `min_delay` near `Duration::MAX` overflowed
/// `min_delay + jitter / 4` ("overflow when adding durations"). No close
/// code asks for such a wait, but `next_delay` is public.
#[test]
fn backoff_saturates_instead_of_overflowing() {
    use chat_protocol::close::Backoff;
    use std::time::Duration;

    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(backoff.next_delay(Duration::MAX), Duration::MAX);
    let mut backoff = Backoff::new(Duration::MAX, Duration::MAX);
    assert!(backoff.next_delay(Duration::MAX) >= Duration::MAX / 2);
}
