//! The properties that the fuzz targets check, shared by the property tests
//! (`tests/fuzz_properties.rs`, run by `cargo test` in CI) and the AFL++
//! targets in `fuzz/` (long runs, see `fuzz/README.md`), so that a short CI
//! run and a long fuzzing session check exactly the same things.
//!
//! Every function takes untrusted input, must not panic for any input, and
//! panics (with the input in the message) when a property is broken, which
//! is how both a property test and a fuzzer notice it.
//!
//! The oracles here are written independently of `src/`: from the documented
//! rules (the crate docs, `ROOM_NAME_RULE`, `USER_NAME_RULE`, the display-name
//! module doc) and from Python's `json.dumps`, not by calling the code under
//! test.

// Each user (the property tests, every fuzz target) uses its own subset.
#![allow(dead_code)]

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chat_protocol::{
    ClientMessage, ErrorCode, HistoryQuery, HistoryRequest, PlainMessage, ROOM_NAME_MAX_LEN,
    ROOM_NAME_RULE, RoomList, RoomName, RoomNameError, SearchWords, ServerEvent, ServerUrl,
    USER_NAME_MAX_LEN, USER_NAME_RULE, UserName, UserNameError, validate_room_name,
    validate_user_name,
};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Fuzzers hand over bytes; the server only ever parses valid UTF-8 (a text
/// frame with invalid UTF-8 is closed with 1007 before parsing). Invalid
/// bytes are replaced, so that every input still exercises the parser.
pub fn text_of(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

// ---------------------------------------------------------------------------
// Client frames: `ClientMessage::from_json`, which the server runs on every
// text frame a client sends.
// ---------------------------------------------------------------------------

/// `ClientMessage::from_json` never panics, agrees with an independent
/// reading of the frame rules, round-trips what it accepts, and explains
/// what it refuses.
pub fn client_frame(text: &str) {
    let parsed = ClientMessage::from_json(text);
    match &parsed {
        Ok(message) => {
            let json = message.to_json();
            assert_eq!(
                ClientMessage::from_json(&json).as_ref(),
                Ok(message),
                "accepted frame {text:?} does not round-trip through {json:?}"
            );
            if let ClientMessage::Chat { message } = message {
                // A chat message is exactly the tutorial's frame.
                let plain: PlainMessage = serde_json::from_str(&json)
                    .unwrap_or_else(|err| panic!("{json:?} is not a plain frame: {err}"));
                assert_eq!(&plain.message, message);
            }
        }
        Err(err) => {
            let reason = err.to_string();
            assert!(!reason.is_empty(), "empty error for {text:?}: {err:?}");
            // The code is what the server reports: it must have a wire name.
            let code = serde_json::to_string(&err.code())
                .unwrap_or_else(|e| panic!("error code of {text:?} does not serialise: {e}"));
            assert!(code.len() > 2, "empty wire name for {:?}", err.code());
        }
    }
    let expected = expected_client_frame(text);
    let actual = parsed.map_err(|err| err.code());
    assert_eq!(
        actual, expected,
        "ClientMessage::from_json({text:?}) disagrees with the frame rules"
    );
}

/// The frame rules of the crate docs, read independently of `from_json`:
/// a frame is one JSON object; `type` absent or null means "chat"; "chat"
/// and "me" need a string `message`; "nick" needs a string `name` that is a
/// valid display name; unknown fields are ignored.
///
/// Two behaviours that the docs do not spell out are pinned here too, both
/// from serde_json: a known field (`type`, `message`, `name`) given twice
/// makes the frame invalid JSON (serde refuses duplicate fields, where
/// Python's `json.loads` keeps the last one), and so does a known field
/// holding a number out of `f64` range (`1e400`) or a string with a lone
/// surrogate escape (`"\ud800"`), which the JSON grammar allows but serde_json
/// cannot represent. In unknown fields, and as a top-level value that is not
/// an object, both are fine: they are skipped, not represented.
fn expected_client_frame(text: &str) -> Result<ClientMessage, ErrorCode> {
    if serde_json::from_str::<IgnoredAny>(text).is_err() {
        return Err(ErrorCode::InvalidJson);
    }
    // The text is JSON, so its first token says what kind of value it is.
    if !text
        .trim_start_matches(['\t', '\n', '\r', ' '])
        .starts_with('{')
    {
        return Err(ErrorCode::NotAnObject);
    }
    let Ok(Fields(fields)) = serde_json::from_str::<Fields>(text) else {
        return Err(ErrorCode::InvalidJson);
    };
    let field = |key: &str| -> Result<Option<&Value>, ErrorCode> {
        let mut found = fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(ErrorCode::InvalidJson);
        }
        Ok(first)
    };
    let kind = field("type")?;
    let message = field("message")?;
    let name = field("name")?;
    let kind = match kind {
        None | Some(Value::Null) => "chat",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(ErrorCode::UnknownType),
    };
    let message = || match message {
        Some(Value::String(text)) => Ok(text.clone()),
        None => Err(ErrorCode::MissingMessage),
        Some(_) => Err(ErrorCode::MessageNotString),
    };
    match kind {
        "chat" => Ok(ClientMessage::Chat {
            message: message()?,
        }),
        "me" => Ok(ClientMessage::Emote {
            message: message()?,
        }),
        "nick" => match name {
            Some(Value::String(name)) if user_name_oracle(name) => Ok(ClientMessage::Nick {
                name: UserName::new(name.clone()).map_err(|_| ErrorCode::InvalidName)?,
            }),
            _ => Err(ErrorCode::InvalidName),
        },
        "history" => expected_history(text),
        _ => Err(ErrorCode::UnknownType),
    }
}

/// The history frame's rules (crate docs, `history` module): `before` a
/// whole number from 1, `after` from 0 (both at most 2^63 - 1, `after`
/// below `before` minus one), `limit` from 1 (capped to 500), `q` a string
/// of at most 200 bytes with 1 to 8 distinct words (runs of letters and
/// digits; `""` means no search), `ref` a string of at most 64 bytes; null
/// means absent. These fields are read only in history frames, so only
/// there does giving one twice make the frame invalid JSON.
fn expected_history(text: &str) -> Result<ClientMessage, ErrorCode> {
    const MAX: u64 = (1 << 63) - 1;
    let Ok(HistoryFields(fields)) = serde_json::from_str::<HistoryFields>(text) else {
        return Err(ErrorCode::InvalidJson);
    };
    let mut values = Vec::new();
    for key in ["before", "after", "limit", "q", "ref"] {
        let mut found = fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let first = found.next().filter(|v| !v.is_null());
        if found.next().is_some() {
            return Err(ErrorCode::InvalidJson);
        }
        values.push(first);
    }
    let number = |value: Option<&Value>, min: u64, max: u64| match value {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ErrorCode::InvalidQuery),
        },
        Some(_) => Err(ErrorCode::InvalidQuery),
    };
    let before = number(values[0], 1, MAX)?;
    let after = number(values[1], 0, MAX)?;
    let limit = number(values[2], 1, u64::from(u32::MAX))?;
    let search = match values[3] {
        None => None,
        Some(Value::String(q)) if q.is_empty() => None,
        Some(Value::String(q)) => {
            let mut words: Vec<String> = Vec::new();
            for word in q.split(|c: char| !c.is_alphanumeric()) {
                let word = word.to_lowercase();
                if !word.is_empty() && !words.contains(&word) {
                    words.push(word);
                }
            }
            if q.len() > 200 || words.is_empty() || words.len() > 8 {
                return Err(ErrorCode::InvalidQuery);
            }
            let search = SearchWords::parse(q).map_err(|_| ErrorCode::InvalidQuery)?;
            assert_eq!(search.words(), words, "words of {q:?}");
            Some(search)
        }
        Some(_) => return Err(ErrorCode::InvalidQuery),
    };
    let reference = match values[4] {
        None => None,
        Some(Value::String(r)) if r.len() <= 64 => Some(r.clone()),
        Some(_) => return Err(ErrorCode::InvalidQuery),
    };
    if let (Some(after), Some(before)) = (after, before) {
        if after + 1 >= before {
            return Err(ErrorCode::InvalidQuery);
        }
    }
    let mut query = HistoryQuery::new();
    if let Some(before) = before {
        query = query.before(before);
    }
    if let Some(after) = after {
        query = query.after(after);
    }
    if let Some(limit) = limit {
        query = query.limit(u32::try_from(limit).unwrap_or(u32::MAX));
    }
    if let Some(search) = search {
        query = query.search(search);
    }
    Ok(ClientMessage::History(HistoryRequest { query, reference }))
}

/// The history frame's fields, duplicates kept.
struct HistoryFields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for HistoryFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HistoryVisitor;
        impl<'de> Visitor<'de> for HistoryVisitor {
            type Value = HistoryFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HistoryFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if matches!(key.as_str(), "before" | "after" | "limit" | "q" | "ref") {
                        fields.push((key, map.next_value::<Value>()?));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(HistoryFields(fields))
            }
        }
        deserializer.deserialize_map(HistoryVisitor)
    }
}

/// The known fields of a JSON object, in order, duplicates kept. Unknown
/// fields are skipped without being built, as the server skips them.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if matches!(key.as_str(), "type" | "message" | "name") {
                let value = map.next_value::<Value>()?;
                fields.push((key, value));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Fields(fields))
    }
}

// ---------------------------------------------------------------------------
// Server frames, as clients parse them.
// ---------------------------------------------------------------------------

/// Parsing a server frame as a typed event, a plain frame or a room list
/// never panics, and whatever parses round-trips.
pub fn server_frame(text: &str) {
    if let Ok(event) = serde_json::from_str::<ServerEvent>(text) {
        let json = event.to_json();
        let again = serde_json::from_str::<ServerEvent>(&json)
            .unwrap_or_else(|err| panic!("{text:?} parsed, but its to_json {json:?} not: {err}"));
        assert_eq!(
            again, event,
            "{text:?} does not round-trip through {json:?}"
        );
        // Every event carries a readable message, the same after the trip.
        assert_eq!(again.message(), event.message());
    }
    if let Ok(plain) = serde_json::from_str::<PlainMessage>(text) {
        let encoded = PlainMessage::encode(&plain.message);
        let again: PlainMessage = serde_json::from_str(&encoded)
            .unwrap_or_else(|err| panic!("encode of {plain:?} gave {encoded:?}: {err}"));
        assert_eq!(again, plain);
    }
    if let Ok(list) = serde_json::from_str::<RoomList>(text) {
        let json = serde_json::to_string(&list)
            .unwrap_or_else(|err| panic!("{list:?} does not serialise: {err}"));
        let again: RoomList = serde_json::from_str(&json)
            .unwrap_or_else(|err| panic!("{json:?} does not parse back: {err}"));
        assert_eq!(again, list);
    }
}

// ---------------------------------------------------------------------------
// Plain frames as the server writes them: `PlainMessage::encode`.
// ---------------------------------------------------------------------------

/// `PlainMessage::encode` is ASCII, parses back to the same text, and is
/// byte for byte what Python's `json.dumps({"message": text})` prints.
pub fn plain_encode(message: &str) {
    let encoded = PlainMessage::encode(message);
    assert!(
        encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "encode({message:?}) = {encoded:?} is not printable ASCII"
    );
    let decoded: PlainMessage = serde_json::from_str(&encoded)
        .unwrap_or_else(|err| panic!("encode({message:?}) = {encoded:?} does not parse: {err}"));
    assert_eq!(
        decoded.message, message,
        "encode({message:?}) = {encoded:?}"
    );
    assert_eq!(
        encoded,
        python_json_dumps_message(message),
        "encode({message:?}) differs from Python's json.dumps"
    );
}

/// What CPython's `json.dumps({"message": text})` prints (the default
/// `ensure_ascii=True`, `separators=(", ", ": ")`): `encode_basestring_ascii`
/// escapes `"` and `\`, the five short escapes `\b \f \n \r \t`, and every
/// other UTF-16 code unit outside `' '..='~'` as `\u` plus four lowercase hex
/// digits (so astral characters become surrogate pairs).
pub fn python_json_dumps_message(message: &str) -> String {
    let mut out = String::from(r#"{"message": ""#);
    for unit in message.encode_utf16() {
        match unit {
            0x22 => out.push_str(r#"\""#),
            0x5c => out.push_str(r"\\"),
            0x08 => out.push_str(r"\b"),
            0x0c => out.push_str(r"\f"),
            0x0a => out.push_str(r"\n"),
            0x0d => out.push_str(r"\r"),
            0x09 => out.push_str(r"\t"),
            0x20..=0x7e => out.push(char::from(u8::try_from(unit).unwrap_or(b'?'))),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out.push_str(r#""}"#);
    out
}

// ---------------------------------------------------------------------------
// Room names.
// ---------------------------------------------------------------------------

/// The room-name rule of `ROOM_NAME_RULE` and the room module doc: 1 to 100
/// characters, each an ASCII letter, an ASCII digit, `-`, `_` or `.`, and
/// not `.` or `..`.
pub fn room_name_oracle(name: &str) -> bool {
    let allowed = |b: u8| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.');
    (1..=100).contains(&name.len()) && name.bytes().all(allowed) && name != "." && name != ".."
}

/// `RoomName::new` and `validate_room_name` accept exactly the names of the
/// rule, say precisely why they refuse one, and accepted names survive
/// serde, `FromStr` and `Display`.
pub fn room_name(name: &str) {
    let valid = room_name_oracle(name);
    let result = RoomName::new(name);
    assert_eq!(
        result.is_ok(),
        valid,
        "RoomName::new({name:?}) = {result:?}"
    );
    assert_eq!(
        validate_room_name(name).err(),
        result.as_ref().err().cloned(),
        "validate_room_name and RoomName::new disagree on {name:?}"
    );
    assert_eq!(ROOM_NAME_MAX_LEN, 100);
    let json = serde_json::to_string(name).unwrap_or_default();
    let via_serde = serde_json::from_str::<RoomName>(&json);
    assert_eq!(
        via_serde.is_ok(),
        valid,
        "serde and the rule disagree on {name:?}"
    );
    match result {
        Ok(room) => {
            assert_eq!(room.as_str(), name);
            assert_eq!(room.to_string(), name);
            assert_eq!(name.parse::<RoomName>().as_ref(), Ok(&room));
            assert_eq!(serde_json::to_string(&room).unwrap_or_default(), json);
            assert_eq!(via_serde.ok().as_ref(), Some(&room));
        }
        Err(err) => {
            let expected = if name.is_empty() {
                RoomNameError::Empty
            } else if let Some(character) = name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
            {
                RoomNameError::InvalidCharacter { character }
            } else if name == "." {
                RoomNameError::DotSegment(".")
            } else if name == ".." {
                RoomNameError::DotSegment("..")
            } else {
                RoomNameError::TooLong { len: name.len() }
            };
            assert_eq!(
                err, expected,
                "RoomName::new({name:?}) gave the wrong reason"
            );
            let reason = err.to_string();
            assert!(
                reason.contains(ROOM_NAME_RULE),
                "{reason:?} does not state the rule"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Display names.
// ---------------------------------------------------------------------------

/// The characters the display-name module doc forbids, as ranges of code
/// points: C0 and C1 controls (and DEL); the soft hyphen; the Arabic letter
/// mark; the combining grapheme joiner; the Hangul fillers U+115F, U+1160,
/// U+3164, U+FFA0; the invisible Khmer vowels U+17B4, U+17B5; the Mongolian
/// variation selectors and vowel separator (U+180B-U+180F); zero-width
/// space, joiners and the LRM/RLM marks; the line and paragraph separators
/// and the bidi embeddings and overrides; the word joiner, invisible
/// operators and bidi isolates (U+2060-U+206F); the braille blank; the
/// byte-order mark; the interlinear annotation marks; the Egyptian
/// hieroglyph, shorthand and musical format controls; the tag characters.
pub const FORBIDDEN_IN_USER_NAMES: &[(u32, u32)] = &[
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE007F),
];

/// Unicode's White_Space property (PropList.txt), which "leading or
/// trailing spaces" refers to.
pub const WHITE_SPACE: &[(u32, u32)] = &[
    (0x0009, 0x000D),
    (0x0020, 0x0020),
    (0x0085, 0x0085),
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
];

fn in_ranges(c: char, ranges: &[(u32, u32)]) -> bool {
    let c = u32::from(c);
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The display-name rule of `USER_NAME_RULE`: 1 to 32 characters (Unicode
/// scalar values), none of them forbidden, not starting or ending with
/// white space.
pub fn user_name_oracle(name: &str) -> bool {
    let len = name.chars().count();
    (1..=32).contains(&len)
        && !name.chars().any(|c| in_ranges(c, FORBIDDEN_IN_USER_NAMES))
        && !name
            .chars()
            .next()
            .is_some_and(|c| in_ranges(c, WHITE_SPACE))
        && !name
            .chars()
            .last()
            .is_some_and(|c| in_ranges(c, WHITE_SPACE))
}

/// `UserName::new` accepts exactly the names of the rule, says precisely why
/// it refuses one, and accepted names survive serde, `FromStr`, `Display` and
/// a nick frame.
pub fn user_name(name: &str) {
    let valid = user_name_oracle(name);
    let result = UserName::new(name);
    assert_eq!(
        result.is_ok(),
        valid,
        "UserName::new({name:?}) = {result:?}"
    );
    assert_eq!(
        validate_user_name(name).err(),
        result.as_ref().err().cloned(),
        "validate_user_name and UserName::new disagree on {name:?}"
    );
    assert_eq!(USER_NAME_MAX_LEN, 32);
    let json = serde_json::to_string(name).unwrap_or_default();
    let via_serde = serde_json::from_str::<UserName>(&json);
    assert_eq!(
        via_serde.is_ok(),
        valid,
        "serde and the rule disagree on {name:?}"
    );
    let nick = ClientMessage::from_json(&format!(r#"{{"type":"nick","name":{json}}}"#));
    match result {
        Ok(user) => {
            assert_eq!(user.as_str(), name);
            assert_eq!(user.to_string(), name);
            assert_eq!(name.parse::<UserName>().as_ref(), Ok(&user));
            assert_eq!(serde_json::to_string(&user).unwrap_or_default(), json);
            assert_eq!(via_serde.ok().as_ref(), Some(&user));
            assert_eq!(nick, Ok(ClientMessage::Nick { name: user }));
        }
        Err(err) => {
            let expected = if name.is_empty() {
                UserNameError::Empty
            } else if let Some(character) = name
                .chars()
                .find(|c| in_ranges(*c, FORBIDDEN_IN_USER_NAMES))
            {
                UserNameError::InvalidCharacter { character }
            } else if name.chars().count() > 32
                && !name.starts_with(|c| in_ranges(c, WHITE_SPACE))
                && !name.ends_with(|c| in_ranges(c, WHITE_SPACE))
            {
                UserNameError::TooLong {
                    len: name.chars().count(),
                }
            } else {
                UserNameError::SurroundingWhitespace
            };
            assert_eq!(
                err, expected,
                "UserName::new({name:?}) gave the wrong reason"
            );
            let reason = err.to_string();
            assert!(
                reason.contains(USER_NAME_RULE),
                "{reason:?} does not state the rule"
            );
            assert_eq!(
                nick.map_err(|e| e.code()),
                Err(ErrorCode::InvalidName),
                "a nick frame with the refused name {name:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Server addresses.
// ---------------------------------------------------------------------------

/// Room names that stress URL building: the shortest, the longest, and the
/// ones made of dots (valid names that a URL could mistake for path steps).
fn url_rooms() -> Vec<RoomName> {
    ["lobby", "a", "...", ".a", "a.", "-_.", &"x".repeat(100)]
        .into_iter()
        .filter_map(|name| RoomName::new(name).ok())
        .collect()
}

/// `ServerUrl::parse` never panics; for every address it accepts, the socket
/// URL of any room is `ws(s)://host[:port]/<prefix>/ws/chat/<room>/`, the
/// page and API URLs sit under the same prefix, `origin()` is a valid ASCII
/// origin of the same host, and the address prints as one that parses back
/// to the same server.
pub fn server_url(input: &str) {
    let server = match ServerUrl::parse(input) {
        Ok(server) => server,
        Err(err) => {
            assert!(!err.to_string().is_empty(), "empty error for {input:?}");
            return;
        }
    };
    let prefix = server.prefix();
    assert!(
        prefix.starts_with('/') && prefix.ends_with('/'),
        "{input:?}: prefix {prefix:?}"
    );
    assert!(!server.host().is_empty(), "{input:?}: empty host");
    let (ws, http) = if server.is_secure() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    for room in url_rooms() {
        let socket = server.socket_url(&room);
        assert_eq!(socket.scheme(), ws, "{input:?}: {socket}");
        assert_eq!(
            socket.path(),
            format!("{prefix}ws/chat/{room}/"),
            "{input:?}: socket URL {socket}"
        );
        assert!(socket.path().ends_with(&format!("/ws/chat/{room}/")));
        assert_eq!(socket.query(), None, "{input:?}: {socket}");
        assert_eq!(socket.fragment(), None, "{input:?}: {socket}");
        assert_eq!(
            socket.host_str(),
            Some(server.host()),
            "{input:?}: {socket}"
        );
        assert_eq!(
            socket.port_or_known_default(),
            Some(server.port()),
            "{input:?}: {socket}"
        );
        let page = server.page_url(&room);
        assert_eq!(page.scheme(), http, "{input:?}: {page}");
        assert_eq!(
            page.path(),
            format!("{prefix}chat/{room}/"),
            "{input:?}: {page}"
        );
        assert_eq!(page.host_str(), Some(server.host()), "{input:?}: {page}");
    }
    let api = server.rooms_api_url();
    assert_eq!(api.path(), format!("{prefix}api/rooms"), "{input:?}: {api}");

    let origin = server.origin();
    assert!(
        origin.bytes().all(|b| b.is_ascii_graphic()),
        "{input:?}: origin {origin:?} is not a valid header value"
    );
    let parsed = url::Url::parse(&origin)
        .unwrap_or_else(|err| panic!("{input:?}: origin {origin:?} does not parse: {err}"));
    assert_eq!(parsed.scheme(), http, "{input:?}: origin {origin:?}");
    assert_eq!(
        parsed.host_str(),
        Some(server.host()),
        "{input:?}: origin {origin:?}"
    );
    assert_eq!(parsed.path(), "/", "{input:?}: origin {origin:?}");
    assert_eq!(
        parsed.port_or_known_default(),
        Some(server.port()),
        "{input:?}: origin {origin:?}"
    );

    let shown = server.to_string();
    assert_eq!(
        ServerUrl::parse(&shown).as_ref(),
        Ok(&server),
        "{input:?} prints as {shown:?}, which is another server"
    );
}
