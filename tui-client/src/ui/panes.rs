//! The small panes: the title line, rooms, members, the status bar and the
//! input line.

use chat_protocol::Mode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::app::{App, ConnState, RoomState};
use crate::sanitize::sanitize;
use crate::theme::Theme;
use crate::ui::nick_style;
use crate::wrap;

fn border(theme: &Theme) -> Style {
    Style::new().fg(theme.border)
}

fn vertical_border(x: u16, area: Rect, buf: &mut Buffer, theme: &Theme) {
    for y in area.top()..area.bottom() {
        buf.set_string(x, y, "│", border(theme));
    }
}

/// The title line: the room and its topic (WeeChat's title bar).
pub fn title(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let theme = &app.theme;
    let Some(room) = app.active_room() else {
        return;
    };
    let mut spans = vec![Span::styled(
        format!(" {} ", room.name),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let dim = Style::new().fg(theme.dim);
    match (&room.topic, room.mode) {
        (_, Some(Mode::Plain)) => spans.push(Span::styled("(plain mode: no topic)", dim)),
        (Some(topic), _) if !topic.is_empty() => {
            spans.push(Span::styled("· ", dim));
            spans.push(Span::raw(sanitize(topic).into_owned()));
        }
        (Some(_), _) => spans.push(Span::styled("· no topic (/topic TEXT sets one)", dim)),
        (None, _) => {}
    }
    // One cell short of the edge: the topic is anyone's text.
    let width = area.width.saturating_sub(1);
    buf.set_line(area.x, area.y, &Line::from(spans), width);
}

/// Joined rooms: number, name, unread count, `!` when mentioned.
pub fn rooms(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let theme = &app.theme;
    let inner = usize::from(area.width - 1);
    vertical_border(area.right() - 1, area, buf, theme);
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
            name_style = if theme.is_mono() {
                name_style.add_modifier(Modifier::REVERSED | Modifier::BOLD)
            } else {
                name_style.bg(theme.status_bg).add_modifier(Modifier::BOLD)
            };
            if name_style.fg.is_none() && !theme.is_mono() {
                name_style = name_style.fg(theme.status_fg);
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
            Span::styled(number, border(theme)),
            Span::styled(format!("{name}{}", " ".repeat(pad)), name_style),
            Span::styled(badge, badge_style),
        ]);
        buf.set_line(area.x, y, &line, area.width - 1);
    }
}

/// Who is in the active room.
pub fn members(app: &App, room: &RoomState, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let theme = &app.theme;
    vertical_border(area.x, area, buf, theme);
    let width = area.width - 1;
    let names = room.member_names();
    let rows = usize::from(area.height);
    let overflow = names.len() > rows;
    for (i, (name, y)) in names.iter().zip(area.top()..area.bottom()).enumerate() {
        if overflow && i == rows - 1 {
            let more = format!("+{} more", names.len() - i);
            buf.set_stringn(area.x + 1, y, more, usize::from(width), border(theme));
            break;
        }
        let shown = sanitize(name);
        let mut style = nick_style(theme, &shown);
        if room.me.as_deref() == Some(*name) {
            style = style.add_modifier(Modifier::BOLD);
        }
        buf.set_stringn(area.x + 1, y, shown, usize::from(width), style);
    }
}

/// The status bar: room, connection, members, activity elsewhere, the
/// server. When it does not fit, the connection's reason is shortened
/// first (the member count and the server stay), then activity is
/// counted instead of listed, then the server goes.
pub fn status(app: &App, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let theme = &app.theme;
    let bar = if theme.is_mono() {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().bg(theme.status_bg).fg(theme.status_fg)
    };
    buf.set_style(area, bar);
    let width = usize::from(area.width);
    let server = Span::raw(format!("[{}]", app.server));
    let Some(room) = app.active_room() else {
        buf.set_line(area.x, area.y, &Line::from(vec![server]), area.width);
        return;
    };
    let head = Span::styled(
        format!("{}:{} ", app.active + 1, room.name),
        bar.add_modifier(Modifier::BOLD),
    );
    let (state, state_style) = conn_label(room, app.now_ms, theme);
    let members_span = (room.mode != Some(Mode::Plain) && room.connected_once).then(|| {
        let n = room.member_names().len();
        let s = if n == 1 { "" } else { "s" };
        Span::raw(format!("[{n} member{s}] "))
    });
    let others: Vec<(usize, &RoomState)> = app
        .rooms
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != app.active && (r.unread > 0 || r.mentioned))
        .collect();
    let act_style = bar.fg(Color::LightYellow);
    let listed = (!others.is_empty()).then(|| {
        let list: Vec<String> = others
            .iter()
            .map(|(i, r)| {
                let mark = if r.mentioned { "!" } else { "" };
                format!("{}:{}({}{mark})", i + 1, r.name, r.unread)
            })
            .collect();
        Span::styled(format!("[Act: {}] ", list.join(", ")), act_style)
    });
    let counted = (!others.is_empty()).then(|| {
        let mark = if others.iter().any(|(_, r)| r.mentioned) {
            "!"
        } else {
            ""
        };
        Span::styled(format!("[Act: {}{mark}] ", others.len()), act_style)
    });
    let more = (room.scroll > 0).then(|| {
        Span::styled(
            format!("[-MORE({})-] ", room.new_below),
            bar.fg(Color::LightYellow).add_modifier(Modifier::BOLD),
        )
    });
    // An answer awaited from the server (older messages, a search).
    let loading = room.asked.is_some().then(|| {
        Span::styled(
            "[loading…] ",
            bar.fg(Color::LightYellow).add_modifier(Modifier::BOLD),
        )
    });
    let w = |span: &Option<Span>| span.as_ref().map_or(0, |s| wrap::width(&s.content));
    // The state's brackets and its space take 3 cells; keep at least a
    // word of it.
    let fixed = |act: &Option<Span>, members: bool, server: bool| {
        wrap::width(&head.content)
            + 3
            + if members { w(&members_span) } else { 0 }
            + w(act)
            + w(&more)
            + w(&loading)
            + if server {
                wrap::width(&server_text(app))
            } else {
                0
            }
    };
    let full = wrap::width(&state);
    let keep = full.min(12);
    // Most wanted first: everything; activity counted; no server; no
    // member count; no activity (a very narrow bar keeps the room and its
    // state).
    let (activity, with_members, with_server) = if fixed(&listed, true, true) + full <= width {
        (listed, true, true)
    } else if fixed(&counted, true, true) + keep <= width {
        (counted, true, true)
    } else if fixed(&counted, true, false) + keep <= width {
        (counted, true, false)
    } else if fixed(&counted, false, false) + keep <= width {
        (counted, false, false)
    } else {
        (None, false, false)
    };
    let room_for_state = width
        .saturating_sub(fixed(&activity, with_members, with_server))
        .max(1);
    let state = if full > room_for_state {
        format!(
            "{}…",
            wrap::truncate(&state, room_for_state.saturating_sub(1))
        )
    } else {
        state
    };
    let mut spans = vec![head, Span::styled(format!("[{state}] "), state_style)];
    if with_members {
        spans.extend(members_span);
    }
    spans.extend(activity);
    spans.extend(more);
    spans.extend(loading);
    if with_server {
        spans.push(server);
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

fn server_text(app: &App) -> String {
    format!("[{}]", app.server)
}

fn conn_label(room: &RoomState, now_ms: u64, theme: &Theme) -> (String, Style) {
    let bar = if theme.is_mono() {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().bg(theme.status_bg)
    };
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
    let (prompt, prompt_style) = if app.searching {
        (
            "(search, Esc cancels) ".to_owned(),
            Style::new()
                .fg(Color::LightYellow)
                .add_modifier(Modifier::BOLD),
        )
    } else if me.is_empty() {
        ("> ".to_owned(), Style::new().fg(Color::Cyan))
    } else {
        (
            format!("[{}] ", sanitize(&me)),
            Style::new().fg(Color::Cyan),
        )
    };
    let prompt = wrap::truncate(&prompt, usize::from(area.width) / 2).to_owned();
    let prompt_w = wrap::width(&prompt);
    buf.set_string(area.x, area.y, &prompt, prompt_style);
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
