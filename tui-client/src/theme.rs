//! The colours the view uses, from the config file's `[colors]` table.
//!
//! `theme = "default"` is the built-in look; `theme = "mono"` uses no
//! colour at all (bold, reverse and dim only), for terminals or eyes that
//! want none. Each entry of `[colors]` then overrides one slot: a colour
//! name (`blue`, `lightred`, `darkgray`, ...), `#rrggbb`, or an index
//! `0`-`255`.

use ratatui::style::Color;

/// The colour slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Theme {
    /// The status bar's background (and the active room's).
    pub status_bg: Color,
    /// The status bar's text.
    pub status_fg: Color,
    /// A line that highlights you: the nick's background.
    pub highlight_bg: Color,
    /// A line that highlights you: the nick's text.
    pub highlight_fg: Color,
    /// Times, separators, joins and leaves.
    pub dim: Color,
    /// Pane borders.
    pub border: Color,
    /// The read marker and day-change lines.
    pub marker: Color,
    /// Colour each nick by a hash of it (off: the terminal's colour).
    pub nick_colors: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Self {
            status_bg: Color::Blue,
            status_fg: Color::White,
            highlight_bg: Color::Yellow,
            highlight_fg: Color::Black,
            dim: Color::DarkGray,
            border: Color::DarkGray,
            marker: Color::LightRed,
            nick_colors: true,
        }
    }
}

impl Theme {
    /// No colour: the terminal's own foreground and background.
    pub fn mono() -> Self {
        Self {
            status_bg: Color::Reset,
            status_fg: Color::Reset,
            highlight_bg: Color::Reset,
            highlight_fg: Color::Reset,
            dim: Color::Reset,
            border: Color::Reset,
            marker: Color::Reset,
            nick_colors: false,
        }
    }

    /// Whether this is the colourless theme (the view uses reverse video
    /// where colours would mark something).
    pub fn is_mono(&self) -> bool {
        self.status_bg == Color::Reset && self.highlight_bg == Color::Reset
    }

    /// The slot named `name`, for the config file.
    pub fn slot_mut(&mut self, name: &str) -> Option<&mut Color> {
        Some(match name {
            "status_bg" => &mut self.status_bg,
            "status_fg" => &mut self.status_fg,
            "highlight_bg" => &mut self.highlight_bg,
            "highlight_fg" => &mut self.highlight_fg,
            "dim" => &mut self.dim,
            "border" => &mut self.border,
            "marker" => &mut self.marker,
            _ => return None,
        })
    }
}

/// The colour slot names `[colors]` accepts (besides `nick_colors`).
pub const SLOTS: &str = "status_bg, status_fg, highlight_bg, highlight_fg, dim, border, marker";

/// Parses a colour as the config file writes it.
///
/// # Errors
///
/// A sentence naming what is accepted.
pub fn parse_color(text: &str) -> Result<Color, String> {
    text.trim().parse::<Color>().map_err(|_| {
        format!(
            "{text:?} is not a colour: use a name (blue, lightred, darkgray, ...), #rrggbb or 0-255"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_by_name_hex_and_index() {
        assert_eq!(parse_color("lightred"), Ok(Color::LightRed));
        assert_eq!(parse_color("#ff8000"), Ok(Color::Rgb(255, 128, 0)));
        assert_eq!(parse_color("208"), Ok(Color::Indexed(208)));
        assert!(parse_color("blurple").unwrap_err().contains("#rrggbb"));
        let mut theme = Theme::default();
        *theme.slot_mut("marker").unwrap() = Color::Green;
        assert_eq!(theme.marker, Color::Green);
        assert!(theme.slot_mut("nope").is_none());
        assert!(Theme::mono().is_mono() && !Theme::default().is_mono());
    }
}
