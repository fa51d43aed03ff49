//! What goes into [`crate::app::App::update`] ([`Msg`]) and what comes out
//! ([`Effect`]).

use std::time::Duration;

use chat_protocol::{
    ClientMessage, HistoryRequest, Mode, RoomName, RoomSummary, ServerEvent, UserName,
};
use ratatui::crossterm::event::{KeyEvent, MouseEvent};

/// An input to the app: from the terminal or from the network.
///
/// A server event (a welcome with its history) makes the network variant
/// large; messages are moved once each through the runtime's bounded
/// channel, so boxing would only add an allocation per event.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// A key press (only presses reach `update`; releases are dropped).
    Key(KeyEvent),
    /// A bracketed paste.
    Paste(String),
    /// A mouse event.
    Mouse(MouseEvent),
    /// The terminal's new size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Something happened to a room's connection.
    Net(RoomName, NetEvent),
    /// The room list for the picker arrived (or could not be fetched).
    Rooms(Result<Vec<RoomSummary>, String>),
    /// The time, sent only while something on screen counts down
    /// ([`crate::app::App::is_animating`]): `update` never reads the clock.
    Tick {
        /// Now, in unix milliseconds.
        now_ms: u64,
    },
}

/// What a room's connection task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// An attempt to connect has started (1 for the first).
    Connecting {
        /// The attempt number since the last successful connection.
        attempt: u32,
    },
    /// Connected; in [`Mode::Events`] a welcome follows.
    Connected {
        /// Which stream the server agreed to send.
        mode: Mode,
    },
    /// An event from the server.
    Server(ServerEvent),
    /// The connection is gone, or could not be made; the task retries.
    Disconnected {
        /// Why, for the user.
        reason: String,
        /// The close code, when the server sent one.
        close_code: Option<u16>,
        /// When the next attempt starts.
        retry_in: Duration,
        /// The task's clock when it said so, in unix milliseconds.
        at_ms: u64,
        /// How many attempts have failed in a row.
        attempt: u32,
    },
    /// The server refused in a way that will repeat: the task will not
    /// reconnect by itself.
    Stopped {
        /// Why, for the user.
        reason: String,
        /// The server refused the display name (HTTP 409): another name
        /// would be let in.
        name_taken: bool,
    },
    /// A message handed to the task could not be written; the app queues it
    /// again.
    NotSent {
        /// The app's id for the message.
        local_id: u64,
    },
}

/// An effect for the runtime to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start a connection task for a room.
    Join(RoomName),
    /// Close a room's connection and end its task.
    Leave(RoomName),
    /// Send a message in a room.
    Send {
        /// The room.
        room: RoomName,
        /// The app's id for it (0: not tracked, e.g. a name change).
        local_id: u64,
        /// The frame.
        message: ClientMessage,
    },
    /// Use this display name for every future connection.
    SetName(UserName),
    /// Ask the server for stored messages (older ones, or a search).
    History {
        /// The room.
        room: RoomName,
        /// What to ask, with its `ref`.
        request: HistoryRequest,
    },
    /// Reconnect the room now (skip the wait; restart a stopped room).
    Reconnect(RoomName),
    /// Ring the bell and, where the terminal can, notify the desktop.
    Notify {
        /// The room.
        room: RoomName,
        /// Who said it.
        from: String,
        /// What was said (raw: the runtime makes it safe).
        text: String,
    },
    /// Append a line to the room's log file.
    Log {
        /// The room.
        room: RoomName,
        /// The line, already safe and on one line (no line break).
        line: String,
    },
    /// Fetch the room list for the picker.
    FetchRooms,
    /// Clear and redraw the whole screen.
    Redraw,
    /// Leave every room and exit.
    Quit,
}
