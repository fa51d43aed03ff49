//! What the network says: connection states and server events.

use chat_protocol::{ChatEvent, ErrorCode, Mode, RoomName, ServerEvent, Welcome, close};

use super::{App, ChatLine, ConnState, LineKind, PendingState, RoomState};
use crate::geometry;
use crate::msg::{Effect, NetEvent};

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
                if mode == Mode::Plain {
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
                        format!("{reason} (reconnecting by itself)")
                    } else {
                        format!("{what}: {reason} (reconnecting by itself)")
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
            NetEvent::Stopped { reason } => {
                room.push(ChatLine::note(
                    LineKind::Error,
                    format!(
                        "{reason}. Not reconnecting: the server would refuse again. /join {} to try anyway",
                        room.name
                    ),
                ));
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

    pub(super) fn on_server_event(&mut self, index: usize, event: ServerEvent) -> Vec<Effect> {
        let active = index == self.active;
        let asked_name = self.name.as_ref().map(|n| n.as_str().to_owned());
        let width = geometry::areas(self.screen(), self).messages.width;
        let room = &mut self.rooms[index];
        let own_join_due = std::mem::take(&mut room.own_join_due);
        match event {
            ServerEvent::Welcome(welcome) => {
                room.own_join_due = true;
                return on_welcome(room, welcome);
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
                let line = chat_line(room, chat, me.as_deref());
                let is_chat = matches!(line.kind, LineKind::Chat { own: false, .. });
                let mention = matches!(line.kind, LineKind::Chat { mention: true, .. });
                if is_chat && !active {
                    room.unread += 1;
                    room.mentioned |= mention;
                }
                if room.scroll > 0 {
                    room.new_below += 1;
                    room.scroll += geometry::line_rows(&line, room, width);
                }
                room.push(line);
            }
            ServerEvent::Join(p) => {
                room.members.push(p.user.clone());
                room.push(ChatLine {
                    ts: p.ts,
                    id: 0,
                    kind: LineKind::Join,
                    text: format!("{} joined {}", p.user, p.room),
                });
            }
            ServerEvent::Leave(p) => {
                if let Some(i) = room.members.iter().position(|m| *m == p.user) {
                    room.members.remove(i);
                }
                room.push(ChatLine {
                    ts: p.ts,
                    id: 0,
                    kind: LineKind::Leave,
                    text: format!("{} left {}", p.user, p.room),
                });
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
                room.push(ChatLine {
                    ts: n.ts,
                    id: 0,
                    kind: LineKind::Nick,
                    text,
                });
            }
            ServerEvent::Error(e) => {
                if !matches!(e.code, ErrorCode::Lagged | ErrorCode::Other) {
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
                room.push(ChatLine {
                    ts: t.ts,
                    id: 0,
                    kind: LineKind::Nick,
                    text: t.message,
                });
            }
            // History pages (#12) are not requested by chat-tui yet.
            ServerEvent::History(_) | ServerEvent::Unknown => self.dirty = false,
        }
        Vec::new()
    }
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

fn on_welcome(room: &mut RoomState, welcome: Welcome) -> Vec<Effect> {
    let first = !room.connected_once;
    room.connected_once = true;
    room.me = Some(welcome.user.clone());
    room.members = welcome.members;
    room.topic = welcome.topic;
    room.limits = welcome.limits;
    if first {
        room.push(ChatLine {
            ts: welcome.ts,
            id: 0,
            kind: LineKind::Info,
            text: welcome.message,
        });
    }
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
    if epoch_changed || newest < room.last_id {
        // The server counts from scratch: it restarted without its history.
        // Its ids are new, so nothing it sends now is a duplicate.
        room.last_id = 0;
        room.push(ChatLine::note(
            LineKind::Info,
            "the server's history was reset (it restarted?): what was said while you were away may be gone",
        ));
    }
    let mut recovered = 0;
    for chat in welcome.history {
        if chat.id != 0 && chat.id <= room.last_id {
            continue;
        }
        recovered += 1;
        let line = chat_line(room, chat, Some(&me));
        room.push(line);
    }
    room.last_id = room.last_id.max(welcome.last_id);
    if first {
        if recovered > 0 {
            room.push(ChatLine::note(
                LineKind::Divider,
                "history above · live below",
            ));
        }
    } else {
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
    flush(room)
}

/// Turns a chat event into a line, settling the matching pending message.
fn chat_line(room: &mut RoomState, chat: ChatEvent, me: Option<&str>) -> ChatLine {
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
    let mention = !own && me.is_some_and(|me| mentions(&chat.message, me));
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
