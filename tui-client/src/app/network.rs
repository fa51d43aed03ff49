//! What the network says: connection states and server events.
//!
//! Besides keeping each room's lines, this is where a message that
//! highlights the user (their name, or one of the highlight words) becomes
//! an [`Effect::Notify`] (the bell, a desktop notification), where lines
//! become [`Effect::Log`]s for the room's log file, and where pages of
//! older messages and search results come in.

use chat_protocol::{
    ChatEvent, ErrorCode, HistoryEvent, Mode, RoomName, ServerEvent, Welcome, close,
};

use super::state::{AskedFor, Older, SearchState};
use super::{App, ChatLine, ConnState, LineKind, PendingState, RoomState};
use crate::clock;
use crate::geometry::{self, RowCtx};
use crate::msg::{Effect, NetEvent};
use crate::sanitize::sanitize;

/// Said above the oldest line when the server has nothing older.
pub const BEGINNING_NOTE: &str = "the beginning of the room: nothing older is kept on the server";

/// Said above the oldest line when scrollback cannot take more.
const FULL_NOTE: &str = "scrollback is full: older messages are not loaded (/search finds them)";

/// What a line means for effects, decided once where it is made.
struct Seen {
    /// From someone else, and it highlights the user.
    highlight: bool,
}

impl App {
    pub(super) fn on_net(&mut self, name: &RoomName, event: NetEvent) -> Vec<Effect> {
        let Some(index) = self.room_index(name) else {
            // A late event from a room already left.
            self.dirty = false;
            return Vec::new();
        };
        let was_online = self.rooms[index].is_online();
        let room = &mut self.rooms[index];
        match event {
            NetEvent::Connecting { attempt } => {
                room.conn = ConnState::Connecting { attempt };
                Vec::new()
            }
            NetEvent::Connected { mode } => {
                room.conn = ConnState::Online { mode };
                room.mode = Some(mode);
                room.name_taken = false;
                // A request that was on its way died with the last connection.
                if room.asked.take().is_some() {
                    if room.older == Older::Loading {
                        room.older = Older::Idle;
                    }
                    if let Some(search) = &mut room.search {
                        if search.state == SearchState::Searching {
                            search.state =
                                SearchState::Failed("the connection was lost; search again".into());
                        }
                    }
                }
                if mode == Mode::Plain {
                    room.older = Older::Unsupported;
                    let text = if room.connected_once {
                        "reconnected (plain mode)"
                    } else {
                        "connected in plain mode: this server sends no names and no history"
                    };
                    room.push(ChatLine::note(LineKind::Info, text));
                    room.connected_once = true;
                    return flush(room);
                }
                Vec::new()
            }
            NetEvent::Server(event) => self.on_server_event(index, event),
            NetEvent::Disconnected {
                reason,
                close_code,
                retry_in,
                at_ms,
                attempt,
            } => {
                self.now_ms = self.now_ms.max(at_ms);
                let room = &mut self.rooms[index];
                if close_code == Some(close::MESSAGE_TOO_BIG) {
                    for p in &mut room.pending {
                        if p.state == PendingState::Sent {
                            p.state = PendingState::Failed("too big for the server".into());
                        }
                    }
                }
                if was_online || !room.connected_once && attempt <= 1 {
                    let what = if was_online {
                        "connection lost"
                    } else {
                        "cannot connect"
                    };
                    let text = if reason.starts_with(what) {
                        format!("{reason} (reconnecting by itself; /reconnect to try now)")
                    } else {
                        format!("{what}: {reason} (reconnecting by itself; /reconnect to try now)")
                    };
                    room.push(ChatLine::note(LineKind::Error, text));
                }
                let retry_at_ms = if at_ms == 0 {
                    0
                } else {
                    at_ms.saturating_add(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX))
                };
                room.conn = ConnState::Offline {
                    reason,
                    retry_in,
                    retry_at_ms,
                    attempt,
                };
                Vec::new()
            }
            NetEvent::Stopped { reason, name_taken } => {
                let hint = if name_taken {
                    "/nick ANOTHER-NAME joins again under it".to_owned()
                } else {
                    format!(
                        "not reconnecting: the server would refuse again; /reconnect (or /join {}) to try anyway",
                        room.name
                    )
                };
                room.push(ChatLine::note(LineKind::Error, format!("{reason}. {hint}")));
                room.name_taken = name_taken;
                room.conn = ConnState::Stopped { reason };
                Vec::new()
            }
            NetEvent::NotSent { local_id } => {
                for p in &mut room.pending {
                    if p.local_id == local_id && p.state == PendingState::Sent {
                        p.state = PendingState::Queued;
                    }
                }
                Vec::new()
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per event, side by side
    pub(super) fn on_server_event(&mut self, index: usize, event: ServerEvent) -> Vec<Effect> {
        let active = index == self.active;
        let asked_name = self.name.as_ref().map(|n| n.as_str().to_owned());
        let width = geometry::areas(self.screen(), self).messages.width;
        let ctx = RowCtx::of(self);
        let (logging, utc_offset) = (self.logging, self.utc_offset);
        let highlights = self.highlights.clone();
        let room = &mut self.rooms[index];
        let own_join_due = std::mem::take(&mut room.own_join_due);
        let mut effects = Vec::new();
        match event {
            ServerEvent::Welcome(welcome) => {
                room.own_join_due = true;
                return on_welcome(room, welcome, &highlights, logging.then_some(utc_offset));
            }
            ServerEvent::Join(p) if own_join_due && room.me.as_deref() == Some(p.user.as_str()) => {
                // The welcome's member list has us already.
                self.dirty = false;
            }
            ServerEvent::Chat(chat) => {
                if chat.id != 0 && chat.id <= room.last_id {
                    return Vec::new();
                }
                let me = room.me.clone().or(asked_name);
                let (line, seen) = chat_line(room, chat, me.as_deref(), &highlights);
                let is_chat = matches!(line.kind, LineKind::Chat { own: false, .. });
                if is_chat && !active {
                    room.unread += 1;
                    room.mentioned |= seen.highlight;
                }
                if seen.highlight {
                    if let LineKind::Chat { user, .. } = &line.kind {
                        effects.push(Effect::Notify {
                            room: room.name.clone(),
                            from: user.clone(),
                            text: line.text.clone(),
                        });
                    }
                }
                effects.extend(self_log(room, &line, logging, utc_offset));
                push_live(room, line, &ctx, width);
            }
            ServerEvent::Join(p) => {
                room.members.push(p.user.clone());
                let line = ChatLine {
                    ts: p.ts,
                    id: 0,
                    kind: LineKind::Join,
                    text: format!("{} joined {}", p.user, p.room),
                };
                effects.extend(self_log(room, &line, logging, utc_offset));
                push_live(room, line, &ctx, width);
            }
            ServerEvent::Leave(p) => {
                if let Some(i) = room.members.iter().position(|m| *m == p.user) {
                    room.members.remove(i);
                }
                let line = ChatLine {
                    ts: p.ts,
                    id: 0,
                    kind: LineKind::Leave,
                    text: format!("{} left {}", p.user, p.room),
                };
                effects.extend(self_log(room, &line, logging, utc_offset));
                push_live(room, line, &ctx, width);
            }
            ServerEvent::Nick(n) => {
                if let Some(m) = room.members.iter_mut().find(|m| **m == n.old) {
                    m.clone_from(&n.user);
                }
                let text = if room.me.as_deref() == Some(n.old.as_str()) {
                    room.me = Some(n.user.clone());
                    format!("you are now known as {}", n.user)
                } else {
                    format!("{} is now known as {}", n.old, n.user)
                };
                let line = ChatLine {
                    ts: n.ts,
                    id: 0,
                    kind: LineKind::Nick,
                    text,
                };
                effects.extend(self_log(room, &line, logging, utc_offset));
                push_live(room, line, &ctx, width);
            }
            ServerEvent::Error(e) => {
                let history_refused = room.asked.is_some()
                    && matches!(e.code, ErrorCode::InvalidQuery | ErrorCode::UnknownType);
                if history_refused {
                    // The request for older messages or a search was refused:
                    // an older server without paging says `unknown_type`.
                    let unsupported = e.code == ErrorCode::UnknownType;
                    history_failed(room, &e.message, unsupported);
                } else if !matches!(
                    e.code,
                    ErrorCode::Lagged
                        | ErrorCode::Other
                        | ErrorCode::NameTaken
                        | ErrorCode::InvalidName
                        | ErrorCode::InvalidTopic
                ) {
                    // The oldest message in flight is the one refused.
                    if let Some(p) = room
                        .pending
                        .iter_mut()
                        .find(|p| p.state == PendingState::Sent)
                    {
                        p.state = PendingState::Failed(e.message.clone());
                    }
                }
                room.push(ChatLine {
                    ts: e.ts,
                    id: 0,
                    kind: LineKind::Error,
                    text: format!("server: {}", e.message),
                });
            }
            ServerEvent::Gap(gap) => {
                // Those ids will never come: a resume starts after them.
                room.last_id = room.last_id.max(gap.after_id + gap.missed);
                room.push(ChatLine {
                    ts: gap.ts,
                    id: 0,
                    kind: LineKind::Error,
                    text: format!("server: {}", gap.message),
                });
            }
            ServerEvent::Topic(t) => {
                room.topic = Some(t.topic);
                let line = ChatLine {
                    ts: t.ts,
                    id: 0,
                    kind: LineKind::Nick,
                    text: t.message,
                };
                effects.extend(self_log(room, &line, logging, utc_offset));
                push_live(room, line, &ctx, width);
            }
            ServerEvent::History(page) => {
                let me = room.me.clone();
                on_history(room, page, me.as_deref(), &highlights);
            }
            ServerEvent::Unknown => self.dirty = false,
        }
        effects
    }
}

/// Adds a live line at the bottom; while scrolled up, the view stays
/// where it is and the line counts as new below.
fn push_live(room: &mut RoomState, line: ChatLine, ctx: &RowCtx, width: u16) {
    if room.scroll > 0 && room.search.is_none() {
        room.new_below += usize::from(matches!(line.kind, LineKind::Chat { .. }));
        let mut added = geometry::line_rows(ctx, &line, room, width);
        room.push(line);
        let last = room.lines.len() - 1;
        added += usize::from(geometry::day_break(ctx, &room.lines, last).is_some());
        room.scroll += added;
    } else {
        room.push(line);
    }
}

/// The log line for `line`, when logging.
fn self_log(room: &RoomState, line: &ChatLine, logging: bool, utc_offset: i32) -> Option<Effect> {
    logging.then(|| Effect::Log {
        room: room.name.clone(),
        line: log_line(line, utc_offset),
    })
}

/// A line as the log file keeps it, WeeChat's way: time, a tab, the nick
/// (or a marker), a tab, the text; everything made safe and on one line.
pub fn log_line(line: &ChatLine, utc_offset: i32) -> String {
    let stamp = if line.ts == 0 {
        "-".to_owned()
    } else {
        clock::log_stamp(line.ts, utc_offset)
    };
    let (nick, text) = match &line.kind {
        LineKind::Chat {
            user, emote: false, ..
        } => (
            sanitize(user).into_owned(),
            sanitize(&line.text).into_owned(),
        ),
        LineKind::Chat { user, .. } => (
            " *".to_owned(),
            format!("{} {}", sanitize(user), sanitize(&line.text)),
        ),
        LineKind::Join => ("-->".to_owned(), sanitize(&line.text).into_owned()),
        LineKind::Leave => ("<--".to_owned(), sanitize(&line.text).into_owned()),
        LineKind::Error => ("!!".to_owned(), sanitize(&line.text).into_owned()),
        LineKind::Nick | LineKind::Info | LineKind::Divider => {
            ("--".to_owned(), sanitize(&line.text).into_owned())
        }
    };
    format!("{stamp}\t{nick}\t{text}")
}

/// Hands every undelivered message of `room` to the connection.
fn flush(room: &mut RoomState) -> Vec<Effect> {
    let mut effects = Vec::new();
    for p in &mut room.pending {
        if matches!(p.state, PendingState::Queued | PendingState::Sent) {
            p.state = PendingState::Sent;
            effects.push(Effect::Send {
                room: room.name.clone(),
                local_id: p.local_id,
                message: p.message.clone(),
            });
        }
    }
    effects
}

/// `log_offset`: the UTC offset when logging, `None` when not.
fn on_welcome(
    room: &mut RoomState,
    welcome: Welcome,
    highlights: &[String],
    log_offset: Option<i32>,
) -> Vec<Effect> {
    let first = !room.connected_once;
    room.connected_once = true;
    room.me = Some(welcome.user.clone());
    room.members = welcome.members;
    room.topic = welcome.topic;
    room.limits = welcome.limits;
    if room.older == Older::Unsupported {
        room.older = Older::Idle;
    }
    // The welcome line goes below the history it carries (and its divider),
    // so that it is
    // dated where it belongs: above it, it would start a day before
    // yesterday's messages, and older pages loaded later would land above it.
    let welcome_line = first.then_some(ChatLine {
        ts: welcome.ts,
        id: 0,
        kind: LineKind::Info,
        text: welcome.message,
    });
    let me = welcome.user;
    let newest = welcome
        .history
        .iter()
        .map(|c| c.id)
        .fold(welcome.last_id, u64::max);
    let epoch_changed =
        !welcome.epoch.is_empty() && room.epoch.as_deref().is_some_and(|e| e != welcome.epoch);
    if !welcome.epoch.is_empty() {
        room.epoch = Some(welcome.epoch.clone());
    }
    let reset = epoch_changed || newest < room.last_id;
    if reset {
        // The server counts from scratch: it restarted without its history.
        // Its ids are new, so nothing it sends now is a duplicate.
        room.last_id = 0;
        room.push(ChatLine::note(
            LineKind::Info,
            "reconnected, but the server's history was reset (it restarted?): what was said while you were away may be gone",
        ));
    }
    let mut recovered = 0;
    let mut effects = Vec::new();
    for chat in welcome.history {
        if chat.id != 0 && chat.id <= room.last_id {
            continue;
        }
        recovered += 1;
        let (line, _) = chat_line(room, chat, Some(&me), highlights);
        // The first welcome's history was logged by whoever was there; what
        // was missed while away is new to this log.
        if let (false, Some(offset)) = (first, log_offset) {
            effects.push(Effect::Log {
                room: room.name.clone(),
                line: log_line(&line, offset),
            });
        }
        room.push(line);
    }
    room.last_id = room.last_id.max(welcome.last_id);
    if let Some(line) = welcome_line {
        if recovered > 0 {
            room.push(ChatLine::note(
                LineKind::Divider,
                "history above · live below",
            ));
        }
        room.push(line);
    } else if !reset {
        let s = if recovered == 1 { "" } else { "s" };
        room.push(ChatLine::note(
            LineKind::Info,
            if recovered == 0 {
                "reconnected; nothing was missed".to_owned()
            } else {
                format!("reconnected; {recovered} message{s} from while you were away above")
            },
        ));
    }
    if welcome.missed > 0 {
        let s = if welcome.missed == 1 { "" } else { "s" };
        room.push(ChatLine::note(
            LineKind::Error,
            format!(
                "{} message{s} from while you were away are no longer on the server and were missed",
                welcome.missed
            ),
        ));
    }
    effects.extend(flush(room));
    effects
}

/// A page of stored messages: older ones go above the room's lines, a
/// search's fill its results. A page that answers nothing asked is ignored.
fn on_history(room: &mut RoomState, page: HistoryEvent, me: Option<&str>, highlights: &[String]) {
    let Some(asked) = room
        .asked
        .take_if(|a| page.reference.as_deref() == Some(&a.reference))
    else {
        return;
    };
    let lines: Vec<ChatLine> = page
        .messages
        .into_iter()
        .map(|chat| stored_line(chat, me, highlights))
        .collect();
    match asked.kind {
        AskedFor::Older => {
            // Only what is older than what is held (a page may overlap).
            let oldest = room.oldest_id().unwrap_or(u64::MAX);
            let older: Vec<ChatLine> = lines.into_iter().filter(|l| l.id < oldest).collect();
            let count = older.len();
            let added = room.push_older(older);
            room.older = if !page.more || count == 0 {
                Older::Exhausted
            } else if added < count {
                // Scrollback is full: stop here.
                Older::Exhausted
            } else {
                Older::Idle
            };
            if room.older == Older::Exhausted {
                room.note_at_top(if added < count {
                    FULL_NOTE
                } else {
                    BEGINNING_NOTE
                });
            }
        }
        AskedFor::Search => {
            if let Some(search) = &mut room.search {
                search.results = lines.into();
                search.more = page.more;
                search.state = SearchState::Done;
            }
        }
    }
}

impl App {
    /// Gives up on history requests unanswered for [`super::state::HISTORY_WAIT_MS`]
    /// (timed from the first tick after asking).
    pub(super) fn expire_history_requests(&mut self, now_ms: u64) {
        for room in &mut self.rooms {
            let Some(asked) = &mut room.asked else {
                continue;
            };
            if asked.since_ms == 0 || asked.since_ms > now_ms {
                asked.since_ms = now_ms;
                continue;
            }
            if now_ms - asked.since_ms >= super::state::HISTORY_WAIT_MS {
                let kind = asked.kind;
                history_failed(room, "the server did not answer; try again", false);
                if kind == AskedFor::Older {
                    room.note_at_top(
                        "older messages did not come (no answer from the server); PgUp at the top asks again",
                    );
                }
                self.dirty = true;
            }
        }
    }
}

/// A history request was refused (`unsupported`: the server has no
/// paging at all, e.g. an older server).
fn history_failed(room: &mut RoomState, reason: &str, unsupported: bool) {
    let Some(asked) = room.asked.take() else {
        return;
    };
    match asked.kind {
        AskedFor::Older => {
            room.older = if unsupported {
                Older::Unsupported
            } else {
                Older::Idle
            };
        }
        AskedFor::Search => {
            if let Some(search) = &mut room.search {
                search.state = SearchState::Failed(if unsupported {
                    "this server cannot search its history".to_owned()
                } else {
                    reason.to_owned()
                });
            }
        }
    }
    if unsupported {
        room.older = Older::Unsupported;
    }
}

/// A stored message (from a page or a search) as a line.
fn stored_line(chat: ChatEvent, me: Option<&str>, highlights: &[String]) -> ChatLine {
    let own = !chat.user.is_empty() && me == Some(chat.user.as_str());
    let mention = !own && highlights_user(&chat.message, me, highlights);
    ChatLine {
        ts: chat.ts,
        id: chat.id,
        kind: LineKind::Chat {
            user: chat.user,
            emote: chat.emote,
            own,
            mention,
        },
        text: chat.message,
    }
}

/// Turns a chat event into a line, settling the matching pending message.
fn chat_line(
    room: &mut RoomState,
    chat: ChatEvent,
    me: Option<&str>,
    highlights: &[String],
) -> (ChatLine, Seen) {
    room.last_id = room.last_id.max(chat.id);
    let plain = chat.user.is_empty();
    let by_me = !plain && me == Some(chat.user.as_str());
    // The echo of one of ours: in events mode by name and text; in plain
    // mode (no names) by text alone.
    let mut own = by_me;
    if by_me || plain {
        if let Some(i) = room.pending.iter().position(|p| {
            p.state == PendingState::Sent && p.text() == (chat.message.as_str(), chat.emote)
        }) {
            room.pending.remove(i);
            own = true;
        }
    }
    let mention = !own && highlights_user(&chat.message, me, highlights);
    let line = ChatLine {
        ts: chat.ts,
        id: chat.id,
        kind: LineKind::Chat {
            user: chat.user,
            emote: chat.emote,
            own,
            mention,
        },
        text: chat.message,
    };
    (line, Seen { highlight: mention })
}

/// Whether `text` highlights the user: it names `me`, or one of `words`.
pub fn highlights_user(text: &str, me: Option<&str>, words: &[String]) -> bool {
    me.is_some_and(|me| mentions(text, me)) || words.iter().any(|w| mentions(text, w))
}

/// Whether `text` names `name` as a word (case-insensitive).
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(&name).any(|(i, m)| {
        !is_word(text[..i].chars().next_back()) && !is_word(text[i + m.len()..].chars().next())
    })
}
