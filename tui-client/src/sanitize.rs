//! Making other people's text harmless before it reaches the terminal.
//!
//! The server relays text unchanged, so a message can hold anything: escape
//! sequences that recolour the screen, move the cursor, retitle the window
//! (OSC) or clear the screen; C1 controls that some terminals obey as
//! escapes; bidirectional overrides that make a line read differently from
//! what was sent. The view passes every piece of remote text (messages,
//! names, room lists, server reasons) through this module, and nothing else
//! reaches a cell.
//!
//! The rule, one place for all of it:
//!
//! | input | shown as |
//! |---|---|
//! | C0 controls U+0000–U+001F (ESC included) | the visible "control picture", e.g. `␛` (U+241B) |
//! | DEL U+007F | `␡` |
//! | C1 controls U+0080–U+009F | `�` |
//! | tab | four spaces |
//! | line breaks (`\n`, `\r\n`, `\r`, U+2028, U+2029, U+0085) | a new display line ([`display_lines`]); `⏎` where a single line is needed ([`sanitize`]) |
//! | bidi controls U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C | removed |
//! | U+FEFF (BOM), U+FFF9–U+FFFB (annotations) | removed |
//! | a flag (two regional indicators, `🇷🇺`) | its letters, `[RU]` |
//! | an emoji sequence (ZWJ `👨‍👩‍👧‍👦`, skin tone `👍🏽`, keycap `1️⃣`, variation selectors, tag flags) | its parts without the joiners and modifiers: `👨👩👧👦`, `👍`, `1` |
//!
//! Escape sequences are thus shown as text (`␛[31m`), never obeyed.
//!
//! Emoji sequences are taken apart because terminals disagree on their
//! width: ratatui counts a ZWJ family as 2 cells, tmux 3.3 draws it as 8,
//! and every cell after it on that row (and the rows a wrap puts it on)
//! lands in the wrong place. Their parts have one width everywhere.

use std::borrow::Cow;

use unicode_segmentation::UnicodeSegmentation as _;

/// Shown in place of a line break where the text must stay on one line.
pub const NEWLINE_MARK: char = '⏎';

/// Whether `c` is a bidirectional formatting control (embedding, override,
/// isolate, or an implicit mark).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{85}')
}

fn is_removed(c: char) -> bool {
    is_bidi_control(c) || matches!(c, '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c, '\u{1F1E6}'..='\u{1F1FF}')
}

/// The parts of emoji sequences that terminals widen differently: the
/// joiner, variation selectors, skin-tone modifiers, the keycap, tags.
fn is_sequence_part(c: char) -> bool {
    matches!(
        c,
        '\u{200D}'
            | '\u{FE0E}'
            | '\u{FE0F}'
            | '\u{1F3FB}'..='\u{1F3FF}'
            | '\u{20E3}'
            | '\u{E0020}'..='\u{E007F}'
    ) || is_regional_indicator(c)
}

/// Whether `c` passes through unchanged.
fn is_plain(c: char) -> bool {
    !(c.is_control() || is_removed(c) || is_line_break(c) || is_sequence_part(c))
}

/// A grapheme cluster with emoji sequence parts, as every terminal draws
/// it the same: a flag as its letters, anything else without its joiners,
/// selectors, modifiers and tags.
fn push_stable(out: &mut String, cluster: &str) {
    let flags: Vec<char> = cluster
        .chars()
        .filter(|c| is_regional_indicator(*c))
        .collect();
    if !flags.is_empty() {
        out.push('[');
        for c in flags {
            let letter = u8::try_from(u32::from(c) - 0x1F1E6).map_or('?', |n| char::from(b'A' + n));
            out.push(letter);
        }
        out.push(']');
        return;
    }
    for c in cluster.chars().filter(|c| !is_sequence_part(*c)) {
        push_safe(out, c);
    }
}

fn push_safe(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("    "),
        c if is_line_break(c) => out.push(NEWLINE_MARK),
        c if is_removed(c) => {}
        // The Control Pictures block maps U+0000..U+001F one to one.
        c if u32::from(c) < 0x20 => {
            out.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{FFFD}'));
        }
        '\u{7F}' => out.push('\u{2421}'),
        c if c.is_control() => out.push('\u{FFFD}'),
        c => out.push(c),
    }
}

/// `text` made safe to show on one line: controls become visible symbols,
/// line breaks become [`NEWLINE_MARK`], bidi controls are dropped.
/// Borrows when there is nothing to change.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for cluster in text.graphemes(true) {
        if cluster.chars().any(is_sequence_part) {
            push_stable(&mut out, cluster);
            continue;
        }
        let mut chars = cluster.chars().peekable();
        while let Some(c) = chars.next() {
            // "\r\n" is one line break, not two.
            if c == '\r' && chars.peek() == Some(&'\n') {
                continue;
            }
            push_safe(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// `text` split at its line breaks, each line made safe by [`sanitize`]:
/// how a multi-line message is shown (one display line per line, each
/// wrapped on its own). Always at least one line.
pub fn display_lines(text: &str) -> Vec<Cow<'_, str>> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(is_line_break) {
        lines.push(sanitize(&rest[..pos]));
        let brk = rest[pos..].chars().next().unwrap_or('\n');
        let mut skip = brk.len_utf8();
        if brk == '\r' && rest[pos + skip..].starts_with('\n') {
            skip += 1;
        }
        rest = &rest[pos + skip..];
    }
    lines.push(sanitize(rest));
    lines
}

/// Whether `text` is already harmless (what the tests assert of every
/// rendered cell).
pub fn is_harmless(text: &str) -> bool {
    text.chars().all(|c| is_plain(c) || c == ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(sanitize("héllo 日本語 🎉"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_become_visible() {
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "␛[31mred␛[0m");
        assert_eq!(sanitize("a\x07b\x7fc\u{9b}d"), "a␇b␡c\u{FFFD}d");
        assert_eq!(sanitize("\x1b]0;pwned\x07"), "␛]0;pwned␇");
        assert_eq!(sanitize("a\tb"), "a    b");
        assert_eq!(sanitize("a\r\nb\nc"), "a⏎b⏎c");
    }

    #[test]
    fn bidi_controls_are_removed() {
        assert_eq!(
            sanitize("abc\u{202E}fed\u{202C} \u{2066}x\u{2069}\u{200F}\u{061C}\u{FEFF}"),
            "abcfed x"
        );
    }

    #[test]
    fn lines_split_on_every_break() {
        assert_eq!(
            display_lines("one\ntwo\r\nthree\rfour\u{2028}five"),
            vec!["one", "two", "three", "four", "five"]
        );
        assert_eq!(display_lines(""), vec![""]);
        assert_eq!(display_lines("x\n"), vec!["x", ""]);
    }

    /// Issue #13 bug 5: clusters whose width terminals disagree on.
    #[test]
    fn emoji_sequences_are_taken_apart() {
        assert_eq!(
            sanitize("family 👨\u{200d}👩\u{200d}👧\u{200d}👦!"),
            "family 👨👩👧👦!"
        );
        assert_eq!(sanitize("🇷🇺 and 🇫🇷"), "[RU] and [FR]");
        assert_eq!(sanitize("👍🏽 ❤\u{fe0f} 1\u{fe0f}\u{20e3}"), "👍 ❤ 1");
        assert_eq!(
            sanitize("🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}"),
            "🏴"
        );
        assert_eq!(sanitize("a lone \u{200d} joiner"), "a lone  joiner");
        // Combining marks are fine: every terminal agrees on them.
        assert!(matches!(sanitize("e\u{301}"), Cow::Borrowed(_)));
        // What is left has the same width in ratatui as in a terminal that
        // draws each code point on its own.
        for text in ["👨\u{200d}👩\u{200d}👧", "🇷🇺", "👍🏽", "1\u{fe0f}\u{20e3}"] {
            let safe = sanitize(text);
            let per_char: usize = safe
                .chars()
                .map(|c| unicode_width::UnicodeWidthChar::width(c).unwrap_or(0))
                .sum();
            assert_eq!(crate::wrap::width(&safe), per_char, "{text:?} -> {safe:?}");
        }
    }

    #[test]
    fn everything_out_is_harmless() {
        let nasty: String = (0u32..0x250)
            .chain(0x2000..0x2070)
            .chain([0xFEFF, 0xFFF9])
            .filter_map(char::from_u32)
            .collect();
        for line in display_lines(&nasty) {
            assert!(is_harmless(&line), "{line:?}");
        }
        assert!(is_harmless(&sanitize(&nasty)));
    }
}
