//! How many terminal rows a room's lines take: the columns (time, nick,
//! text) for a pane width, each line's wrapped text rows, and the rows
//! between lines (a day-change line, the read marker).
//!
//! What the message pane shows ([`Shown`]) is either the room's lines with
//! its pending messages, or a search's results under a header row.

use std::collections::VecDeque;

use time::Date;

use crate::app::{App, ChatLine, LineKind, Pending, PendingState, RoomState};
use crate::clock;
use crate::sanitize::display_lines;
use crate::wrap::{self, wrap};

/// Widths of the columns, in terminal cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The time, with its trailing space (0: not shown).
    pub time: usize,
    /// Whether the time is in the configured format (else `HH:MM`).
    pub full_time: bool,
    /// The nick, right-aligned.
    pub nick: usize,
    /// The text, after the `" │ "` separator.
    pub text: usize,
}

/// Between the nick and the text.
pub const SEPARATOR: &str = " │ ";
/// The separator's width in cells.
pub const SEPARATOR_WIDTH: usize = 3;

/// What row counting needs from the app, so that it can be taken before
/// a room is borrowed mutably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCtx {
    /// Local time's offset from UTC (seconds), for day changes.
    pub utc_offset: i32,
    /// The configured time format's width.
    pub time_width: usize,
    /// The name pending messages are shown under when the room has not
    /// said ours yet.
    pub name: Option<String>,
}

impl RowCtx {
    /// The context of `app`.
    pub fn of(app: &App) -> Self {
        Self {
            utc_offset: app.utc_offset,
            time_width: app.time_format.width(),
            name: app.name.as_ref().map(|n| n.as_str().to_owned()),
        }
    }
}

/// What the message pane shows.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    /// The lines, oldest first.
    pub lines: &'a VecDeque<ChatLine>,
    /// Draw the read marker after this line.
    pub marker: Option<usize>,
    /// Messages waiting for their echo, below the lines.
    pub pending: &'a [Pending],
    /// A search: a header row above the results.
    pub search: bool,
}

/// What `room`'s pane shows now.
pub fn shown(room: &RoomState) -> Shown<'_> {
    match &room.search {
        Some(search) => Shown {
            lines: &search.results,
            marker: None,
            pending: &[],
            search: true,
        },
        None => Shown {
            lines: &room.lines,
            marker: room.marker_index(),
            pending: &room.pending,
            search: false,
        },
    }
}

/// The name `room`'s own messages are shown under.
pub fn my_name<'a>(ctx: &'a RowCtx, room: &'a RoomState) -> &'a str {
    room.me.as_deref().or(ctx.name.as_deref()).unwrap_or("you")
}

/// The columns for `room` in a pane `width` cells wide. Narrow panes drop
/// the seconds, then the time, and shorten nicks.
pub fn columns(ctx: &RowCtx, room: &RoomState, width: u16) -> Columns {
    let width = usize::from(width);
    let full = ctx.time_width + 1;
    let (time, full_time, cap) = match width {
        w if w >= 50 && w >= full + 30 => (full, true, 12),
        32.. => (6, false, 8),
        _ => (0, false, 6),
    };
    let shown = shown(room);
    let longest = shown
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Chat {
                user, emote: false, ..
            } => Some(wrap::width(user)),
            _ => None,
        })
        .chain(std::iter::once(wrap::width(my_name(ctx, room))))
        .max()
        .unwrap_or(0);
    let nick = longest.clamp(3, cap);
    Columns {
        time,
        full_time,
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

/// The text of a pending message (an action gets our name first).
pub fn pending_text(name: &str, pending: &Pending) -> String {
    match pending.text() {
        (text, true) => format!("{name} {text}"),
        (text, false) => text.to_owned(),
    }
}

fn pending_rows(name: &str, pending: &Pending, cols: Columns) -> usize {
    let extra = usize::from(matches!(pending.state, PendingState::Failed(_)));
    text_rows(&pending_text(name, pending), cols).len() + extra
}

/// How many rows `line` itself takes at `cols`.
pub fn rows_of(line: &ChatLine, cols: Columns) -> usize {
    if line.kind == LineKind::Divider {
        return 1;
    }
    text_rows(&shown_text(line), cols).len()
}

/// How many rows `line` takes in `room`'s pane of `width` cells.
pub fn line_rows(ctx: &RowCtx, line: &ChatLine, room: &RoomState, width: u16) -> usize {
    rows_of(line, columns(ctx, room, width))
}

/// The day that starts above `lines[index]`, when it is another day than
/// the one of the last dated line before it (lines without a time, local
/// notes, neither start nor end a day).
pub fn day_break(ctx: &RowCtx, lines: &VecDeque<ChatLine>, index: usize) -> Option<Date> {
    let line = lines.get(index)?;
    if line.ts == 0 {
        return None;
    }
    let day = clock::local_date(line.ts, ctx.utc_offset);
    let previous = lines
        .range(..index)
        .rev()
        .find(|l| l.ts != 0)
        .map(|l| clock::local_date(l.ts, ctx.utc_offset))?;
    (previous != day).then_some(day)
}

/// How many rows the whole pane's content takes at `width`.
pub fn total_rows(ctx: &RowCtx, room: &RoomState, width: u16) -> usize {
    let cols = columns(ctx, room, width);
    let shown = shown(room);
    let name = my_name(ctx, room);
    let lines: usize = (0..shown.lines.len())
        .map(|i| {
            rows_of(&shown.lines[i], cols) + usize::from(day_break(ctx, shown.lines, i).is_some())
        })
        .sum();
    lines
        + usize::from(shown.marker.is_some())
        + usize::from(shown.search)
        + shown
            .pending
            .iter()
            .map(|p| pending_rows(name, p, cols))
            .sum::<usize>()
}
