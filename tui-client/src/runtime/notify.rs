//! Telling the user something highlighted them while they may be looking
//! elsewhere: the terminal bell (which terminal multiplexers turn into a
//! window flag, `#{window_bell_flag}` in tmux, and desktops into an
//! urgency hint), and where the terminal is known to support one, a
//! desktop notification by escape sequence (OSC 777 or OSC 9).
//!
//! Everything written here is built from sanitised text with the
//! sequence's own delimiters removed, so a message cannot end the sequence
//! early and smuggle its own.

use std::fmt::Write as _;

use crate::config::NotifyMode;
use crate::sanitize::sanitize;
use crate::wrap;

/// The notification sequence in use, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desktop {
    /// `ESC ] 777 ; notify ; TITLE ; BODY ESC \`
    Osc777,
    /// `ESC ] 9 ; BODY ESC \`
    Osc9,
    /// None.
    Off,
}

/// Which sequence `mode` means here. `auto` goes by the terminal's name:
/// OSC 9 for iTerm2, WezTerm, Windows Terminal and kitty; OSC 777 for
/// foot, Ghostty, urxvt and VTE-based terminals; nothing otherwise (an
/// unknown OSC is ignored by most terminals, but not all).
pub fn desktop(mode: NotifyMode, env: &dyn Fn(&str) -> Option<String>) -> Desktop {
    match mode {
        NotifyMode::Osc777 => Desktop::Osc777,
        NotifyMode::Osc9 => Desktop::Osc9,
        NotifyMode::Off => Desktop::Off,
        NotifyMode::Auto => {
            let program = env("TERM_PROGRAM").unwrap_or_default().to_lowercase();
            let term = env("TERM").unwrap_or_default().to_lowercase();
            if env("WT_SESSION").is_some()
                || env("KITTY_WINDOW_ID").is_some()
                || matches!(program.as_str(), "iterm.app" | "wezterm")
            {
                Desktop::Osc9
            } else if program == "ghostty"
                || term.starts_with("foot")
                || term.starts_with("rxvt")
                || env("VTE_VERSION").is_some()
            {
                Desktop::Osc777
            } else {
                Desktop::Off
            }
        }
    }
}

/// What to write for a highlight in `room` by `from` saying `text`.
pub fn sequence(bell: bool, desktop: Desktop, room: &str, from: &str, text: &str) -> String {
    let clean = |s: &str, max: usize| {
        let safe: String = sanitize(s)
            .chars()
            .map(|c| if c == ';' { ',' } else { c })
            .collect();
        wrap::truncate(&safe, max).to_owned()
    };
    let title = clean(&format!("{from} in {room}"), 60);
    let body = clean(text, 200);
    let mut out = String::new();
    if bell {
        out.push('\x07');
    }
    match desktop {
        // Writing to a String cannot fail.
        Desktop::Osc777 => {
            let _ = write!(out, "\x1b]777;notify;{title};{body}\x1b\\");
        }
        Desktop::Osc9 => {
            let _ = write!(out, "\x1b]9;{title}: {body}\x1b\\");
        }
        Desktop::Off => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn auto_goes_by_the_terminal() {
        assert_eq!(
            desktop(NotifyMode::Auto, &env(&[("TERM_PROGRAM", "iTerm.app")])),
            Desktop::Osc9
        );
        assert_eq!(
            desktop(NotifyMode::Auto, &env(&[("TERM", "foot")])),
            Desktop::Osc777
        );
        assert_eq!(
            desktop(NotifyMode::Auto, &env(&[("VTE_VERSION", "7200")])),
            Desktop::Osc777
        );
        assert_eq!(
            desktop(NotifyMode::Auto, &env(&[("TERM", "tmux-256color")])),
            Desktop::Off
        );
        assert_eq!(desktop(NotifyMode::Osc9, &env(&[])), Desktop::Osc9);
        assert_eq!(
            desktop(NotifyMode::Off, &env(&[("TERM", "foot")])),
            Desktop::Off
        );
    }

    #[test]
    fn sequences_carry_safe_text_only() {
        assert_eq!(
            sequence(true, Desktop::Off, "lobby", "bob", "alice: hi"),
            "\x07"
        );
        assert_eq!(sequence(false, Desktop::Off, "lobby", "bob", "x"), "");
        let seq = sequence(
            false,
            Desktop::Osc777,
            "lobby",
            "bob",
            "hi;there\x1b\\\x1b]0;owned\x07",
        );
        assert_eq!(
            seq,
            "\x1b]777;notify;bob in lobby;hi,there␛\\␛]0,owned␇\x1b\\"
        );
        // Only the sequence's own ESC and terminator, nothing from the text.
        assert_eq!(seq.matches('\x1b').count(), 2);
        assert!(!seq.contains('\x07'));
        let seq = sequence(true, Desktop::Osc9, "lobby", "bob", "deploy");
        assert_eq!(seq, "\x07\x1b]9;bob in lobby: deploy\x1b\\");
    }
}
