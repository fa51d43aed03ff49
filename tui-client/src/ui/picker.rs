//! The room picker: the server's active rooms with member counts, and a
//! line to type a new room's name.

use chat_protocol::ROOM_NAME_RULE;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};

use crate::app::{App, Picker, PickerRooms};
use crate::geometry;
use crate::sanitize::sanitize;
use crate::wrap;

/// Draws the picker; returns the cursor position.
pub fn render(app: &App, picker: &Picker, area: Rect, buf: &mut Buffer) -> Option<Position> {
    let width = usize::from(area.width);
    let line = |buf: &mut Buffer, row: u16, text: &str, style: Style| {
        if row < area.height {
            buf.set_stringn(area.x, area.y + row, text, width, style);
        }
    };
    line(
        buf,
        0,
        &format!(" chat-tui · {} · pick a room", app.server),
        Style::new().add_modifier(Modifier::BOLD),
    );
    let prompt = " Room: ";
    line(buf, 2, prompt, Style::new().fg(Color::Cyan));
    let typed = sanitize(picker.input.text());
    let avail = width.saturating_sub(prompt.len() + 1);
    let shown = wrap::truncate_start(&typed, avail);
    line(buf, 2, &format!("{prompt}{shown}"), Style::new());
    let (hint, style) = match &picker.error {
        Some(err) => (
            format!(" {}", sanitize(err)),
            Style::new().fg(Color::LightRed),
        ),
        None => (
            format!(
                " ↑/↓/click: choose · or type a new name · Enter: join · F5: refresh · Esc: {}",
                if app.rooms.is_empty() { "quit" } else { "back" }
            ),
            Style::new().fg(Color::DarkGray),
        ),
    };
    // Rows 3 and 4: the hint, or why the last choice was refused (which
    // quotes the room-name rule, so it may need both rows).
    for (row, text) in (3..5).zip(wrap::wrap(&hint, width.saturating_sub(1))) {
        line(buf, row, &text, style);
    }
    let list = geometry::picker_list(area);
    match &picker.rooms {
        PickerRooms::Loading => line(
            buf,
            5,
            "   loading the room list…",
            Style::new().fg(Color::DarkGray),
        ),
        PickerRooms::Failed(err) => {
            line(
                buf,
                5,
                &format!("   no room list: {}", sanitize(err)),
                Style::new().fg(Color::LightRed),
            );
            line(
                buf,
                6,
                &format!("   you can still type a name ({ROOM_NAME_RULE})"),
                Style::new().fg(Color::DarkGray),
            );
        }
        PickerRooms::Loaded(rooms) if rooms.is_empty() => line(
            buf,
            5,
            "   no active rooms yet: type a name to start one",
            Style::new().fg(Color::DarkGray),
        ),
        PickerRooms::Loaded(rooms) => {
            let name_w = rooms
                .iter()
                .map(|r| r.name.as_str().len())
                .max()
                .unwrap_or(0)
                .clamp(8, 40);
            // Keep the selection in view.
            let first = geometry::picker_first_visible(picker.selected, list);
            for ((i, room), y) in rooms
                .iter()
                .enumerate()
                .skip(first)
                .zip(list.top()..list.bottom())
            {
                let s = if room.members == 1 { "" } else { "s" };
                let selected = i == picker.selected;
                let text = format!(
                    " {} {:<name_w$}  {} member{s}",
                    if selected { ">" } else { " " },
                    room.name.as_str(),
                    room.members
                );
                let style = if selected {
                    Style::new()
                        .bg(Color::Blue)
                        .fg(Color::White)
                        .add_modifier(Modifier::BOLD)
                } else {
                    Style::new()
                };
                buf.set_stringn(list.x, y, text, width, style);
            }
        }
    }
    if area.height > 2 {
        let col = prompt.len() + wrap::width(shown);
        let x = area.x + u16::try_from(col.min(width.saturating_sub(1))).unwrap_or(0);
        Some(Position::new(x, area.y + 2))
    } else {
        None
    }
}
