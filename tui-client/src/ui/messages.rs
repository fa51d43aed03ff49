//! The message pane: `time  nick │ text`, wrapped lines hanging under the
//! text column (as WeeChat aligns them), pending messages at the bottom,
//! and a marker while scrolled up.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::app::{App, ChatLine, LineKind, Pending, PendingState, RoomState};
use crate::geometry::rows::{Columns, SEPARATOR, columns, pending_text, shown_text, text_rows};
use crate::sanitize::sanitize;
use crate::ui::nick_color;
use crate::wrap;

/// `HH:MM:SS` (or `HH:MM`) of a unix-ms time at a UTC offset.
pub fn clock(ts_ms: u64, utc_offset: i32, seconds: bool) -> String {
    let secs = i64::try_from(ts_ms / 1000).unwrap_or(0) + i64::from(utc_offset);
    let day = secs.rem_euclid(86_400);
    let (h, m, s) = (day / 3600, day / 60 % 60, day % 60);
    if seconds {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}")
    }
}

const DIM: Style = Style::new().fg(Color::DarkGray);

fn pad_left(text: &str, width: usize) -> String {
    let shown = if wrap::width(text) > width {
        // Too long for the column: cut and mark, as WeeChat does with '+'.
        format!("{}+", wrap::truncate(text, width.saturating_sub(1)))
    } else {
        text.to_owned()
    };
    let pad = width.saturating_sub(wrap::width(&shown));
    format!("{}{shown}", " ".repeat(pad))
}

struct RowParts {
    time: String,
    nick: String,
    nick_style: Style,
    text_style: Style,
    texts: Vec<String>,
    cols: Columns,
    sep_style: Style,
}

impl RowParts {
    fn into_lines(self) -> Vec<Line<'static>> {
        let blank_time = " ".repeat(self.cols.time);
        let blank_nick = " ".repeat(self.cols.nick);
        self.texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let (time, nick) = if i == 0 {
                    (self.time.clone(), self.nick.clone())
                } else {
                    (blank_time.clone(), blank_nick.clone())
                };
                Line::from(vec![
                    Span::styled(time, DIM),
                    Span::styled(nick, if i == 0 { self.nick_style } else { DIM }),
                    Span::styled(SEPARATOR, self.sep_style),
                    Span::styled(text, self.text_style),
                ])
            })
            .collect()
    }
}

fn time_cell(ts: u64, app: &App, cols: Columns) -> String {
    match cols.time {
        0 => String::new(),
        _ if ts == 0 => " ".repeat(cols.time),
        9 => format!("{} ", clock(ts, app.utc_offset, true)),
        _ => format!("{} ", clock(ts, app.utc_offset, false)),
    }
}

fn line_to_rows(app: &App, line: &ChatLine, cols: Columns, width: usize) -> Vec<Line<'static>> {
    let (nick, nick_style, text_style) = match &line.kind {
        LineKind::Chat {
            user,
            emote,
            own,
            mention,
        } => {
            let shown = if user.is_empty() && *own {
                app.name.as_ref().map_or("you", |n| n.as_str()).to_owned()
            } else {
                sanitize(user).into_owned()
            };
            let color = nick_color(&shown);
            let mut nick_style = Style::new().fg(color);
            if *own {
                nick_style = nick_style.add_modifier(Modifier::BOLD);
            }
            if *mention {
                nick_style = Style::new()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD);
            }
            if *emote {
                (
                    " *".to_owned(),
                    Style::new().fg(color),
                    Style::new().fg(color).add_modifier(Modifier::ITALIC),
                )
            } else {
                (shown, nick_style, Style::new())
            }
        }
        LineKind::Join => ("-->".to_owned(), Style::new().fg(Color::Green), DIM),
        LineKind::Leave => ("<--".to_owned(), Style::new().fg(Color::Red), DIM),
        LineKind::Nick | LineKind::Info => ("--".to_owned(), DIM, DIM),
        LineKind::Error => (
            "!!".to_owned(),
            Style::new().fg(Color::LightRed),
            Style::new().fg(Color::LightRed),
        ),
        LineKind::Divider => {
            let label = format!(" {} ", sanitize(&line.text));
            let side = width.saturating_sub(wrap::width(&label)) / 2;
            let rest = width.saturating_sub(side + wrap::width(&label));
            return vec![Line::from(Span::styled(
                format!("{}{label}{}", "─".repeat(side), "─".repeat(rest)),
                DIM,
            ))];
        }
    };
    RowParts {
        time: time_cell(line.ts, app, cols),
        nick: pad_left(&nick, cols.nick),
        nick_style,
        text_style,
        texts: text_rows(&shown_text(line), cols),
        cols,
        sep_style: DIM,
    }
    .into_lines()
}

fn pending_to_rows(
    app: &App,
    room: &RoomState,
    pending: &Pending,
    cols: Columns,
) -> Vec<Line<'static>> {
    let (label, style) = match &pending.state {
        PendingState::Queued => ("queued", DIM.add_modifier(Modifier::ITALIC)),
        PendingState::Sent => ("sending", DIM.add_modifier(Modifier::ITALIC)),
        PendingState::Failed(_) => ("failed", Style::new().fg(Color::LightRed)),
    };
    let me = room
        .me
        .clone()
        .or_else(|| app.name.as_ref().map(|n| n.as_str().to_owned()))
        .unwrap_or_else(|| "you".to_owned());
    let time = match cols.time {
        0 => String::new(),
        n => format!("{label:>w$} ", w = n - 1),
    };
    let mut texts = text_rows(&pending_text(room, pending), cols);
    if cols.time == 0 {
        if let Some(first) = texts.first_mut() {
            // No time column to hold the state: mark the text instead.
            wrap::truncate(&format!("… {first}"), cols.text).clone_into(first);
        }
    }
    let mut lines = RowParts {
        time,
        nick: pad_left(&sanitize(&me), cols.nick),
        nick_style: style,
        text_style: style,
        texts,
        cols,
        sep_style: DIM,
    }
    .into_lines();
    if let PendingState::Failed(reason) = &pending.state {
        let note = format!("not sent: {}", sanitize(reason));
        lines.push(Line::from(vec![
            Span::raw(" ".repeat(cols.time + cols.nick)),
            Span::styled(SEPARATOR, DIM),
            Span::styled(
                wrap::truncate(&note, cols.text).to_owned(),
                Style::new().fg(Color::LightRed),
            ),
        ]));
    }
    lines
}

/// Draws `room` into `area`.
pub fn render(app: &App, room: &RoomState, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let cols = columns(room, area.width);
    let width = usize::from(area.width);
    let height = usize::from(area.height);
    let need = room.scroll.saturating_add(height);
    // Rows from the bottom up, only as many as the view needs.
    let mut rows: Vec<Line<'static>> = Vec::new();
    for pending in room.pending.iter().rev() {
        rows.extend(pending_to_rows(app, room, pending, cols).into_iter().rev());
        if rows.len() >= need {
            break;
        }
    }
    if rows.len() < need {
        for line in room.lines.iter().rev() {
            rows.extend(line_to_rows(app, line, cols, width).into_iter().rev());
            if rows.len() >= need {
                break;
            }
        }
    }
    let scroll = room.scroll.min(rows.len().saturating_sub(height));
    let end = (scroll + height).min(rows.len());
    let visible: Vec<&Line> = rows[scroll..end].iter().rev().collect();
    for (y, line) in (area.y..).zip(visible) {
        buf.set_line(area.x, y, line, area.width);
    }
    if room.scroll > 0 {
        let text = if room.new_below > 0 {
            let s = if room.new_below == 1 { "" } else { "s" };
            format!(" ▼ {} new message{s} below · End to jump ", room.new_below)
        } else {
            " ▼ more below · End to jump ".to_owned()
        };
        let text = wrap::truncate(&text, width).to_owned();
        let y = area.y + area.height - 1;
        let style = Style::new().fg(Color::Black).bg(Color::Yellow);
        buf.set_style(Rect::new(area.x, y, area.width, 1), style);
        buf.set_string(area.x, y, text, style);
    }
}
