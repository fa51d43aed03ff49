//! What Enter does: commands, sending, joining, leaving, renaming.

use chat_protocol::{ClientMessage, Mode, RoomName, UserName};

use super::command::{self, Command};
use super::{App, ConnState, LineKind, Pending, PendingState, Picker, RoomState};
use crate::msg::Effect;

impl App {
    pub(super) fn submit(&mut self) -> Vec<Effect> {
        let line = self.input.text().to_owned();
        if line.is_empty() {
            return Vec::new();
        }
        match command::parse(&line) {
            Err(hint) => {
                // Keep the line so it can be fixed.
                self.note(LineKind::Error, hint);
                Vec::new()
            }
            Ok(cmd) => {
                self.history.push(&line);
                self.input.take();
                self.run_command(cmd)
            }
        }
    }

    pub(super) fn run_command(&mut self, cmd: Command) -> Vec<Effect> {
        match cmd {
            Command::Say(text) => self.send(ClientMessage::Chat { message: text }),
            Command::Me(text) => self.send(ClientMessage::Emote { message: text }),
            Command::Join(room) => self.join(room),
            Command::Pick => self.open_picker(),
            Command::Leave(room) => {
                let index = match room {
                    Some(room) => self.room_index(&room),
                    None if self.rooms.is_empty() => None,
                    None => Some(self.active),
                };
                if let Some(index) = index {
                    self.leave(index)
                } else {
                    self.note(LineKind::Error, "you are not in that room");
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
            Command::Clear => {
                if let Some(room) = self.active_room_mut() {
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
