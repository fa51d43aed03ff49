//! How many terminal rows a room's lines take: the columns (time, nick,
//! text) for a pane width, and each line's wrapped text rows.

use crate::app::{ChatLine, LineKind, Pending, PendingState, RoomState};
use crate::sanitize::display_lines;
use crate::wrap::{self, wrap};

/// Widths of the columns, in terminal cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The time, with its trailing space (0: not shown).
    pub time: usize,
    /// The nick, right-aligned.
    pub nick: usize,
    /// The text, after the `" │ "` separator.
    pub text: usize,
}

pub const SEPARATOR: &str = " │ ";
/// The separator's width in cells.
pub const SEPARATOR_WIDTH: usize = 3;

/// The columns for `room` in a pane `width` cells wide. Narrow panes drop
/// the seconds, then the time, and shorten nicks.
pub fn columns(room: &RoomState, width: u16) -> Columns {
    let width = usize::from(width);
    let (time, cap) = match width {
        50.. => (9, 12),
        32..50 => (6, 8),
        _ => (0, 6),
    };
    let longest = room
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Chat {
                user, emote: false, ..
            } => Some(wrap::width(user)),
            _ => None,
        })
        .chain(room.me.iter().map(|m| wrap::width(m)))
        .max()
        .unwrap_or(0);
    let nick = longest.clamp(3, cap);
    Columns {
        time,
        nick,
        text: width.saturating_sub(time + nick + SEPARATOR_WIDTH),
    }
}

/// The text of a line as shown in the text column, before wrapping.
pub fn shown_text(line: &ChatLine) -> String {
    match &line.kind {
        LineKind::Chat {
            user, emote: true, ..
        } => format!("{user} {}", line.text),
        _ => line.text.clone(),
    }
}

/// The text rows of a line: sanitised, split at line breaks, wrapped.
pub fn text_rows(text: &str, cols: Columns) -> Vec<String> {
    display_lines(text)
        .iter()
        .flat_map(|l| wrap(l, cols.text))
        .collect()
}

pub fn pending_text(room: &RoomState, pending: &Pending) -> String {
    match pending.text() {
        (text, true) => format!("{} {text}", room.me.as_deref().unwrap_or("you")),
        (text, false) => text.to_owned(),
    }
}

fn pending_rows(room: &RoomState, pending: &Pending, cols: Columns) -> usize {
    let extra = usize::from(matches!(pending.state, PendingState::Failed(_)));
    text_rows(&pending_text(room, pending), cols).len() + extra
}

/// How many rows `line` takes in `room`'s pane of `width` cells.
pub fn line_rows(line: &ChatLine, room: &RoomState, width: u16) -> usize {
    if line.kind == LineKind::Divider {
        return 1;
    }
    text_rows(&shown_text(line), columns(room, width)).len()
}

/// How many rows the whole room takes at `width`.
pub fn total_rows(room: &RoomState, width: u16) -> usize {
    let cols = columns(room, width);
    room.lines
        .iter()
        .map(|l| {
            if l.kind == LineKind::Divider {
                1
            } else {
                text_rows(&shown_text(l), cols).len()
            }
        })
        .sum::<usize>()
        + room
            .pending
            .iter()
            .map(|p| pending_rows(room, p, cols))
            .sum::<usize>()
}
