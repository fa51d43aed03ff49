//! The message pane: `time  nick │ text`, wrapped lines hanging under the
//! text column (as WeeChat aligns them), a line where the day changes, the
//! read marker, pending messages at the bottom, a search's results with
//! their header, and a marker while scrolled up.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::app::{App, ChatLine, LineKind, Pending, PendingState, RoomState, SearchState};
use crate::clock;
use crate::geometry::rows::{
    Columns, RowCtx, SEPARATOR, columns, day_break, my_name, pending_text, shown, shown_text,
    text_rows,
};
use crate::sanitize::sanitize;
use crate::theme::Theme;
use crate::ui::nick_style;
use crate::wrap;

/// The label of the read marker.
pub const MARKER_LABEL: &str = "new since you left";

fn dim(theme: &Theme) -> Style {
    Style::new().fg(theme.dim)
}

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

/// A full-width rule with a label in its middle (the history divider, a
/// day change, the read marker). It stops one cell short of the pane's
/// right edge: box-drawing characters are "ambiguous width", and a
/// terminal that draws them wide would otherwise wrap the rule onto the
/// next row.
fn rule(label: &str, width: usize, style: Style) -> Line<'static> {
    let width = width.saturating_sub(1);
    let label = format!(
        " {} ",
        wrap::truncate(&sanitize(label), width.saturating_sub(4))
    );
    let side = width.saturating_sub(wrap::width(&label)) / 2;
    let rest = width.saturating_sub(side + wrap::width(&label));
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(rest)),
        style,
    ))
}

struct RowParts {
    time: String,
    nick: String,
    nick_style: Style,
    text_style: Style,
    texts: Vec<String>,
    cols: Columns,
    dim: Style,
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
                    Span::styled(time, self.dim),
                    Span::styled(nick, if i == 0 { self.nick_style } else { self.dim }),
                    Span::styled(SEPARATOR, self.dim),
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
        n if cols.full_time => {
            let time = app.time_format.format(ts, app.utc_offset);
            format!("{time:<w$} ", w = n - 1)
        }
        _ => format!("{} ", clock(ts, app.utc_offset, false)),
    }
}

fn line_to_rows(app: &App, line: &ChatLine, cols: Columns, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let dim = dim(theme);
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
            let base = nick_style(theme, &shown);
            let mut style = base;
            if *own {
                style = style.add_modifier(Modifier::BOLD);
            }
            if *mention {
                style = if theme.is_mono() {
                    Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
                } else {
                    Style::new()
                        .fg(theme.highlight_fg)
                        .bg(theme.highlight_bg)
                        .add_modifier(Modifier::BOLD)
                };
            }
            if *emote {
                (" *".to_owned(), base, base.add_modifier(Modifier::ITALIC))
            } else {
                (shown, style, Style::new())
            }
        }
        LineKind::Join => ("-->".to_owned(), Style::new().fg(Color::Green), dim),
        LineKind::Leave => ("<--".to_owned(), Style::new().fg(Color::Red), dim),
        LineKind::Nick | LineKind::Info => ("--".to_owned(), dim, dim),
        LineKind::Error => (
            "!!".to_owned(),
            Style::new().fg(Color::LightRed),
            Style::new().fg(Color::LightRed),
        ),
        LineKind::Divider => return vec![rule(&line.text, width, dim)],
    };
    RowParts {
        time: time_cell(line.ts, app, cols),
        nick: pad_left(&nick, cols.nick),
        nick_style,
        text_style,
        texts: text_rows(&shown_text(line), cols),
        cols,
        dim,
    }
    .into_lines()
}

fn pending_to_rows(app: &App, name: &str, pending: &Pending, cols: Columns) -> Vec<Line<'static>> {
    let dim = dim(&app.theme);
    let (label, short, style) = match &pending.state {
        PendingState::Queued => ("queued", "wait", dim.add_modifier(Modifier::ITALIC)),
        PendingState::Sent => ("sending", "...", dim.add_modifier(Modifier::ITALIC)),
        PendingState::Failed(_) => ("failed", "fail", Style::new().fg(Color::LightRed)),
    };
    let time = match cols.time {
        0 => String::new(),
        n if n > label.len() => format!("{label:>w$} ", w = n - 1),
        n => format!("{short:>w$} ", w = n - 1),
    };
    let mut texts = text_rows(&pending_text(name, pending), cols);
    if cols.time == 0 {
        if let Some(first) = texts.first_mut() {
            // No time column to hold the state: mark the text instead.
            wrap::truncate(&format!("… {first}"), cols.text).clone_into(first);
        }
    }
    let mut lines = RowParts {
        time,
        nick: pad_left(&sanitize(name), cols.nick),
        nick_style: style,
        text_style: style,
        texts,
        cols,
        dim,
    }
    .into_lines();
    if let PendingState::Failed(reason) = &pending.state {
        let note = format!("not sent: {}", sanitize(reason));
        lines.push(Line::from(vec![
            Span::raw(" ".repeat(cols.time + cols.nick)),
            Span::styled(SEPARATOR, dim),
            Span::styled(
                wrap::truncate(&note, cols.text).to_owned(),
                Style::new().fg(Color::LightRed),
            ),
        ]));
    }
    lines
}

/// The search header: what was searched and what came of it.
fn search_header(room: &RoomState, width: usize, theme: &Theme) -> Line<'static> {
    let Some(search) = &room.search else {
        return Line::raw("");
    };
    let words = sanitize(&search.words).into_owned();
    let (text, style) = match &search.state {
        SearchState::Searching => (
            format!(" Esc returns · searching for {words:?}…"),
            dim(theme),
        ),
        SearchState::Failed(why) => (
            format!(
                " Esc returns · search for {words:?} failed: {}",
                sanitize(why)
            ),
            Style::new().fg(Color::LightRed),
        ),
        SearchState::Done => {
            let n = search.results.len();
            let found = match n {
                0 => "no message has every word".to_owned(),
                1 => "1 message".to_owned(),
                n => format!("{n} messages"),
            };
            let more = if search.more {
                " (only the newest: add a word to narrow it)"
            } else {
                ""
            };
            (
                format!(" Esc returns · search {words:?}: {found}{more}"),
                Style::new().add_modifier(Modifier::BOLD),
            )
        }
    };
    Line::styled(wrap::truncate(&text, width).to_owned(), style)
}

/// Draws `room` into `area`.
pub fn render(app: &App, room: &RoomState, area: Rect, buf: &mut Buffer) {
    if area.is_empty() {
        return;
    }
    let ctx = RowCtx::of(app);
    let cols = columns(&ctx, room, area.width);
    let width = usize::from(area.width);
    let height = usize::from(area.height);
    let need = room.scroll.saturating_add(height);
    let theme = &app.theme;
    let shown = shown(room);
    let name = my_name(&ctx, room);
    // Rows from the bottom up, only as many as the view needs.
    let mut rows: Vec<Line<'static>> = Vec::new();
    for pending in shown.pending.iter().rev() {
        rows.extend(pending_to_rows(app, name, pending, cols).into_iter().rev());
        if rows.len() >= need {
            break;
        }
    }
    if rows.len() < need {
        for index in (0..shown.lines.len()).rev() {
            if shown.marker == Some(index) {
                rows.push(rule(MARKER_LABEL, width, Style::new().fg(theme.marker)));
            }
            let line = &shown.lines[index];
            rows.extend(line_to_rows(app, line, cols, width).into_iter().rev());
            if let Some(day) = day_break(&ctx, shown.lines, index) {
                rows.push(rule(&clock::day_title(day), width, dim(theme)));
            }
            if rows.len() >= need {
                break;
            }
        }
    }
    if shown.search && rows.len() < need {
        rows.push(search_header(room, width, theme));
    }
    let scroll = room.scroll.min(rows.len().saturating_sub(height));
    let end = (scroll + height).min(rows.len());
    let visible: Vec<&Line> = rows[scroll..end].iter().rev().collect();
    for (y, line) in (area.y..).zip(visible) {
        buf.set_line(area.x, y, line, area.width);
    }
    if room.scroll > 0 {
        scrolled_bar(room, area, buf, theme);
    }
}

/// The bar at the bottom while scrolled up. Plain ASCII and only as wide
/// as its text, so that no terminal can push it onto the row below.
fn scrolled_bar(room: &RoomState, area: Rect, buf: &mut Buffer, theme: &Theme) {
    let text = if room.new_below > 0 {
        let s = if room.new_below == 1 { "" } else { "s" };
        format!(" v {} new message{s} below - End to jump ", room.new_below)
    } else {
        " v more below - End to jump ".to_owned()
    };
    let max = usize::from(area.width).saturating_sub(1);
    let text = wrap::truncate(&text, max).to_owned();
    let y = area.y + area.height - 1;
    buf.set_string(
        area.x,
        y,
        " ".repeat(usize::from(area.width)),
        Style::reset(),
    );
    let style = if theme.is_mono() {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().fg(theme.highlight_fg).bg(theme.highlight_bg)
    };
    buf.set_string(area.x, y, text, style);
}
