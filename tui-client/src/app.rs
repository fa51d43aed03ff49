//! The client's state and the pure step that changes it.
//!
//! [`App`] is plain data: the joined rooms with their lines, members,
//! unread counts, scroll positions and connection states; the input line
//! and its history; the room picker; a paste waiting for confirmation.
//! [`App::update`] takes one [`Msg`] and returns the [`Effect`]s for the
//! runtime to carry out. It does no I/O and never reads the clock (times come
//! from the server's `ts`), so every key sequence and every network story is
//! a unit test.
//!
//! Choices, documented in the README too:
//!
//! * **Sending and offline**: every message typed goes into the room's
//!   *pending* list and is shown at the bottom, dimmed, until the server
//!   echoes it back. Online it is sent at once ("sending"); offline it waits
//!   ("queued") and is sent after the reconnect. After a reconnect the
//!   welcome's recovered history tells which in-flight messages did arrive,
//!   so none is lost and none is sent twice. A message the server refuses
//!   is marked "not sent" and stays on screen (Up brings it back).
//! * **Paste**: a paste of up to [`PASTE_CONFIRM_LINES`] lines and
//!   [`PASTE_CONFIRM_CHARS`] characters goes into the input line (line
//!   breaks shown as `⏎`) and Enter sends it as **one** message. A bigger
//!   paste asks first: Enter sends it as one message, `e` puts it in the
//!   input line to edit, Esc drops it.
//!
//! # Layout
//!
//! * [`state`]: the data ([`App`], [`RoomState`], lines, pending messages);
//! * `keys`: keys, the mouse, pastes and the picker's keys;
//! * `send`: what Enter does: commands, sending, joining, leaving, renaming;
//! * `network`: connection states and server events;
//! * [`command`]: parsing the input line; [`input`]: the line editor.
//!
//! Where things are on screen comes from [`crate::geometry`], which the
//! view uses too: `app` never calls into `ui`.

pub mod command;
pub mod input;
mod keys;
mod network;
mod send;
pub mod state;

use ratatui::crossterm::event::KeyEventKind;

pub use command::Command;
pub use input::{History, Input};
pub use network::mentions;
pub use state::{
    App, AppOptions, ChatLine, Completion, ConnState, LineKind, MAX_LINES, Older, Pending,
    PendingState, Picker, PickerRooms, RoomState, Search, SearchState,
};

use crate::msg::{Effect, Msg};

/// A paste with more lines than this asks for confirmation.
pub const PASTE_CONFIRM_LINES: usize = 3;
/// A paste with more characters than this asks for confirmation.
pub const PASTE_CONFIRM_CHARS: usize = 1_000;
/// Rows scrolled by one mouse-wheel step.
pub const WHEEL_ROWS: usize = 3;

impl App {
    /// The one step: applies `msg`, returns what the runtime must do.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        // Handlers clear `dirty` when a message changed nothing; that must
        // not hide a change made by an earlier message of the same batch.
        let was_dirty = self.dirty;
        self.dirty = true;
        let effects = match msg {
            Msg::Key(key) if key.kind == KeyEventKind::Press => self.on_key(key),
            Msg::Key(_) => {
                self.dirty = false;
                Vec::new()
            }
            Msg::Paste(text) => self.on_paste(&text),
            Msg::Mouse(mouse) => self.on_mouse(mouse),
            Msg::Resize { width, height } => {
                self.size = (width, height);
                Vec::new()
            }
            Msg::Net(room, event) => self.on_net(&room, event),
            Msg::Tick { now_ms } => {
                self.now_ms = self.now_ms.max(now_ms);
                self.dirty = self.is_animating();
                self.expire_history_requests(now_ms);
                Vec::new()
            }
            Msg::Rooms(result) => {
                if let Some(picker) = &mut self.picker {
                    picker.rooms = match result {
                        Ok(rooms) => PickerRooms::Loaded(rooms),
                        Err(err) => PickerRooms::Failed(err),
                    };
                    picker.selected = 0;
                }
                Vec::new()
            }
        };
        self.dirty |= was_dirty;
        effects
    }
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_round2;
