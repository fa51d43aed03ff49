//! The small panes: rooms, members, the status bar and the input line.

use chat_protocol::Mode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::app::{App, ConnState, RoomState};
use crate::sanitize::sanitize;
use crate::ui::nick_color;
use crate::wrap;

const BORDER: Style = Style::new().fg(Color::DarkGray);

fn vertical_border(x: u16, area: Rect, buf: &mut Buffer) {
    for y in area.top()..area.bottom() {
        buf.set_string(x, y, "│", BORDER);
    }
}

/// Joined rooms: number, name, unread count, `!` when mentioned.
pub fn rooms(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let inner = usize::from(area.width - 1);
    vertical_border(area.right() - 1, area, buf);
    for ((index, room), y) in app.rooms.iter().enumerate().zip(area.top()..area.bottom()) {
        let number = if index < 9 {
            format!("{:>2}.", index + 1)
        } else {
            "   ".to_owned()
        };
        let badge = match (room.unread, room.mentioned) {
            (0, false) => String::new(),
            (n, false) => format!("({n})"),
            (n, true) => format!("({n}!)"),
        };
        let name_w = inner.saturating_sub(3 + wrap::width(&badge) + 1);
        let name = wrap::truncate(room.name.as_str(), name_w);
        let pad = inner.saturating_sub(3 + wrap::width(name) + wrap::width(&badge));
        let active = index == app.active;
        let mut name_style = match room.conn {
            ConnState::Online { .. } => Style::new(),
            ConnState::Connecting { .. } => Style::new().fg(Color::Yellow),
            ConnState::Offline { .. } | ConnState::Stopped { .. } => Style::new().fg(Color::Red),
        };
        if active {
            name_style = name_style.bg(Color::Blue).add_modifier(Modifier::BOLD);
            if name_style.fg.is_none() {
                name_style = name_style.fg(Color::White);
            }
        }
        let badge_style = if room.mentioned {
            Style::new()
                .fg(Color::LightMagenta)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Yellow)
        };
        let line = Line::from(vec![
            Span::styled(number, BORDER),
            Span::styled(format!("{name}{}", " ".repeat(pad)), name_style),
            Span::styled(badge, badge_style),
        ]);
        buf.set_line(area.x, y, &line, area.width - 1);
    }
}

/// Who is in the active room.
pub fn members(room: &RoomState, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    vertical_border(area.x, area, buf);
    let width = area.width - 1;
    let names = room.member_names();
    let rows = usize::from(area.height);
    let overflow = names.len() > rows;
    for (i, (name, y)) in names.iter().zip(area.top()..area.bottom()).enumerate() {
        if overflow && i == rows - 1 {
            let more = format!("+{} more", names.len() - i);
            buf.set_stringn(area.x + 1, y, more, usize::from(width), BORDER);
            break;
        }
        let shown = sanitize(name);
        let mut style = Style::new().fg(nick_color(&shown));
        if room.me.as_deref() == Some(*name) {
            style = style.add_modifier(Modifier::BOLD);
        }
        buf.set_stringn(area.x + 1, y, shown, usize::from(width), style);
    }
}

/// The status bar: server, room, connection, members, activity elsewhere.
pub fn status(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    buf.set_style(area, bar);
    // Most important first, so that a narrow bar keeps the room and the
    // connection state; the server comes last.
    let mut spans = Vec::new();
    if let Some(room) = app.active_room() {
        spans.push(Span::styled(
            format!("{}:{} ", app.active + 1, room.name),
            bar.add_modifier(Modifier::BOLD),
        ));
        let (state, style) = conn_label(room, app.now_ms);
        spans.push(Span::styled(format!("[{state}] "), style));
        if room.mode != Some(Mode::Plain) && room.is_online() {
            let n = room.member_names().len();
            let s = if n == 1 { "" } else { "s" };
            spans.push(Span::raw(format!("[{n} member{s}] ")));
        }
        let activity: Vec<String> = app
            .rooms
            .iter()
            .enumerate()
            .filter(|(i, r)| *i != app.active && (r.unread > 0 || r.mentioned))
            .map(|(i, r)| {
                let mark = if r.mentioned { "!" } else { "" };
                format!("{}:{}({}{mark})", i + 1, r.name, r.unread)
            })
            .collect();
        if !activity.is_empty() {
            spans.push(Span::styled(
                format!("[Act: {}] ", activity.join(", ")),
                bar.fg(Color::LightYellow),
            ));
        }
        if room.scroll > 0 {
            spans.push(Span::styled(
                format!("[-MORE({})-] ", room.new_below),
                bar.fg(Color::LightYellow).add_modifier(Modifier::BOLD),
            ));
        }
    }
    spans.push(Span::raw(format!("[{}]", app.server)));
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

fn conn_label(room: &RoomState, now_ms: u64) -> (String, Style) {
    let bar = Style::new().bg(Color::Blue);
    match &room.conn {
        ConnState::Online { mode: Mode::Events } => {
            ("online".to_owned(), bar.fg(Color::LightGreen))
        }
        ConnState::Online { mode: Mode::Plain } => (
            "plain mode: no names or history".to_owned(),
            bar.fg(Color::LightYellow),
        ),
        ConnState::Connecting { attempt } if *attempt <= 1 && !room.connected_once => {
            ("connecting…".to_owned(), bar.fg(Color::LightYellow))
        }
        ConnState::Connecting { attempt } => (
            format!("reconnecting, try {attempt}…"),
            bar.fg(Color::LightYellow),
        ),
        ConnState::Offline {
            reason,
            retry_in,
            retry_at_ms,
            ..
        } => (
            {
                let left_ms = if now_ms == 0 || *retry_at_ms == 0 {
                    u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX)
                } else {
                    retry_at_ms.saturating_sub(now_ms)
                };
                let when = match left_ms.div_ceil(1000) {
                    0 => "retrying now".to_owned(),
                    secs => format!("retry in {secs}s"),
                };
                format!("OFFLINE, {when}: {}", sanitize(reason))
            },
            Style::new()
                .bg(Color::Red)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        ),
        ConnState::Stopped { reason } => (
            format!("STOPPED: {}", sanitize(reason)),
            Style::new()
                .bg(Color::Red)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        ),
    }
}

/// The input line; returns where the cursor goes.
pub fn input(app: &App, area: Rect, buf: &mut Buffer) -> Option<Position> {
    if area.is_empty() {
        return None;
    }
    let me = app
        .active_room()
        .and_then(|r| r.me.clone())
        .or_else(|| app.name.as_ref().map(|n| n.as_str().to_owned()))
        .unwrap_or_default();
    let prompt = if me.is_empty() {
        "> ".to_owned()
    } else {
        format!("[{}] ", sanitize(&me))
    };
    let prompt = wrap::truncate(&prompt, usize::from(area.width) / 2).to_owned();
    let prompt_w = wrap::width(&prompt);
    buf.set_string(area.x, area.y, &prompt, Style::new().fg(Color::Cyan));
    let avail = usize::from(area.width).saturating_sub(prompt_w);
    if avail == 0 {
        return None;
    }
    let before = sanitize(app.input.before_cursor()).into_owned();
    let after_raw = &app.input.text()[app.input.before_cursor().len()..];
    let after = sanitize(after_raw);
    let cursor_col = wrap::width(&before);
    let (shown_before, cursor) = if cursor_col < avail {
        (before.as_str(), cursor_col)
    } else {
        // Scroll horizontally so that the cursor stays in view.
        let tail = wrap::truncate_start(&before, avail - 1);
        (tail, wrap::width(tail))
    };
    let shown_after = wrap::truncate(&after, avail - cursor);
    let x = area.x + u16::try_from(prompt_w).unwrap_or(0);
    let line = Line::from(vec![Span::raw(shown_before), Span::raw(shown_after)]);
    buf.set_line(x, area.y, &line, u16::try_from(avail).unwrap_or(0));
    Some(Position::new(
        x + u16::try_from(cursor).unwrap_or(0),
        area.y,
    ))
}
