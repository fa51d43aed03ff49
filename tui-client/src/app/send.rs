//! What Enter does: commands, sending, joining, leaving, renaming.

use chat_protocol::{
    ClientMessage, HistoryQuery, HistoryRequest, Mode, RoomName, SearchWords, UserName,
};

use super::command::{self, Command};
use super::state::{Asked, AskedFor, Older, Search, SearchState};
use super::{App, ConnState, LineKind, Pending, PendingState, Picker, RoomState};
use crate::msg::Effect;

/// How many matches a search asks for.
pub const SEARCH_PAGE: u32 = 100;

impl App {
    pub(super) fn submit(&mut self) -> Vec<Effect> {
        let line = self.input.text().to_owned();
        if std::mem::take(&mut self.searching) {
            self.input.take();
            if line.trim().is_empty() {
                return Vec::new();
            }
            self.history.push(&format!("/search {}", line.trim()));
            return self.search(line.trim());
        }
        // Nothing to say: an empty line, or only spaces.
        if line.trim().is_empty() {
            self.dirty = false;
            return Vec::new();
        }
        match command::parse(&line) {
            Err(hint) => {
                // Keep the line so it can be fixed.
                self.note(LineKind::Error, hint);
                Vec::new()
            }
            Ok(cmd) => {
                if let Command::Say(text) | Command::Me(text) = &cmd {
                    let message = ClientMessage::chat(text.clone());
                    if !self.fits(&message) {
                        // Kept in the input line, to shorten.
                        return Vec::new();
                    }
                }
                self.history.push(&line);
                self.input.take();
                self.run_command(cmd)
            }
        }
    }

    /// Whether `message` is within the active room's size limit (from its
    /// welcome); if not, says so and how much to cut.
    pub(super) fn fits(&mut self, message: &ClientMessage) -> bool {
        let Some(limit) = self
            .active_room()
            .and_then(|r| r.limits)
            .map(|l| usize::try_from(l.max_message_bytes).unwrap_or(usize::MAX))
            .filter(|l| *l > 0)
        else {
            return true;
        };
        let size = message.to_json().len();
        if size <= limit {
            return true;
        }
        self.note(
            LineKind::Error,
            format!(
                "too long to send: {size} bytes, the server takes at most {limit}; shorten it by {} bytes or split it",
                size - limit
            ),
        );
        false
    }

    pub(super) fn run_command(&mut self, cmd: Command) -> Vec<Effect> {
        match cmd {
            Command::Say(text) => self.send(ClientMessage::Chat { message: text }),
            Command::Me(text) => self.send(ClientMessage::Emote { message: text }),
            Command::Join(room) => self.join(room),
            Command::Pick => self.open_picker(),
            Command::Leave(room) => {
                let index = match &room {
                    Some(room) => self.room_index(room),
                    None if self.rooms.is_empty() => None,
                    None => Some(self.active),
                };
                if let Some(index) = index {
                    self.leave(index)
                } else {
                    let text = match &room {
                        Some(room) => format!("you are not in {room}"),
                        None => "you are not in a room".to_owned(),
                    };
                    self.note(LineKind::Error, text);
                    Vec::new()
                }
            }
            Command::Nick(name) => self.rename(&name),
            Command::Who => {
                let text = match self.active_room() {
                    None => return Vec::new(),
                    Some(room) if room.mode == Some(Mode::Plain) => {
                        "plain mode: this server does not say who is here".to_owned()
                    }
                    Some(room) => {
                        let names = room.member_names();
                        let s = if names.len() == 1 { "" } else { "s" };
                        format!(
                            "{} {} in {}: {}",
                            names.len(),
                            if s.is_empty() { "person" } else { "people" },
                            room.name,
                            names.join(", ")
                        )
                    }
                };
                self.note(LineKind::Info, text);
                Vec::new()
            }
            Command::Topic(topic) => self.topic(topic),
            Command::Search(words) => self.search(&words),
            Command::Reconnect => self.reconnect(),
            Command::Clear => {
                if let Some(room) = self.active_room_mut() {
                    room.first_seq += room.lines.len() as u64;
                    room.lines.clear();
                    room.scroll = 0;
                    room.new_below = 0;
                }
                Vec::new()
            }
            Command::Help => {
                for line in command::HELP {
                    self.note(LineKind::Info, *line);
                }
                self.scroll_down(usize::MAX);
                Vec::new()
            }
            Command::Quit => vec![Effect::Quit],
        }
    }

    pub(super) fn send(&mut self, message: ClientMessage) -> Vec<Effect> {
        let local_id = self.next_local_id;
        let Some(room) = self.rooms.get_mut(self.active) else {
            return Vec::new();
        };
        self.next_local_id += 1;
        room.scroll = 0;
        room.new_below = 0;
        if room.is_online() {
            room.pending.push(Pending {
                local_id,
                message: message.clone(),
                state: PendingState::Sent,
            });
            vec![Effect::Send {
                room: room.name.clone(),
                local_id,
                message,
            }]
        } else {
            room.pending.push(Pending {
                local_id,
                message,
                state: PendingState::Queued,
            });
            Vec::new()
        }
    }

    /// `/topic`: shows the topic, or sets it.
    fn topic(&mut self, topic: Option<String>) -> Vec<Effect> {
        let Some(room) = self.active_room() else {
            return Vec::new();
        };
        let Some(current) = room.topic.clone() else {
            self.note(
                LineKind::Error,
                "this server has no room topics (or has not said yet)",
            );
            return Vec::new();
        };
        match topic {
            None if current.is_empty() => {
                self.note(LineKind::Info, "no topic is set: /topic TEXT sets one");
                Vec::new()
            }
            None => {
                self.note(LineKind::Info, format!("the topic is: {current}"));
                Vec::new()
            }
            Some(topic) if topic.len() > chat_protocol::TOPIC_MAX_BYTES => {
                self.note(
                    LineKind::Error,
                    format!(
                        "a topic has at most {} bytes; this one has {}",
                        chat_protocol::TOPIC_MAX_BYTES,
                        topic.len()
                    ),
                );
                Vec::new()
            }
            Some(topic) if !room.is_online() => {
                let _ = topic;
                self.note(
                    LineKind::Error,
                    "not connected: set the topic once the room is back",
                );
                Vec::new()
            }
            Some(topic) => vec![Effect::Send {
                room: room.name.clone(),
                local_id: 0,
                message: ClientMessage::Topic { topic },
            }],
        }
    }

    /// `/search WORDS` (or Ctrl+R): asks the server for the room's messages
    /// with every word; the results replace the room's lines until Esc.
    pub(super) fn search(&mut self, words: &str) -> Vec<Effect> {
        let reference = self.next_ref.to_string();
        let Some(room) = self.active_room_mut() else {
            return Vec::new();
        };
        let parsed = match SearchWords::parse(words) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.note(LineKind::Error, format!("cannot search: {err}"));
                return Vec::new();
            }
        };
        let failed = |why: &str| Search {
            words: words.to_owned(),
            results: std::collections::VecDeque::new(),
            state: SearchState::Failed(why.to_owned()),
            more: false,
        };
        room.scroll = 0;
        if room.mode == Some(Mode::Plain) || room.older == Older::Unsupported {
            room.search = Some(failed(
                "this server cannot search (it keeps no history for clients)",
            ));
            return Vec::new();
        }
        if !room.is_online() {
            room.search = Some(failed("not connected: search again once the room is back"));
            return Vec::new();
        }
        if room
            .asked
            .as_ref()
            .is_some_and(|a| a.kind == AskedFor::Older)
        {
            // The page of older messages loses out: ask again later.
            room.older = Older::Idle;
        }
        room.search = Some(Search {
            words: words.to_owned(),
            results: std::collections::VecDeque::new(),
            state: SearchState::Searching,
            more: false,
        });
        room.asked = Some(Asked {
            reference: reference.clone(),
            kind: AskedFor::Search,
            since_ms: 0,
        });
        let effect = Effect::History {
            room: room.name.clone(),
            request: HistoryRequest {
                query: HistoryQuery::new().search(parsed).limit(SEARCH_PAGE),
                reference: Some(reference),
            },
        };
        self.next_ref += 1;
        vec![effect]
    }

    /// `/reconnect`: now, without waiting for the backoff; a room that
    /// stopped tries again.
    fn reconnect(&mut self) -> Vec<Effect> {
        let Some(room) = self.active_room() else {
            return Vec::new();
        };
        let name = room.name.clone();
        if matches!(room.conn, ConnState::Stopped { .. }) {
            return self.join(name);
        }
        self.note(LineKind::Info, format!("reconnecting to {name} now"));
        vec![Effect::Reconnect(name)]
    }

    pub(super) fn join(&mut self, room: RoomName) -> Vec<Effect> {
        self.picker = None;
        if let Some(index) = self.room_index(&room) {
            self.switch_to(index);
            if matches!(self.rooms[index].conn, ConnState::Stopped { .. }) {
                // Joining a room that was refused tries again.
                self.rooms[index].conn = ConnState::Connecting { attempt: 1 };
                return vec![Effect::Leave(room.clone()), Effect::Join(room)];
            }
            return Vec::new();
        }
        self.rooms.push(RoomState::new(room.clone()));
        self.switch_to(self.rooms.len() - 1);
        vec![Effect::Join(room)]
    }

    pub(super) fn leave(&mut self, index: usize) -> Vec<Effect> {
        let room = self.rooms.remove(index);
        if self.active >= self.rooms.len() {
            self.active = self.rooms.len().saturating_sub(1);
        } else if self.active > index {
            self.active -= 1;
        }
        let mut effects = vec![Effect::Leave(room.name)];
        if self.rooms.is_empty() {
            effects.extend(self.open_picker());
        } else {
            self.switch_to(self.active);
        }
        effects
    }

    pub(super) fn open_picker(&mut self) -> Vec<Effect> {
        self.picker = Some(Picker::new());
        vec![Effect::FetchRooms]
    }

    pub(super) fn rename(&mut self, name: &UserName) -> Vec<Effect> {
        self.name = Some(name.clone());
        let mut effects = vec![Effect::SetName(name.clone())];
        // Rooms that refused the old name try again under the new one.
        let refused: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|r| r.name_taken && matches!(r.conn, ConnState::Stopped { .. }))
            .map(|r| r.name.clone())
            .collect();
        for room in refused {
            if let Some(index) = self.room_index(&room) {
                self.rooms[index].conn = ConnState::Connecting { attempt: 1 };
                self.rooms[index].name_taken = false;
            }
            effects.push(Effect::Leave(room.clone()));
            effects.push(Effect::Join(room));
        }
        let mut any_events = false;
        for room in &self.rooms {
            if room.conn == (ConnState::Online { mode: Mode::Events }) {
                any_events = true;
                effects.push(Effect::Send {
                    room: room.name.clone(),
                    local_id: 0,
                    message: ClientMessage::Nick { name: name.clone() },
                });
            }
        }
        if !any_events {
            let plain = self
                .active_room()
                .is_some_and(|r| r.mode == Some(Mode::Plain));
            let text = if plain {
                format!(
                    "you are now {name} (plain mode: this server shows no names, so only this client knows)"
                )
            } else {
                format!("you are now {name}; the rooms will see it when they connect")
            };
            self.note(LineKind::Info, text);
        }
        effects
    }
}
