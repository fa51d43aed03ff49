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

pub mod command;
pub mod input;

use std::collections::VecDeque;
use std::time::Duration;

use chat_protocol::{
    ChatEvent, ClientMessage, ErrorCode, Mode, RoomName, RoomSummary, ServerEvent, UserName,
    Welcome, close,
};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

pub use command::Command;
pub use input::{History, Input};

use crate::msg::{Effect, Msg, NetEvent};
use crate::ui;

/// How many lines a room keeps; older ones are dropped.
pub const MAX_LINES: usize = 5_000;
/// A paste with more lines than this asks for confirmation.
pub const PASTE_CONFIRM_LINES: usize = 3;
/// A paste with more characters than this asks for confirmation.
pub const PASTE_CONFIRM_CHARS: usize = 1_000;
/// Rows scrolled by one mouse-wheel step.
pub const WHEEL_ROWS: usize = 3;

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
    fn note(kind: LineKind, text: impl Into<String>) -> Self {
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
}

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
        }
    }

    fn push(&mut self, line: ChatLine) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
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
    fn new() -> Self {
        Self {
            rooms: PickerRooms::Loading,
            selected: 0,
            input: Input::default(),
            error: None,
        }
    }

    fn list(&self) -> &[RoomSummary] {
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
}

/// The whole client state.
#[derive(Debug, Clone)]
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
    next_local_id: u64,
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
            next_local_id: 1,
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
    /// send [`Msg::Tick`]s: a room waiting to reconnect.
    pub fn is_animating(&self) -> bool {
        self.rooms
            .iter()
            .any(|r| matches!(r.conn, ConnState::Offline { .. }))
    }

    /// The room shown, if any.
    pub fn active_room(&self) -> Option<&RoomState> {
        self.rooms.get(self.active)
    }

    fn active_room_mut(&mut self) -> Option<&mut RoomState> {
        self.rooms.get_mut(self.active)
    }

    fn room_index(&self, name: &RoomName) -> Option<usize> {
        self.rooms.iter().position(|r| &r.name == name)
    }

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

    // ----- keys -------------------------------------------------------

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return self.on_ctrl_c();
        }
        self.quit_armed = false;
        if self.paste.is_some() {
            return self.on_paste_confirm(key);
        }
        if self.picker.is_some() {
            return self.on_picker_key(key);
        }
        match key.code {
            KeyCode::Enter if alt => {
                self.input.insert('\n');
                Vec::new()
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Char(c @ '1'..='9') if alt => {
                let index = (c as usize) - ('1' as usize);
                if index < self.rooms.len() {
                    self.switch_to(index);
                }
                Vec::new()
            }
            KeyCode::Char('n' | 'N') if ctrl => {
                self.cycle(true);
                Vec::new()
            }
            KeyCode::Char('p' | 'P') if ctrl => {
                self.cycle(false);
                Vec::new()
            }
            KeyCode::Right if alt => {
                self.cycle(true);
                Vec::new()
            }
            KeyCode::Left if alt => {
                self.cycle(false);
                Vec::new()
            }
            KeyCode::Char('l' | 'L') if ctrl => vec![Effect::Redraw],
            KeyCode::PageUp => {
                let page = self.page_rows();
                self.scroll_up(page);
                Vec::new()
            }
            KeyCode::PageDown => {
                let page = self.page_rows();
                self.scroll_down(page);
                Vec::new()
            }
            KeyCode::Home if self.input.is_empty() => {
                self.scroll_up(usize::MAX);
                Vec::new()
            }
            KeyCode::End if self.input.is_empty() => {
                self.scroll_down(usize::MAX);
                Vec::new()
            }
            KeyCode::Up => {
                if let Some(entry) = self.history.up(self.input.text()) {
                    let entry = entry.to_owned();
                    self.input.set(&entry);
                }
                Vec::new()
            }
            KeyCode::Down => {
                if let Some(entry) = self.history.down() {
                    self.input.set(&entry);
                }
                Vec::new()
            }
            KeyCode::Tab => {
                self.complete_name();
                Vec::new()
            }
            _ => {
                edit_input(&mut self.input, key);
                Vec::new()
            }
        }
    }

    fn on_ctrl_c(&mut self) -> Vec<Effect> {
        let undelivered: usize = self
            .rooms
            .iter()
            .flat_map(|r| &r.pending)
            .filter(|p| matches!(p.state, PendingState::Queued | PendingState::Sent))
            .count();
        if undelivered > 0 && !self.quit_armed {
            self.quit_armed = true;
            let s = if undelivered == 1 { "" } else { "s" };
            self.note(
                LineKind::Error,
                format!(
                    "{undelivered} message{s} not delivered yet: press Ctrl+C again to quit anyway"
                ),
            );
            return Vec::new();
        }
        vec![Effect::Quit]
    }

    fn page_rows(&self) -> usize {
        let areas = ui::layout::areas(self.screen(), self);
        usize::from(areas.messages.height.saturating_sub(1)).max(1)
    }

    /// The whole terminal as a rect.
    pub fn screen(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    fn max_scroll(&self) -> usize {
        let Some(room) = self.active_room() else {
            return 0;
        };
        let areas = ui::layout::areas(self.screen(), self);
        let total = ui::messages::total_rows(room, areas.messages.width);
        total.saturating_sub(usize::from(areas.messages.height))
    }

    fn scroll_up(&mut self, rows: usize) {
        let max = self.max_scroll();
        if let Some(room) = self.active_room_mut() {
            room.scroll = room.scroll.saturating_add(rows).min(max);
        }
    }

    fn scroll_down(&mut self, rows: usize) {
        if let Some(room) = self.active_room_mut() {
            room.scroll = room.scroll.saturating_sub(rows);
            if room.scroll == 0 {
                room.new_below = 0;
            }
        }
    }

    fn cycle(&mut self, forward: bool) {
        let n = self.rooms.len();
        if n > 1 {
            let next = if forward {
                (self.active + 1) % n
            } else {
                (self.active + n - 1) % n
            };
            self.switch_to(next);
        }
    }

    /// Shows room `index` and clears its unread marks.
    pub fn switch_to(&mut self, index: usize) {
        if let Some(room) = self.rooms.get_mut(index) {
            self.active = index;
            room.unread = 0;
            room.mentioned = false;
        }
    }

    fn complete_name(&mut self) {
        let Some(room) = self.active_room() else {
            return;
        };
        let before = self.input.before_cursor();
        let word_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[word_start..];
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        let me = room.me.as_deref();
        let Some(found) = room
            .member_names()
            .into_iter()
            .filter(|n| Some(*n) != me)
            .find(|n| n.to_lowercase().starts_with(&lower))
            .map(str::to_owned)
        else {
            return;
        };
        let at_start = word_start == 0;
        for _ in 0..word.chars().count() {
            self.input.delete_back();
        }
        self.input.insert_str(&found);
        self.input.insert_str(if at_start { ": " } else { " " });
    }

    // ----- sending and commands ----------------------------------------

    fn submit(&mut self) -> Vec<Effect> {
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

    fn run_command(&mut self, cmd: Command) -> Vec<Effect> {
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

    fn send(&mut self, message: ClientMessage) -> Vec<Effect> {
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

    fn join(&mut self, room: RoomName) -> Vec<Effect> {
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

    fn leave(&mut self, index: usize) -> Vec<Effect> {
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

    fn open_picker(&mut self) -> Vec<Effect> {
        self.picker = Some(Picker::new());
        vec![Effect::FetchRooms]
    }

    fn rename(&mut self, name: &UserName) -> Vec<Effect> {
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

    /// Adds a local note to the active room (or the picker).
    fn note(&mut self, kind: LineKind, text: impl Into<String>) {
        let text = text.into();
        if let Some(picker) = &mut self.picker {
            picker.error = Some(text);
            return;
        }
        if let Some(room) = self.rooms.get_mut(self.active) {
            room.push(ChatLine::note(kind, text));
        }
    }

    // ----- paste -------------------------------------------------------

    fn on_paste(&mut self, text: &str) -> Vec<Effect> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        if let Some(picker) = &mut self.picker {
            let first = text.lines().next().unwrap_or_default().trim();
            picker.input.insert_str(first);
            return Vec::new();
        }
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let lines = text.split('\n').count();
        if lines > PASTE_CONFIRM_LINES || text.chars().count() > PASTE_CONFIRM_CHARS {
            self.paste = Some(text.to_owned());
        } else {
            self.input.insert_str(text);
        }
        Vec::new()
    }

    fn on_paste_confirm(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Enter | KeyCode::Char('y' | 'Y') => {
                if let Some(text) = self.paste.take() {
                    self.input.insert_str(&text);
                    let line = self.input.take();
                    self.history.push(&line);
                    return self.send(ClientMessage::Chat { message: line });
                }
                Vec::new()
            }
            KeyCode::Char('e' | 'E') => {
                if let Some(text) = self.paste.take() {
                    self.input.insert_str(&text);
                }
                Vec::new()
            }
            KeyCode::Esc | KeyCode::Char('n' | 'N') => {
                self.paste = None;
                Vec::new()
            }
            _ => {
                self.dirty = false;
                Vec::new()
            }
        }
    }

    // ----- picker ------------------------------------------------------

    fn on_picker_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let has_rooms = !self.rooms.is_empty();
        let Some(picker) = &mut self.picker else {
            return Vec::new();
        };
        let count = picker.list().len();
        match key.code {
            KeyCode::Up => picker.selected = picker.selected.saturating_sub(1),
            KeyCode::Down => picker.selected = (picker.selected + 1).min(count.saturating_sub(1)),
            KeyCode::Esc if has_rooms => self.picker = None,
            KeyCode::Esc => return vec![Effect::Quit],
            KeyCode::F(5) => {
                picker.rooms = PickerRooms::Loading;
                return vec![Effect::FetchRooms];
            }
            KeyCode::Char('r' | 'R') if ctrl => {
                picker.rooms = PickerRooms::Loading;
                return vec![Effect::FetchRooms];
            }
            KeyCode::Enter => return self.pick(None),
            _ => {
                picker.error = None;
                edit_input(&mut picker.input, key);
            }
        }
        Vec::new()
    }

    /// Joins the typed name, or row `row` (or the highlighted row).
    fn pick(&mut self, row: Option<usize>) -> Vec<Effect> {
        let Some(picker) = &mut self.picker else {
            return Vec::new();
        };
        let typed = picker.input.text().trim();
        let chosen = if row.is_none() && !typed.is_empty() {
            RoomName::new(typed).map_err(|err| err.to_string())
        } else {
            let index = row.unwrap_or(picker.selected);
            match picker.list().get(index) {
                Some(summary) => Ok(summary.name.clone()),
                None => Err("type a room name, then Enter".to_owned()),
            }
        };
        match chosen {
            Ok(room) => self.join(room),
            Err(err) => {
                picker.error = Some(err);
                Vec::new()
            }
        }
    }

    // ----- mouse -------------------------------------------------------

    fn on_mouse(&mut self, mouse: MouseEvent) -> Vec<Effect> {
        let at = Position::new(mouse.column, mouse.row);
        if self.picker.is_some() {
            let list = ui::picker::list_area(self.screen());
            if let (MouseEventKind::Down(MouseButton::Left), true) = (mouse.kind, list.contains(at))
            {
                if let Some(picker) = &mut self.picker {
                    let row = usize::from(mouse.row - list.y)
                        + ui::picker::first_visible(picker.selected, list);
                    if row < picker.list().len() {
                        picker.selected = row;
                        return self.pick(Some(row));
                    }
                }
            }
            return Vec::new();
        }
        let areas = ui::layout::areas(self.screen(), self);
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_up(WHEEL_ROWS),
            MouseEventKind::ScrollDown => self.scroll_down(WHEEL_ROWS),
            MouseEventKind::Down(MouseButton::Left) if areas.rooms.contains(at) => {
                let index = usize::from(mouse.row - areas.rooms.y);
                if index < self.rooms.len() {
                    self.switch_to(index);
                }
            }
            _ => self.dirty = false,
        }
        Vec::new()
    }

    // ----- network -----------------------------------------------------

    fn on_net(&mut self, name: &RoomName, event: NetEvent) -> Vec<Effect> {
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

    fn on_server_event(&mut self, index: usize, event: ServerEvent) -> Vec<Effect> {
        let active = index == self.active;
        let asked_name = self.name.as_ref().map(|n| n.as_str().to_owned());
        let width = ui::layout::areas(self.screen(), self).messages.width;
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
                    room.scroll += ui::messages::line_rows(&line, room, width);
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
            ServerEvent::Unknown => self.dirty = false,
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

/// The editing keys shared by the chat input and the picker.
fn edit_input(input: &mut Input, key: KeyEvent) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::Char('a' | 'A') if ctrl => input.home(),
        KeyCode::Char('e' | 'E') if ctrl => input.end(),
        KeyCode::Char('w' | 'W') if ctrl => input.delete_word_back(),
        KeyCode::Char('u' | 'U') if ctrl => input.kill_to_start(),
        KeyCode::Char('k' | 'K') if ctrl => input.kill_to_end(),
        KeyCode::Char('b' | 'B') if ctrl => input.left(),
        KeyCode::Char('f' | 'F') if ctrl => input.right(),
        KeyCode::Char('d' | 'D') if ctrl => input.delete_forward(),
        KeyCode::Char('h' | 'H') if ctrl => input.delete_back(),
        KeyCode::Char('b' | 'B') if alt => input.word_left(),
        KeyCode::Char('f' | 'F') if alt => input.word_right(),
        KeyCode::Backspace if alt || ctrl => input.delete_word_back(),
        KeyCode::Left if ctrl => input.word_left(),
        KeyCode::Right if ctrl => input.word_right(),
        KeyCode::Char(c) if !ctrl && !alt => input.insert(c),
        KeyCode::Backspace => input.delete_back(),
        KeyCode::Delete => input.delete_forward(),
        KeyCode::Left => input.left(),
        KeyCode::Right => input.right(),
        KeyCode::Home => input.home(),
        KeyCode::End => input.end(),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests;
