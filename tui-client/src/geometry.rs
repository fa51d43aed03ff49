//! Where things go on screen, computed from the terminal size and the
//! state alone: the panes ([`areas`]), the picker's list, and how many rows
//! each message takes ([`rows`]). Both `app` (mouse clicks, page size,
//! keeping the view still while scrolled) and `ui` (drawing) use it, so
//! they always agree, and `app` never depends on `ui`.
//!
//! ```text
//! title: the room and its topic                      (1 row)
//! rooms │ messages (time nick │ text)              │ members
//!       │                                            │
//! status bar                                         (1 row)
//! input line                                         (1 row)
//! ```
//! Narrow terminals lose the member list first (under
//! [`MEMBERS_MIN_WIDTH`] columns), then the rooms pane (under
//! [`ROOMS_MIN_WIDTH`]); the status bar shows the room then. Short
//! terminals (under [`TITLE_MIN_HEIGHT`] rows) lose the title line.

use chat_protocol::Mode;
use ratatui::layout::Rect;

use crate::app::App;
use crate::wrap;

pub mod rows;

pub use rows::{
    Columns, RowCtx, Shown, columns, day_break, line_rows, shown, text_rows, total_rows,
};

/// Below this width there is no rooms pane.
pub const ROOMS_MIN_WIDTH: u16 = 60;
/// Below this width there is no member list.
pub const MEMBERS_MIN_WIDTH: u16 = 90;
/// Below this height there is no title line.
pub const TITLE_MIN_HEIGHT: u16 = 8;

/// The panes of the chat screen. A pane that does not fit has zero size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The title line: the room and its topic.
    pub title: Rect,
    /// The joined rooms, one per row, with a border on the right.
    pub rooms: Rect,
    /// The messages of the active room.
    pub messages: Rect,
    /// The member list, with a border on the left.
    pub members: Rect,
    /// The status bar.
    pub status: Rect,
    /// The input line.
    pub input: Rect,
}

/// Splits `area` into the chat screen's panes.
pub fn areas(area: Rect, app: &App) -> Areas {
    let h = area.height;
    let input = Rect::new(area.x, area.y + h.saturating_sub(1), area.width, h.min(1));
    let status = if h >= 2 {
        Rect::new(area.x, area.y + h - 2, area.width, 1)
    } else {
        Rect::new(area.x, area.y, area.width, 0)
    };
    let title_h = u16::from(h >= TITLE_MIN_HEIGHT);
    let title = Rect::new(area.x, area.y, area.width, title_h);
    let main_h = h.saturating_sub(2 + title_h);
    let area = Rect::new(area.x, area.y + title_h, area.width, area.height);
    let rooms_w = if area.width >= ROOMS_MIN_WIDTH && !app.rooms.is_empty() {
        rooms_width(app)
    } else {
        0
    };
    let members_w = match app.active_room() {
        Some(room) if area.width >= MEMBERS_MIN_WIDTH && room.mode != Some(Mode::Plain) => {
            let longest = room
                .members
                .iter()
                .map(|m| wrap::width(m))
                .max()
                .unwrap_or(0);
            u16::try_from(longest + 2).unwrap_or(u16::MAX).clamp(10, 18)
        }
        _ => 0,
    };
    let rooms = Rect::new(area.x, area.y, rooms_w, main_h);
    let members = Rect::new(
        area.x + area.width.saturating_sub(members_w),
        area.y,
        members_w,
        main_h,
    );
    let messages = Rect::new(
        area.x + rooms_w,
        area.y,
        area.width.saturating_sub(rooms_w + members_w),
        main_h,
    );
    Areas {
        title,
        rooms,
        messages,
        members,
        status,
        input,
    }
}

fn rooms_width(app: &App) -> u16 {
    // "NN.name (999!)" plus the border.
    let longest = app
        .rooms
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(0);
    u16::try_from(longest + 10)
        .unwrap_or(u16::MAX)
        .clamp(14, 24)
}

/// The rows of the room picker's list (the first row is room 0): what a
/// click maps to.
pub fn picker_list(screen: Rect) -> Rect {
    let top = 5.min(screen.height);
    Rect::new(screen.x, screen.y + top, screen.width, screen.height - top)
}

/// The index of the first room the picker shows, so that the selection is
/// in view.
pub fn picker_first_visible(selected: usize, list: Rect) -> usize {
    selected.saturating_sub(usize::from(list.height).saturating_sub(1))
}
