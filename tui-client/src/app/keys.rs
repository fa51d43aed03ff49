//! Terminal input: keys, the mouse, pastes, and the room picker's keys.

use chat_protocol::{ClientMessage, HistoryQuery, HistoryRequest, Mode, RoomName};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Position;

use super::input::Input;
use super::state::{Asked, AskedFor, Completion, Older};
use super::{
    App, ChatLine, LineKind, PASTE_CONFIRM_CHARS, PASTE_CONFIRM_LINES, PendingState, PickerRooms,
    WHEEL_ROWS,
};
use crate::geometry::{self, RowCtx};
use crate::msg::Effect;

/// How many older messages one page asks for.
pub const OLDER_PAGE: u32 = 100;

/// What PgUp at the top says on a server that cannot page.
const NO_OLDER: &str =
    "this server does not keep older messages for clients to load (/search cannot either)";

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
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
        if key.code != KeyCode::Tab {
            self.completion = None;
        }
        match key.code {
            KeyCode::Esc if self.searching => {
                self.searching = false;
                self.input.take();
                Vec::new()
            }
            KeyCode::Esc => {
                if let Some(room) = self.active_room_mut() {
                    if room.search.take().is_some() {
                        room.scroll = 0;
                        return Vec::new();
                    }
                }
                self.dirty = false;
                Vec::new()
            }
            KeyCode::Char('r' | 'R') if ctrl => {
                self.searching = true;
                Vec::new()
            }
            KeyCode::Char('a' | 'A') if alt => {
                self.jump_to_activity();
                Vec::new()
            }
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
                self.scroll_up(page)
            }
            KeyCode::PageDown => {
                let page = self.page_rows();
                self.scroll_down(page);
                Vec::new()
            }
            KeyCode::Home if self.input.is_empty() => self.scroll_up(usize::MAX),
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

    pub(super) fn on_ctrl_c(&mut self) -> Vec<Effect> {
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

    pub(super) fn page_rows(&self) -> usize {
        let areas = geometry::areas(self.screen(), self);
        usize::from(areas.messages.height.saturating_sub(1)).max(1)
    }

    /// How far up the active room can scroll.
    pub(super) fn max_scroll(&self) -> usize {
        let Some(room) = self.active_room() else {
            return 0;
        };
        let areas = geometry::areas(self.screen(), self);
        let total = geometry::total_rows(&RowCtx::of(self), room, areas.messages.width);
        total.saturating_sub(usize::from(areas.messages.height))
    }

    /// Scrolls up; at the top, asks the server for older messages.
    pub(super) fn scroll_up(&mut self, rows: usize) -> Vec<Effect> {
        let max = self.max_scroll();
        let Some(room) = self.active_room_mut() else {
            return Vec::new();
        };
        let was_at_top = room.scroll >= max;
        room.scroll = room.scroll.saturating_add(rows).min(max);
        if room.scroll >= max {
            return self.load_older(was_at_top);
        }
        Vec::new()
    }

    /// Asks for the page of messages older than the oldest shown, when the
    /// server can give one and none is on its way. `again`: the top was
    /// already in view (a second PgUp), so a server that cannot page says
    /// so.
    pub(super) fn load_older(&mut self, again: bool) -> Vec<Effect> {
        let reference = self.next_ref.to_string();
        let Some(room) = self.active_room_mut() else {
            return Vec::new();
        };
        if room.search.is_some() || room.asked.is_some() {
            return Vec::new();
        }
        if room.mode == Some(Mode::Plain) {
            room.older = Older::Unsupported;
        }
        match room.older {
            Older::Idle if room.is_online() => {}
            Older::Unsupported if again => {
                if room.lines.back().is_none_or(|l| l.text != NO_OLDER) {
                    room.push(ChatLine::note(LineKind::Info, NO_OLDER));
                    room.scroll = 0;
                }
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        let mut query = HistoryQuery::new().limit(OLDER_PAGE);
        if let Some(oldest) = room.oldest_id() {
            if oldest <= 1 {
                // Ids start at 1: nothing can be older.
                room.older = Older::Exhausted;
                room.note_at_top(super::network::BEGINNING_NOTE);
                return Vec::new();
            }
            query = query.before(oldest);
        }
        room.older = Older::Loading;
        room.asked = Some(Asked {
            reference: reference.clone(),
            kind: AskedFor::Older,
            since_ms: 0,
        });
        let effect = Effect::History {
            room: room.name.clone(),
            request: HistoryRequest {
                query,
                reference: Some(reference),
            },
        };
        self.next_ref += 1;
        vec![effect]
    }

    /// Alt+A: the next room with something unread, rooms that highlighted
    /// you first (as WeeChat's and irssi's Alt+A).
    pub(super) fn jump_to_activity(&mut self) {
        let n = self.rooms.len();
        let order = (1..n).map(|step| (self.active + step) % n);
        let found = order
            .clone()
            .find(|&i| self.rooms[i].mentioned)
            .or_else(|| order.clone().find(|&i| self.rooms[i].unread > 0));
        match found {
            Some(index) => self.switch_to(index),
            None => self.dirty = false,
        }
    }

    pub(super) fn scroll_down(&mut self, rows: usize) {
        if let Some(room) = self.active_room_mut() {
            room.scroll = room.scroll.saturating_sub(rows);
            if room.scroll == 0 {
                room.new_below = 0;
            }
        }
    }

    /// Tab: completes the member name being typed; Tab again cycles through
    /// every name that matches (`bob`, `bobby`, ...).
    pub(super) fn complete_name(&mut self) {
        if let Some(done) = self.completion.take() {
            if done.after == self.input.text() && done.candidates.len() > 1 {
                let shown = &done.candidates[done.index];
                let suffix = if done.start == 0 { ": " } else { " " };
                for _ in 0..(shown.chars().count() + suffix.chars().count()) {
                    self.input.delete_back();
                }
                let index = (done.index + 1) % done.candidates.len();
                self.input.insert_str(&done.candidates[index]);
                self.input.insert_str(suffix);
                self.completion = Some(Completion {
                    after: self.input.text().to_owned(),
                    index,
                    ..done
                });
                return;
            }
        }
        self.complete_first();
    }

    pub(super) fn cycle(&mut self, forward: bool) {
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

    fn complete_first(&mut self) {
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
        let candidates: Vec<String> = room
            .member_names()
            .into_iter()
            .filter(|n| Some(*n) != me && n.to_lowercase().starts_with(&lower))
            .map(str::to_owned)
            .collect();
        let Some(found) = candidates.first().cloned() else {
            return;
        };
        let start = before[..word_start].chars().count();
        for _ in 0..word.chars().count() {
            self.input.delete_back();
        }
        self.input.insert_str(&found);
        self.input.insert_str(if start == 0 { ": " } else { " " });
        self.completion = Some(Completion {
            after: self.input.text().to_owned(),
            start,
            candidates,
            index: 0,
        });
    }

    // ----- paste -------------------------------------------------------

    pub(super) fn on_paste(&mut self, text: &str) -> Vec<Effect> {
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

    pub(super) fn on_paste_confirm(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Enter | KeyCode::Char('y' | 'Y') => {
                if let Some(text) = self.paste.take() {
                    self.input.insert_str(&text);
                    let line = self.input.text().to_owned();
                    let message = ClientMessage::Chat { message: line };
                    if !self.fits(&message) {
                        // Kept in the input line, to shorten.
                        return Vec::new();
                    }
                    let line = self.input.take();
                    self.history.push(&line);
                    return self.send(message);
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

    pub(super) fn on_picker_key(&mut self, key: KeyEvent) -> Vec<Effect> {
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
    pub(super) fn pick(&mut self, row: Option<usize>) -> Vec<Effect> {
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

    pub(super) fn on_mouse(&mut self, mouse: MouseEvent) -> Vec<Effect> {
        let at = Position::new(mouse.column, mouse.row);
        if self.picker.is_some() {
            let list = geometry::picker_list(self.screen());
            if let (MouseEventKind::Down(MouseButton::Left), true) = (mouse.kind, list.contains(at))
            {
                if let Some(picker) = &mut self.picker {
                    let row = usize::from(mouse.row - list.y)
                        + geometry::picker_first_visible(picker.selected, list);
                    if row < picker.list().len() {
                        picker.selected = row;
                        return self.pick(Some(row));
                    }
                }
            }
            return Vec::new();
        }
        let areas = geometry::areas(self.screen(), self);
        match mouse.kind {
            MouseEventKind::ScrollUp => return self.scroll_up(WHEEL_ROWS),
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
