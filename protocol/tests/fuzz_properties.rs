//! The short fuzzing run that CI does: property tests (proptest) over the
//! parsers of untrusted input, checking the properties in `fuzz_checks`,
//! the same ones the long AFL++ runs in `fuzz/` check.
//!
//! Each parser gets two kinds of input: arbitrary bytes or strings, and
//! generated near-valid input (JSON objects with the protocol's keys, names
//! from the edges of the rules, URLs built from tricky parts) so that the
//! cases get past the JSON syntax and the first checks quickly. The case
//! counts keep the whole file to a few seconds in a debug build; set
//! `PROPTEST_CASES` to run more.

mod fuzz_checks;

use std::time::Duration;

use chat_protocol::close::{Advice, Backoff};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use fuzz_checks::{FORBIDDEN_IN_USER_NAMES, WHITE_SPACE};

/// Cases per property: enough to cover the generators' branches in CI,
/// small enough for a few seconds in all. `PROPTEST_CASES` overrides it.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------

/// Arbitrary bytes, read as the fuzz targets read them.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..200)
}

/// Strings that exercise JSON string escapes and the encoder: ASCII, the
/// escaped characters, controls, non-ASCII up to the astral planes.
fn message_text() -> impl Strategy<Value = String> {
    let interesting = select(vec![
        "",
        "hi",
        " ",
        "\"",
        "\\",
        "/",
        "\n",
        "\r",
        "\t",
        "\u{8}",
        "\u{c}",
        "\0",
        "\u{1f}",
        "\u{7f}",
        "\u{80}",
        "é",
        "日本",
        "🦀",
        "\u{2028}",
        "\u{feff}",
        "\u{ffff}",
        "\u{10ffff}",
        "<script>",
        "\\u0000",
    ]);
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(interesting, 0..6).prop_map(|parts| parts.concat()),
    ]
}

/// A JSON value for one field of a frame: mostly strings, sometimes the
/// wrong type.
fn field_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => message_text().prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,3}", inner), 0..3)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// JSON text for a value, or a literal that `Value` cannot produce (huge
/// and precise numbers, escaped lone surrogates, deep nesting).
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => field_value().prop_map(|v| v.to_string()),
        1 => select(vec![
            "1e400", "-0", "1.0", "18446744073709551616", "-1", "\"\\ud800\"",
            "\"\\udc00\\ud800\"", "\"\\u00e9\"", "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]", "{}",
            "\"\\/\"",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A key as JSON, sometimes with a needless escape (`"mess\u0061ge"`).
fn json_key(key: &str) -> String {
    match key.strip_suffix('~') {
        Some(plain) => {
            let mut chars = plain.chars();
            let first = chars.next().unwrap_or('x');
            format!("\"\\u{:04x}{}\"", u32::from(first), chars.as_str())
        }
        None => Value::from(key).to_string(),
    }
}

/// Values for the `type` field of a client frame.
fn client_type() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["chat", "me", "nick", "nick", "history", "history", "", "CHAT", "Me", "shout"])
            .prop_map(|t| Value::from(t).to_string()),
        1 => value_text(),
    ]
}

/// A JSON string holding generated text.
fn json_string(text: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    text.prop_map(|t| Value::from(t).to_string())
}

/// An object from `(key, value text)` pairs in a random order, with random
/// white space, sometimes with one pair repeated.
fn object_of(
    fields: impl Strategy<Value = Vec<(&'static str, String)>>,
) -> impl Strategy<Value = String> {
    let ws = select(vec!["", "", "", " ", "\n", "\t", "\r\n  "]);
    (fields, ws, 0..16usize).prop_flat_map(|(mut fields, ws, repeat)| {
        if repeat < fields.len() && repeat % 4 == 0 {
            let again = fields[repeat].clone();
            fields.push(again);
        }
        Just(fields).prop_shuffle().prop_map(move |fields| {
            let parts: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{ws}{}{ws}:{ws}{value}", json_key(key)))
                .collect();
            format!("{{{}}}", parts.join(","))
        })
    })
}

/// A field that is usually present and usually well typed.
fn field(
    key: &'static str,
    value: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<Option<(&'static str, String)>> {
    proptest::option::weighted(0.95, prop_oneof![24 => value, 1 => value_text()])
        .prop_map(move |value| value.map(|value| (key, value)))
        .boxed()
}

/// The fields of an object, from per-field strategies, plus a few unknown
/// fields (sometimes spelt with an escape, which makes them known).
fn fields_of(
    fields: Vec<BoxedStrategy<Option<(&'static str, String)>>>,
    extra_keys: Vec<&'static str>,
) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let extras = proptest::collection::vec((select(extra_keys), value_text()), 0..2);
    (fields, extras)
        .prop_map(|(fields, extras)| fields.into_iter().flatten().chain(extras).collect())
}

/// Client frames: objects with the protocol's keys (and a few others),
/// then sometimes cut short or with a byte changed.
fn client_frame_text() -> impl Strategy<Value = String> {
    let fields = vec![
        proptest::option::weighted(0.6, client_type())
            .prop_map(|v| v.map(|v| ("type", v)))
            .boxed(),
        field("message", json_string(message_text())),
        proptest::option::weighted(0.5, json_string(user_name_candidate()))
            .prop_map(|v| v.map(|v| ("name", v)))
            .boxed(),
        history_number("before"),
        history_number("after"),
        history_number("limit"),
        proptest::option::weighted(0.3, json_string(message_text()))
            .prop_map(|v| v.map(|v| ("q", v)))
            .boxed(),
        proptest::option::weighted(0.2, json_string(message_text()))
            .prop_map(|v| v.map(|v| ("ref", v)))
            .boxed(),
    ];
    let extra = vec!["user", "x", "message~", "type~", "name~", "id"];
    mutated(prop_oneof![
        8 => object_of(fields_of(fields, extra)),
        1 => value_text(),
    ])
}

/// A number field of a history frame: small, huge, negative or fractional.
fn history_number(key: &'static str) -> BoxedStrategy<Option<(&'static str, String)>> {
    let value = prop_oneof![
        4 => (0u64..1200).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => select(vec!["-1", "1.5", "1e3", "null", "\"5\"", "9223372036854775808"]).prop_map(str::to_owned),
    ];
    proptest::option::weighted(0.3, value)
        .prop_map(move |v| v.map(|v| (key, v)))
        .boxed()
}

/// A room as JSON: usually valid, sometimes not.
fn room_value() -> impl Strategy<Value = String> {
    json_string(prop_oneof![
        4 => proptest::string::string_regex("[a-zA-Z0-9._-]{1,12}").unwrap_or_else(|e| panic!("{e}")),
        1 => room_name_candidate(),
    ])
}

fn u64_value() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|n| n.to_string())
}

fn text_value() -> impl Strategy<Value = String> {
    json_string(message_text())
}

/// The fields of a chat event (as in `welcome.history` or a `chat` event).
fn chat_fields() -> Vec<BoxedStrategy<Option<(&'static str, String)>>> {
    vec![
        field("message", text_value()),
        field("user", text_value()),
        field("room", room_value()),
        field("id", u64_value()),
        field("ts", u64_value()),
        field("emote", any::<bool>().prop_map(|b| b.to_string())),
    ]
}

/// `"type": kind`, usually.
fn type_field(kind: &'static str) -> BoxedStrategy<Option<(&'static str, String)>> {
    field("type", Just(Value::from(kind).to_string()))
}

/// Server frames: events of every type with plausible and implausible
/// fields, plain frames and room lists, then sometimes mutated.
fn server_frame_text() -> impl Strategy<Value = String> {
    let extra = || vec!["x", "type~", "message~", "room~", "emote"];
    let chat = |with_type: bool| {
        let mut fields = chat_fields();
        if with_type {
            fields.push(type_field("chat"));
        }
        object_of(fields_of(fields, extra())).boxed()
    };
    let history = proptest::collection::vec(chat(false), 0..3)
        .prop_map(|items| format!("[{}]", items.join(",")));
    let members = proptest::collection::vec(text_value(), 0..3)
        .prop_map(|items| format!("[{}]", items.join(",")));
    let welcome = vec![
        type_field("welcome"),
        field("message", text_value()),
        field("room", room_value()),
        field("user", text_value()),
        field("members", members),
        field("history", history),
        field("last_id", u64_value()),
        field("missed", u64_value()),
        field("epoch", text_value()),
        field("ts", u64_value()),
    ];
    let presence = |kind| {
        vec![
            type_field(kind),
            field("message", text_value()),
            field("user", text_value()),
            field("room", room_value()),
            field("ts", u64_value()),
        ]
    };
    let nick = vec![
        type_field("nick"),
        field("message", text_value()),
        field("user", text_value()),
        field("old", text_value()),
        field("room", room_value()),
        field("ts", u64_value()),
    ];
    let code = json_string(
        select(vec![
            "invalid_json",
            "not_an_object",
            "missing_message",
            "message_not_string",
            "unknown_type",
            "invalid_name",
            "rate_limited",
            "unavailable",
            "lagged",
            "other",
            "brand_new",
            "Lagged",
        ])
        .prop_map(str::to_owned),
    );
    let error = vec![
        type_field("error"),
        field("message", text_value()),
        field("code", code),
        field("ts", u64_value()),
    ];
    let unknown = vec![
        field(
            "type",
            json_string(select(vec!["typing", "unknown", "Chat", ""]).prop_map(str::to_owned)),
        ),
        field("message", text_value()),
        field("user", text_value()),
    ];
    let plain = vec![field("message", text_value())];
    let summary = object_of(fields_of(
        vec![field("name", room_value()), field("members", u64_value())],
        extra(),
    ));
    let rooms = vec![field(
        "rooms",
        proptest::collection::vec(summary, 0..3).prop_map(|items| format!("[{}]", items.join(","))),
    )];
    let object = |fields| object_of(fields_of(fields, extra())).boxed();
    mutated(prop_oneof![
        object(welcome),
        chat(true),
        object(presence("join")),
        object(presence("leave")),
        object(nick),
        object(error),
        object(unknown),
        object(plain),
        object(rooms),
    ])
}

/// Sometimes cuts the text short, or replaces one byte (keeping UTF-8).
fn mutated(text: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (text, 0..16u8, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(text, what, at, byte)| {
        let mut bytes = text.into_bytes();
        if bytes.is_empty() {
            return String::new();
        }
        let at = at.index(bytes.len());
        match what {
            0 => bytes.truncate(at),
            1 => bytes[at] = byte,
            2 => bytes.insert(at, byte),
            _ => {}
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Room-name candidates at the edges of the rule: the allowed alphabet
/// with a few outsiders, around the length limit, dot names.
fn room_name_candidate() -> impl Strategy<Value = String> {
    let allowed = "[a-zA-Z0-9._-]";
    prop_oneof![
        3 => proptest::string::string_regex(&format!("{allowed}{{0,12}}"))
            .unwrap_or_else(|e| panic!("{e}")),
        2 => proptest::string::string_regex(&format!("{allowed}{{95,105}}"))
            .unwrap_or_else(|e| panic!("{e}")),
        2 => proptest::string::string_regex(r"[a-z.]{0,4}[ /\\%é\x00\x7f日<>:?#+~,]?[a-z.]{0,4}")
            .unwrap_or_else(|e| panic!("{e}")),
        1 => select(vec![".", "..", "...", "-", "_", "a..b", "./", "%2e", "\u{130}", "\u{212a}"])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// One character for a display name: ordinary letters, white space,
/// forbidden characters and their neighbours.
fn user_name_char() -> impl Strategy<Value = char> {
    let edges: Vec<char> = FORBIDDEN_IN_USER_NAMES
        .iter()
        .chain(WHITE_SPACE)
        .flat_map(|&(lo, hi)| [lo.saturating_sub(1), lo, hi, hi + 1])
        .filter_map(char::from_u32)
        .collect();
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => select(edges),
        1 => select(vec![' ', 'é', '山', '🦀', '\u{ffa0}', '\u{1d173}', '\u{34f}', '\u{fe0f}']),
        1 => any::<char>(),
    ]
}

/// Display-name candidates, around the length limit too.
fn user_name_candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(user_name_char(), 0..8),
        1 => proptest::collection::vec(user_name_char(), 30..35),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

/// Server addresses built from parts that stress the parser: every scheme
/// and none, user info, odd hosts and ports, paths with dot segments,
/// repeated slashes, escapes, queries and fragments, surrounding spaces.
fn server_url_candidate() -> impl Strategy<Value = String> {
    let scheme = select(vec![
        "ws://",
        "wss://",
        "http://",
        "https://",
        "",
        "",
        "WS://",
        "Https://",
        "ftp://",
        "file://",
        "ws:",
        "ws:/",
        "javascript:",
        "ws:\\\\",
    ]);
    let userinfo = select(vec!["", "", "", "user@", "u:p@", ":@", "a%40b@", "@"]);
    let host = select(vec![
        "h",
        "127.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:1.2.3.4]",
        "example.com",
        "EXAMPLE.com.",
        "Bücher.de",
        "xn--bcher-kva.de",
        "xn--",
        "",
        "ex ample",
        "%41",
        "0x7f.1",
        "1.2.3",
        "[::1",
        "h\t",
        "a_b",
        "*",
    ]);
    let port = select(vec![
        "", "", "", ":", ":0", ":80", ":443", ":8000", ":65535", ":65536", ":x", ":-1",
    ]);
    let segment = select(vec![
        "/",
        "//",
        "/a",
        "/a/",
        "/..",
        "/.",
        "/./",
        "/%2e%2e/",
        "/%2E",
        "/a b",
        "/é",
        "/?",
        "/?x=1",
        "/#f",
        "#",
        "?",
        "\\",
        "/ws/chat/x/",
        "/%2f",
        "/;p",
        "/a:b",
    ]);
    let path = proptest::collection::vec(segment, 0..4).prop_map(|parts| parts.concat());
    let pad = select(vec!["", "", " ", "\t", "\n "]);
    (pad.clone(), scheme, userinfo, host, port, path, pad)
        .prop_map(|(a, s, u, h, p, path, b)| format!("{a}{s}{u}{h}{p}{path}{b}"))
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn client_frames_from_arbitrary_bytes(data in bytes()) {
        fuzz_checks::client_frame(&fuzz_checks::text_of(&data));
    }

    #[test]
    fn server_frames_from_arbitrary_bytes(data in bytes()) {
        fuzz_checks::server_frame(&fuzz_checks::text_of(&data));
    }

    #[test]
    fn names_from_arbitrary_bytes(data in bytes()) {
        let text = fuzz_checks::text_of(&data);
        fuzz_checks::room_name(&text);
        fuzz_checks::user_name(&text);
    }

    #[test]
    fn server_urls_from_arbitrary_bytes(data in bytes()) {
        fuzz_checks::server_url(&fuzz_checks::text_of(&data));
    }

    #[test]
    fn plain_encode_of_arbitrary_text(text in message_text()) {
        fuzz_checks::plain_encode(&text);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn client_frames_near_the_rules(text in client_frame_text()) {
        fuzz_checks::client_frame(&text);
    }

    #[test]
    fn server_frames_near_the_rules(text in server_frame_text()) {
        fuzz_checks::server_frame(&text);
    }

    #[test]
    fn room_names_near_the_rule(name in room_name_candidate()) {
        fuzz_checks::room_name(&name);
    }

    #[test]
    fn user_names_near_the_rule(name in user_name_candidate()) {
        fuzz_checks::user_name(&name);
    }

    #[test]
    fn server_urls_from_tricky_parts(input in server_url_candidate()) {
        fuzz_checks::server_url(&input);
    }
}

// ---------------------------------------------------------------------------
// Reconnect advice and backoff: not parsers, but they take numbers from the
// server (close codes, HTTP statuses) and from callers.
// ---------------------------------------------------------------------------

/// Any duration, the extremes included.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
        (0..100u64).prop_map(Duration::from_secs),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn close_advice_never_panics(code in any::<Option<u16>>(), status in any::<u16>()) {
        let _ = Advice::for_close_code(code);
        let _ = Advice::for_http_status(status);
    }

    #[test]
    fn backoff_never_panics(
        base in duration(),
        cap in duration(),
        waits in proptest::collection::vec(duration(), 1..24),
    ) {
        let mut backoff = Backoff::new(base, cap);
        for min_delay in waits {
            let delay = backoff.next_delay(min_delay);
            prop_assert!(delay >= min_delay, "{delay:?} < {min_delay:?}");
            if min_delay.is_zero() {
                prop_assert!(delay <= cap, "{delay:?} > cap {cap:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The seeds of the long runs: every file under `fuzz/seeds/<target>/` is
// checked by its target's properties, so the hand-written starting corpus and
// every input a fuzzer once broke the code with (`fuzz/seeds/*/regression-*`)
// stay in CI.
// ---------------------------------------------------------------------------

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), data)
        })
        .collect()
}

#[test]
fn seeds_of_client_frame() {
    for (_, data) in seeds("client_frame") {
        fuzz_checks::client_frame(&fuzz_checks::text_of(&data));
    }
}

#[test]
fn seeds_of_server_frame() {
    for (_, data) in seeds("server_frame") {
        fuzz_checks::server_frame(&fuzz_checks::text_of(&data));
    }
}

#[test]
fn seeds_of_plain_encode() {
    for (_, data) in seeds("plain_encode") {
        fuzz_checks::plain_encode(&fuzz_checks::text_of(&data));
    }
}

#[test]
fn seeds_of_names() {
    for (_, data) in seeds("names") {
        let text = fuzz_checks::text_of(&data);
        fuzz_checks::room_name(&text);
        fuzz_checks::user_name(&text);
    }
}

#[test]
fn seeds_of_server_url() {
    for (_, data) in seeds("server_url") {
        fuzz_checks::server_url(&fuzz_checks::text_of(&data));
    }
}

// ---------------------------------------------------------------------------
// The oracles themselves, on the documented examples, so that a wrong
// oracle cannot make the properties vacuous.
// ---------------------------------------------------------------------------

#[test]
fn oracles_agree_with_the_documented_examples() {
    use fuzz_checks::{python_json_dumps_message, room_name_oracle, user_name_oracle};
    assert!(room_name_oracle("lobby") && room_name_oracle("A-b_c.9") && room_name_oracle("..."));
    assert!(room_name_oracle(&"x".repeat(100)) && !room_name_oracle(&"x".repeat(101)));
    for bad in ["", ".", "..", "a b", "café", "../x"] {
        assert!(!room_name_oracle(bad), "{bad:?}");
    }
    assert!(user_name_oracle("Zoë 🦀") && user_name_oracle(&"é".repeat(32)));
    for bad in [
        "",
        " bob",
        "bob\u{a0}",
        "a\u{202e}b",
        "a\tb",
        &"é".repeat(33),
    ] {
        assert!(!user_name_oracle(bad), "{bad:?}");
    }
    assert_eq!(
        python_json_dumps_message("hé 🦀\n\u{7f}\""),
        r#"{"message": "h\u00e9 \ud83e\udd80\n\u007f\""}"#
    );
}

// ---------------------------------------------------------------------------
// Against the real thing: CPython's json.dumps. Not run by default (it needs
// python3); the long fuzzing sessions run it over the plain_encode corpus:
//
//   FUZZ_CORPUS=fuzz/out/plain_encode/default/queue \
//     cargo test -p chat-protocol --test fuzz_properties -- --ignored
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs python3; the long fuzzing sessions run it"]
fn plain_encode_matches_cpython_json_dumps() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let mut messages: Vec<String> = seeds("plain_encode")
        .into_iter()
        .map(|(_, data)| fuzz_checks::text_of(&data).into_owned())
        .collect();
    // Every character below U+0100 alone, then a few far beyond.
    messages.extend((0..0x100u32).filter_map(char::from_u32).map(String::from));
    messages.extend(
        [
            '\u{7ff}',
            '\u{800}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            '\u{10000}',
            '\u{10ffff}',
        ]
        .map(String::from),
    );
    if let Ok(dir) = std::env::var("FUZZ_CORPUS") {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{dir}: {e}")).path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                messages.push(fuzz_checks::text_of(&data).into_owned());
            }
        }
    }

    let script = "import json, sys\n\
                  for line in sys.stdin:\n    \
                      print(json.dumps({'message': json.loads(line)}))\n";
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut input = String::new();
    for message in &messages {
        input.push_str(&serde_json::to_string(message).expect("a string serialises"));
        input.push('\n');
    }
    let mut stdin = python.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = python.wait_with_output().expect("python3 finishes");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python3");
    assert!(output.status.success(), "python3 failed");
    let printed = String::from_utf8(output.stdout).expect("json.dumps prints ASCII");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), messages.len());
    for (message, line) in messages.iter().zip(lines) {
        assert_eq!(
            chat_protocol::PlainMessage::encode(message),
            line,
            "{message:?}"
        );
    }
    eprintln!(
        "{} messages encoded exactly as CPython does",
        messages.len()
    );
}
