//! The client's state: plain data, no behaviour beyond small queries.
//!
//! [`App`] holds the joined rooms ([`RoomState`]: lines, pending messages,
//! members, unread counts, scroll, connection), the input line and its
//! history, the room picker and a paste waiting for confirmation.

use std::collections::VecDeque;
use std::time::Duration;

use chat_protocol::{ClientMessage, Limits, Mode, RoomName, RoomSummary, UserName};
use ratatui::layout::Rect;

use super::input::{History, Input};
use crate::clock::TimeFormat;
use crate::msg::Effect;
use crate::theme::Theme;

/// How long a history request (older messages, a search) may go
/// unanswered before the client gives up on it and says so: a server that
/// ignores the request must not leave "loading" forever.
pub const HISTORY_WAIT_MS: u64 = 10_000;

/// How many lines a room keeps; older ones are dropped.
pub const MAX_LINES: usize = 5_000;

/// What kind of line, and what the view needs to draw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A chat message or an action.
    Chat {
        /// The sender ("" in plain mode).
        user: String,
        /// An action (`/me`).
        emote: bool,
        /// Sent by this client.
        own: bool,
        /// It names this client's user.
        mention: bool,
    },
    /// Someone joined (dimmed).
    Join,
    /// Someone left (dimmed).
    Leave,
    /// Someone changed name (dimmed).
    Nick,
    /// A note from this client or the server's greeting.
    Info,
    /// Something went wrong.
    Error,
    /// The line between the history from the welcome and live messages.
    Divider,
}

/// One line in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Server time in unix ms; 0 when there is none (local notes).
    pub ts: u64,
    /// The server's message id (0 when none).
    pub id: u64,
    /// What kind of line.
    pub kind: LineKind,
    /// The text as received: the view sanitises it.
    pub text: String,
}

impl ChatLine {
    pub(super) fn note(kind: LineKind, text: impl Into<String>) -> Self {
        Self {
            ts: 0,
            id: 0,
            kind,
            text: text.into(),
        }
    }
}

/// Where a message typed by the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingState {
    /// Waiting for the connection.
    Queued,
    /// Handed to the connection, waiting for the server's echo.
    Sent,
    /// Refused; not retried.
    Failed(String),
}

/// A message typed by the user that the server has not echoed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The app's id for it.
    pub local_id: u64,
    /// The frame (chat or action).
    pub message: ClientMessage,
    /// Where it is.
    pub state: PendingState,
}

impl Pending {
    /// The text and whether it is an action.
    pub fn text(&self) -> (&str, bool) {
        match &self.message {
            ClientMessage::Chat { message } => (message, false),
            ClientMessage::Emote { message } => (message, true),
            ClientMessage::Nick { name } => (name.as_str(), false),
            ClientMessage::History(_) => ("", false),
            ClientMessage::Topic { topic } => (topic, false),
        }
    }
}

/// A room's connection, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting (attempt n).
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Connected.
    Online {
        /// Typed events or plain frames.
        mode: Mode,
    },
    /// Lost; retrying.
    Offline {
        /// Why.
        reason: String,
        /// When the next attempt starts, from when it was said.
        retry_in: Duration,
        /// When the next attempt starts, in unix ms (0: unknown).
        retry_at_ms: u64,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// Refused for good; not retrying.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// One joined room.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent facts about a room, not a state machine
pub struct RoomState {
    /// The room.
    pub name: RoomName,
    /// Its lines, oldest first, at most [`MAX_LINES`].
    pub lines: VecDeque<ChatLine>,
    /// Messages typed here and not yet echoed.
    pub pending: Vec<Pending>,
    /// Who is here (as the server said; plain mode: empty).
    pub members: Vec<String>,
    /// This connection's name as the server stamps it.
    pub me: Option<String>,
    /// The connection.
    pub conn: ConnState,
    /// The mode of the last connection.
    pub mode: Option<Mode>,
    /// Whether a connection has ever been made.
    pub connected_once: bool,
    /// The highest message id seen (for de-duplication).
    pub last_id: u64,
    /// The epoch `last_id` belongs to (see `Welcome::epoch`), once known.
    pub epoch: Option<String>,
    /// Messages received while not looked at.
    pub unread: usize,
    /// A message named the user while not looked at.
    pub mentioned: bool,
    /// Rows scrolled up from the bottom (0: following new messages).
    pub scroll: usize,
    /// Messages that arrived below while scrolled up.
    pub new_below: usize,
    /// The welcome just arrived: the server's announcement of this very
    /// connection's join comes next and says nothing new.
    pub own_join_due: bool,
    /// The room's topic ("" when none); `None` when the server has no
    /// topics (or has not said yet).
    pub topic: Option<String>,
    /// What the server accepts, from its welcome.
    pub limits: Option<Limits>,
    /// The number of `lines[0]`: each line keeps its number while older
    /// ones are dropped or loaded, so marks can point at lines.
    pub first_seq: u64,
    /// The read marker: the number of the last line seen before the room
    /// was left for another one.
    pub read_marker: Option<u64>,
    /// Loading older messages past the top.
    pub older: Older,
    /// A search's results, shown instead of the room's lines.
    pub search: Option<Search>,
    /// The history request on its way (its `ref`), if any.
    pub asked: Option<Asked>,
    /// Why the connection stopped for good was that the name is taken.
    pub name_taken: bool,
}

/// Where loading older messages stands for a room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Older {
    /// More may be there (or nothing was asked yet).
    #[default]
    Idle,
    /// Asked; waiting for the page.
    Loading,
    /// The server has nothing older.
    Exhausted,
    /// The server cannot page (plain mode, or no history requests).
    Unsupported,
}

/// A history request on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// Its `ref`, echoed in the answer.
    pub reference: String,
    /// Older messages or a search.
    pub kind: AskedFor,
    /// The first tick's time after asking (unix ms; 0: no tick yet), to
    /// give up on a server that never answers.
    pub since_ms: u64,
}

/// What a history request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskedFor {
    /// A page of older messages.
    Older,
    /// Search results.
    Search,
}

/// A search in a room and its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The words, as typed.
    pub words: String,
    /// The messages found, oldest first.
    pub results: VecDeque<ChatLine>,
    /// Where it stands.
    pub state: SearchState,
    /// The server holds more matches than shown.
    pub more: bool,
}

/// Where a search stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchState {
    /// Asked; no answer yet.
    Searching,
    /// Answered.
    Done,
    /// It could not be done (why, for the user).
    Failed(String),
}

/// The first line number: far from 0, so that older lines loaded at the top
/// can be numbered below it.
const FIRST_SEQ: u64 = 1 << 40;

impl RoomState {
    /// A room being joined.
    pub fn new(name: RoomName) -> Self {
        Self {
            name,
            lines: VecDeque::new(),
            pending: Vec::new(),
            members: Vec::new(),
            me: None,
            conn: ConnState::Connecting { attempt: 1 },
            mode: None,
            connected_once: false,
            last_id: 0,
            epoch: None,
            unread: 0,
            mentioned: false,
            scroll: 0,
            new_below: 0,
            own_join_due: false,
            topic: None,
            limits: None,
            first_seq: FIRST_SEQ,
            read_marker: None,
            older: Older::Idle,
            search: None,
            asked: None,
            name_taken: false,
        }
    }

    pub(super) fn push(&mut self, line: ChatLine) {
        while self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
            self.first_seq += 1;
        }
        self.lines.push_back(line);
    }

    /// Adds older lines (oldest first) above the first one; returns how
    /// many fitted (scrollback keeps at most [`MAX_LINES`]).
    pub(super) fn push_older(&mut self, lines: Vec<ChatLine>) -> usize {
        let room = MAX_LINES.saturating_sub(self.lines.len());
        let skip = lines.len().saturating_sub(room);
        let mut added = 0;
        for line in lines.into_iter().skip(skip).rev() {
            self.lines.push_front(line);
            self.first_seq -= 1;
            added += 1;
        }
        added
    }

    /// Puts a note above every line (where loading older messages stopped).
    pub(super) fn note_at_top(&mut self, text: &str) {
        self.lines.push_front(ChatLine::note(LineKind::Info, text));
        // One line over MAX_LINES at most: the next push drops it again.
        self.first_seq -= 1;
    }

    /// The number of the newest line (none when the room has no lines).
    pub fn last_seq(&self) -> Option<u64> {
        (!self.lines.is_empty()).then(|| self.first_seq + self.lines.len() as u64 - 1)
    }

    /// The index in `lines` after which the read marker is drawn: only when
    /// lines arrived after it.
    pub fn marker_index(&self) -> Option<usize> {
        let marker = self.read_marker?;
        let index = usize::try_from(marker.checked_sub(self.first_seq)?).ok()?;
        (index + 1 < self.lines.len()).then_some(index)
    }

    /// The oldest message id held (for loading older ones).
    pub fn oldest_id(&self) -> Option<u64> {
        self.lines.iter().map(|l| l.id).find(|id| *id > 0)
    }

    /// Distinct member names, sorted.
    pub fn member_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.members.iter().map(String::as_str).collect();
        names.sort_unstable_by_key(|n| n.to_lowercase());
        names.dedup();
        names
    }

    /// Whether the connection is up.
    pub fn is_online(&self) -> bool {
        matches!(self.conn, ConnState::Online { .. })
    }

    /// Whether messages still wait for delivery.
    pub fn has_undelivered(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p.state, PendingState::Queued | PendingState::Sent))
    }
}

/// The room list shown by the picker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickerRooms {
    /// Asked, no answer yet.
    Loading,
    /// The server's active rooms.
    Loaded(Vec<RoomSummary>),
    /// The list could not be fetched.
    Failed(String),
}

/// The room picker: the active rooms and a name being typed.
#[derive(Debug, Clone)]
pub struct Picker {
    /// The list.
    pub rooms: PickerRooms,
    /// The highlighted row.
    pub selected: usize,
    /// A new room name being typed.
    pub input: Input,
    /// Why the last choice was refused.
    pub error: Option<String>,
}

impl Picker {
    pub(super) fn new() -> Self {
        Self {
            rooms: PickerRooms::Loading,
            selected: 0,
            input: Input::default(),
            error: None,
        }
    }

    pub(super) fn list(&self) -> &[RoomSummary] {
        match &self.rooms {
            PickerRooms::Loaded(rooms) => rooms,
            _ => &[],
        }
    }
}

/// Settings the app is started with.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// The server, as shown in the status bar.
    pub server: String,
    /// The display name asked for.
    pub name: Option<UserName>,
    /// Local time's offset from UTC, in seconds (times are shown in it).
    pub utc_offset: i32,
    /// Words that highlight a message, besides the user's name.
    pub highlights: Vec<String>,
    /// The message time format.
    pub time_format: TimeFormat,
    /// The colours.
    pub theme: Theme,
    /// Whether rooms are logged (the runtime gets [`Effect::Log`]s).
    pub logging: bool,
}

impl AppOptions {
    /// Options with the defaults for everything but the server and name.
    pub fn new(server: impl Into<String>, name: Option<UserName>) -> Self {
        Self {
            server: server.into(),
            name,
            utc_offset: 0,
            highlights: Vec::new(),
            time_format: TimeFormat::default(),
            theme: Theme::default(),
            logging: false,
        }
    }
}

/// Tab completion in progress: pressing Tab again cycles through the names
/// that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The input line as completion left it (another edit ends it).
    pub after: String,
    /// Where the completed word starts (characters).
    pub start: usize,
    /// The candidates, in order, and which one is shown.
    pub candidates: Vec<String>,
    /// The one shown.
    pub index: usize,
}

/// The whole client state.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent switches and flags
pub struct App {
    /// The server, as shown in the status bar.
    pub server: String,
    /// The display name asked for (sent on every connection).
    pub name: Option<UserName>,
    /// Local time's offset from UTC in seconds.
    pub utc_offset: i32,
    /// Joined rooms, in the order joined.
    pub rooms: Vec<RoomState>,
    /// The room shown.
    pub active: usize,
    /// The input line.
    pub input: Input,
    /// Sent lines, for Up/Down.
    pub history: History,
    /// The room picker, when shown.
    pub picker: Option<Picker>,
    /// A big paste waiting for confirmation.
    pub paste: Option<String>,
    /// The terminal size (columns, rows).
    pub size: (u16, u16),
    /// Ctrl+C was pressed once while messages were undelivered.
    pub quit_armed: bool,
    /// Whether something changed since the last draw.
    pub dirty: bool,
    /// The latest time the runtime told (unix ms; 0: none yet). Only used
    /// for the reconnect countdown.
    pub now_ms: u64,
    /// Words that highlight a message, besides the user's name.
    pub highlights: Vec<String>,
    /// The message time format.
    pub time_format: TimeFormat,
    /// The colours.
    pub theme: Theme,
    /// Whether to emit [`Effect::Log`]s.
    pub logging: bool,
    /// Tab completion in progress.
    pub completion: Option<Completion>,
    /// The input line is a search prompt (Ctrl+R).
    pub searching: bool,
    pub(super) next_local_id: u64,
    /// Numbers history requests.
    pub(super) next_ref: u64,
}

impl App {
    /// A client with no room yet.
    pub fn new(options: AppOptions) -> Self {
        Self {
            server: options.server,
            name: options.name,
            utc_offset: options.utc_offset,
            rooms: Vec::new(),
            active: 0,
            input: Input::default(),
            history: History::default(),
            picker: None,
            paste: None,
            size: (80, 24),
            quit_armed: false,
            dirty: true,
            now_ms: 0,
            highlights: options.highlights,
            time_format: options.time_format,
            theme: options.theme,
            logging: options.logging,
            completion: None,
            searching: false,
            next_local_id: 1,
            next_ref: 1,
        }
    }

    /// The terminal's title: the room, with the unread count of the others
    /// (`!` when one of them highlighted you).
    pub fn title(&self) -> String {
        let unread: usize = self
            .rooms
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.active)
            .map(|(_, r)| r.unread)
            .sum();
        let mentioned = self
            .rooms
            .iter()
            .enumerate()
            .any(|(i, r)| i != self.active && r.mentioned);
        let room = self
            .active_room()
            .map_or_else(String::new, |r| format!(" {}", r.name));
        match (unread, mentioned) {
            (0, false) => format!("chat-tui:{room}"),
            (n, false) => format!("({n}) chat-tui:{room}"),
            (n, true) => format!("({n}!) chat-tui:{room}"),
        }
    }

    /// Joins these rooms (the first becomes active), or opens the picker
    /// when there are none. The start of a session.
    pub fn start(&mut self, rooms: &[RoomName]) -> Vec<Effect> {
        if rooms.is_empty() {
            return self.open_picker();
        }
        let mut effects = Vec::new();
        for room in rooms {
            effects.extend(self.join(room.clone()));
        }
        self.switch_to(0);
        effects
    }

    /// Whether something on screen counts down, so that the runtime should
    /// send [`crate::msg::Msg::Tick`]s: a room waiting to reconnect, or a
    /// history request waiting for its answer (given up after
    /// [`HISTORY_WAIT_MS`]).
    pub fn is_animating(&self) -> bool {
        self.rooms
            .iter()
            .any(|r| matches!(r.conn, ConnState::Offline { .. }) || r.asked.is_some())
    }

    /// The room shown, if any.
    pub fn active_room(&self) -> Option<&RoomState> {
        self.rooms.get(self.active)
    }

    pub(super) fn active_room_mut(&mut self) -> Option<&mut RoomState> {
        self.rooms.get_mut(self.active)
    }

    pub(super) fn room_index(&self, name: &RoomName) -> Option<usize> {
        self.rooms.iter().position(|r| &r.name == name)
    }

    /// The whole terminal as a rect.
    pub fn screen(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// Shows room `index` and clears its unread marks. The room left keeps
    /// a read marker after its last line, shown when it is seen again with
    /// newer lines below.
    pub fn switch_to(&mut self, index: usize) {
        if index >= self.rooms.len() {
            return;
        }
        if index != self.active {
            if let Some(left) = self.rooms.get_mut(self.active) {
                left.read_marker = left.last_seq();
            }
        }
        self.active = index;
        let room = &mut self.rooms[index];
        room.unread = 0;
        room.mentioned = false;
    }

    /// Adds a local note to the active room (or the picker).
    pub(super) fn note(&mut self, kind: LineKind, text: impl Into<String>) {
        let text = text.into();
        if let Some(picker) = &mut self.picker {
            picker.error = Some(text);
            return;
        }
        if let Some(room) = self.rooms.get_mut(self.active) {
            room.push(ChatLine::note(kind, text));
        }
    }
}
