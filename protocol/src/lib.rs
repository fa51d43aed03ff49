//! The chat room protocol: the Django Channels chat tutorial's wire format,
//! plus an opt-in stream of typed events.
//!
//! This crate holds what every party shares: the JSON frames ([`frame`]),
//! the room-name and display-name rules ([`RoomName`], [`UserName`]), the
//! URLs of a server ([`ServerUrl`]), the close codes and reconnect advice
//! ([`close`]), and, behind the `client` feature, an async client
//! (`Client`) for bots, scripts and the terminal client.
//!
//! # The protocol
//!
//! A client opens `ws://HOST:PORT/ws/chat/<room>/` (trailing slash optional).
//! Optional query parameters: `name=<display name>`, `key=<secret>` (this
//! person's key: see *Display names* below), `since=<last id seen>`
//! and `epoch=<the welcome's epoch>` (recovery after a reconnect), `v=2`
//! (typed events, for clients that cannot offer a subprotocol),
//! `token=<token>` (servers that require one).
//!
//! | direction | when | frame |
//! |---|---|---|
//! | client → server | always | `{"message": "text"}`; unknown fields are ignored |
//! | client → server | typed clients | `{"type": "me", "message": "waves"}`, `{"type": "nick", "name": "bob"}`, `{"type": "topic", "topic": "text"}` |
//! | server → client | plain (default) | `{"message": "text"}`, for chat messages only, the sender's own included |
//! | server → client | typed (`chat.v2` subprotocol or `?v=2`) | `{"type": "welcome", "message", "room", "user", "members": [..], "history": [chat..], "last_id", "missed", "epoch", "ts", "limits": {"rate", "burst", "max_message_bytes"}, "topic"}` first |
//! | | | `{"type": "chat", "message", "user", "room", "id", "ts"}` (`"emote": true` for actions) |
//! | | | `{"type": "join" \| "leave", "message", "user", "room", "ts"}` |
//! | | | `{"type": "nick", "message", "user", "old", "room", "ts"}` |
//! | | | `{"type": "topic", "message", "topic", "user", "room", "ts"}` (the topic was set; `""`: cleared) |
//! | | | `{"type": "error", "message", "code", "ts"}` |
//! | | | `{"type": "gap", "message", "room", "missed", "after_id", "ts"}`: messages `after_id + 1 ..= after_id + missed` were lost on this server's side (its feed from Redis broke and history no longer had them); plain clients cannot be told |
//! | client → server | typed clients | `{"type": "history", "before" \| "after": ID, "limit": N, "q": "words", "ref": "r1"}` (every field optional) |
//! | server → client | its answer | `{"type": "history", "message", "room", "messages": [chat.. oldest first], "more", "ts"}` plus the request's `before`, `after`, `q`, `ref` echoed |
//! | HTTP | `GET /api/rooms/<room>/messages?before=&after=&limit=&q=` | `{"messages": [chat.. oldest first], "more": bool}`; a bad parameter is a 400 with the reason |
//!
//! * Message text is relayed unchanged: no trimming, no escaping; `""` is a
//!   valid message. Displays make text safe, the wire does not.
//! * `user` is stamped by the server; a `user` field in a client frame is ignored.
//! * `id` is a per-room sequence, strictly increasing, the same on every
//!   server instance; `ts` is server time in unix milliseconds.
//! * Recovery: a client that reconnects with `?since=ID&epoch=E` gets, in
//!   the welcome's `history`, every message after `ID` that the server still
//!   holds, before any live message; `missed` counts those it no longer
//!   holds. A welcome whose `epoch` differs from `E` means the room's ids
//!   were reset: `since` was ignored (see `ConnectOptions::since` and
//!   `ConnectOptions::epoch` with the `client` feature).
//! * History ([`history`]): `before` walks back (the newest `limit`
//!   messages below it), `after` walks forward (the oldest `limit` above
//!   it), neither gives the newest page; `limit` is 1 to 500 (default 50,
//!   larger values capped); `q` keeps messages containing every word of it
//!   (word prefixes, case-insensitive; quotes, `*` and the like only
//!   separate words). `more` says whether the server holds further matches
//!   beyond the page. A bad field gets an `error` event with code
//!   `invalid_query` (HTTP: 400). A server keeps what its mode keeps: the
//!   last `--history` messages per room in memory, everything with `--db`.
//! * Limits: the welcome's `limits` say how many messages per second a
//!   connection may send (`rate`, sustained, and `burst` above it) and the
//!   largest frame it may send (`max_message_bytes`, the JSON text). A
//!   message over the rate is refused with an `error` (`rate_limited`) and
//!   not delivered; a bigger frame closes the connection (1009). Clients
//!   pace themselves and refuse too-long messages locally.
//! * Display names: a name is held in a room by the connections that use
//!   it. Another connection may use the same name only with the same
//!   `key` (the same person: two tabs, two terminals); otherwise the
//!   server refuses the join with HTTP 409 (`name_taken`) and a rename with
//!   an `error` event of code `name_taken`. Names are compared without
//!   case (`Alice` is `alice`). Without a key a name belongs to one
//!   connection. The server keeps only a hash of the key.
//! * Topics: `{"type": "topic", "topic": text}` sets the room's topic (at
//!   most [`frame::TOPIC_MAX_BYTES`] bytes, `""` clears it); everyone in the
//!   room gets a `topic` event, and the welcome carries the current one.
//!   A server without topics sends no `topic` in its welcome.
//! * Bad input: see the server's README for what each malformed frame gets
//!   (an `error` event for typed clients; for plain clients, which have no
//!   error channel, a close with the code in [`close`]).
//!
//! # Example: a small bot
//!
//! With the `client` feature:
//!
//! ```no_run
//! # #[cfg(feature = "client")]
//! # async fn bot() -> Result<(), Box<dyn std::error::Error>> {
//! use chat_protocol::{Client, ConnectOptions, ServerEvent};
//!
//! let server = "ws://127.0.0.1:8000".parse()?;
//! let options = ConnectOptions::new().name("shout-bot".parse()?);
//! let mut client = Client::connect(&server, &"lobby".parse()?, &options).await?;
//! while let Some(event) = client.next().await {
//!     match event? {
//!         ServerEvent::Chat(chat) if chat.user != "shout-bot" => {
//!             client.say(&chat.message.to_uppercase()).await?;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/echo_bot.rs` is the same bot as a program:
//! `cargo run -p chat-protocol --features client --example echo_bot`.

#![warn(missing_docs)]

pub mod close;
pub mod frame;
pub mod history;
mod room;
mod url;
mod user;

#[cfg(feature = "client")]
pub mod client;

pub use crate::url::{ServerUrl, UrlError};
pub use frame::{
    ChatEvent, ClientMessage, ErrorCode, ErrorEvent, FrameError, GapEvent, Limits, NickChange,
    PlainMessage, Presence, QUERY_OPT_IN, RoomList, RoomSummary, SUBPROTOCOL_V2, ServerEvent,
    TOPIC_MAX_BYTES, TopicEvent, Welcome, unix_millis,
};
pub use history::{
    HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, HistoryEvent, HistoryQuery, HistoryQueryError,
    HistoryRequest, MessagePage, SearchWords,
};
pub use room::{ROOM_NAME_MAX_LEN, ROOM_NAME_RULE, RoomName, RoomNameError, validate_room_name};
pub use user::{USER_NAME_MAX_LEN, USER_NAME_RULE, UserName, UserNameError, validate_user_name};

#[cfg(feature = "client")]
pub use client::{
    Client, ClientError, ClientEvents, ClientSender, ConnectOptions, Mode, Origin, TlsOptions,
    fetch_messages, fetch_rooms, generate_key,
};
