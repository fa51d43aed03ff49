//! The view: draws an [`App`] into a frame. It only reads the state and
//! never the clock; every piece of remote text goes through
//! [`crate::sanitize`] on its way to a cell.

pub mod messages;
pub mod panes;
pub mod picker;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use crate::app::App;
use crate::sanitize::display_lines;
use crate::{geometry, wrap};

/// Draws the whole screen.
pub fn view(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let cursor = draw(app, area, frame.buffer_mut());
    if let Some(cursor) = cursor {
        frame.set_cursor_position(cursor);
    }
}

/// Draws into a buffer (what [`view`] does; tests call it directly).
pub fn draw(app: &App, area: Rect, buf: &mut Buffer) -> Option<ratatui::layout::Position> {
    if area.is_empty() {
        return None;
    }
    if let Some(picker) = &app.picker {
        return picker::render(app, picker, area, buf);
    }
    let areas = geometry::areas(area, app);
    panes::title(app, areas.title, buf);
    panes::rooms(app, areas.rooms, buf);
    if let Some(room) = app.active_room() {
        messages::render(app, room, areas.messages, buf);
        panes::members(app, room, areas.members, buf);
    }
    panes::status(app, areas.status, buf);
    let cursor = panes::input(app, areas.input, buf);
    if let Some(paste) = &app.paste {
        paste_dialog(paste, areas.messages, buf);
        return None;
    }
    cursor
}

fn paste_dialog(paste: &str, area: Rect, buf: &mut Buffer) {
    let lines = display_lines(paste);
    let chars = paste.chars().count();
    let width = area.width.min(64);
    let height = area.height.min(8);
    if width < 4 || height < 3 {
        return;
    }
    let rect = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    Clear.render(rect, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(Color::Yellow))
        .title(format!(
            " Paste {} line{}, {chars} character{}? ",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            if chars == 1 { "" } else { "s" },
        ));
    let inner = block.inner(rect);
    block.render(rect, buf);
    let preview_rows = usize::from(inner.height.saturating_sub(2));
    let mut text: Vec<ratatui::text::Line> = lines
        .iter()
        .take(preview_rows)
        .map(|l| {
            ratatui::text::Line::styled(
                wrap::truncate(l, usize::from(inner.width)).to_owned(),
                Style::new().fg(Color::DarkGray),
            )
        })
        .collect();
    if lines.len() > preview_rows {
        text.truncate(preview_rows.saturating_sub(1));
        text.push(ratatui::text::Line::styled(
            format!("… and {} more lines", lines.len() - text.len()),
            Style::new().fg(Color::DarkGray),
        ));
    }
    text.push(ratatui::text::Line::raw(""));
    text.push(ratatui::text::Line::styled(
        "Enter: send as one message · e: edit · Esc: cancel",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    Paragraph::new(text).render(inner, buf);
}

/// The style of a nick: its colour, or the terminal's when the theme has
/// nick colours off.
pub fn nick_style(theme: &crate::theme::Theme, name: &str) -> Style {
    if theme.nick_colors {
        Style::new().fg(nick_color(name))
    } else {
        Style::new()
    }
}

/// A stable colour for a name: the same name gets the same colour in every
/// session and on every machine (FNV-1a of its bytes into a palette that
/// reads well on dark and light backgrounds).
pub fn nick_color(name: &str) -> Color {
    const PALETTE: [Color; 10] = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Magenta,
        Color::LightBlue,
        Color::LightGreen,
        Color::LightCyan,
        Color::LightMagenta,
        Color::LightYellow,
        Color::LightRed,
    ];
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    PALETTE[(hash % 10) as usize]
}

#[cfg(test)]
mod tests;
