//! Word wrapping by display width.
//!
//! Widths come from `unicode-width` per grapheme cluster, as ratatui counts
//! them, so CJK characters and emoji take two columns, combining marks
//! none, and a wide character is never split across the edge: it moves to
//! the next line whole. Lines break at spaces, and between wide characters
//! (CJK ideographs, emoji), never inside a token such as `Ctrl+N/Ctrl+P` or
//! a URL; a word longer than the line is broken by graphemes.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// The display width of `text` in terminal columns.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// Wraps one line of (already sanitised, break-free) text to `max` columns.
/// Always returns at least one line (an empty text gives one empty line).
/// With `max == 0`, returns the text as one line: there is nothing to fit.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    if max == 0 || width(text) <= max {
        return vec![text.to_owned()];
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0;
    for word in segments(text) {
        let word_width = width(word);
        if line_width + word_width <= max {
            line.push_str(word);
            line_width += word_width;
            continue;
        }
        if word.chars().all(char::is_whitespace) {
            // Break here; spaces at the edge are dropped, as every wrapping
            // terminal client does.
            lines.push(std::mem::take(&mut line));
            line_width = 0;
            continue;
        }
        if word_width <= max && line_width > 0 {
            lines.push(std::mem::take(&mut line));
            line.push_str(word);
            line_width = word_width;
            continue;
        }
        // Longer than a line: fill the current line, then break by grapheme.
        for grapheme in word.graphemes(true) {
            let w = width(grapheme);
            if line_width + w > max && line_width > 0 {
                lines.push(std::mem::take(&mut line));
                line_width = 0;
            }
            line.push_str(grapheme);
            line_width += w;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    trim_continuations(lines)
}

/// `text` cut where a line may break: runs of spaces, runs of other
/// narrow graphemes, and each wide grapheme on its own.
fn segments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last: Option<(bool, bool)> = None;
    for (i, g) in text.grapheme_indices(true) {
        let space = g.chars().all(char::is_whitespace);
        let wide = width(g) > 1;
        let kind = (space, wide);
        if let Some(previous) = last {
            if previous != kind || wide {
                out.push(&text[start..i]);
                start = i;
            }
        }
        last = Some(kind);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Drops the spaces at each break: at the end of a broken line and at the
/// start of the line after it.
fn trim_continuations(lines: Vec<String>) -> Vec<String> {
    let last = lines.len().saturating_sub(1);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for (i, mut line) in lines.into_iter().enumerate() {
        if i < last {
            line.truncate(line.trim_end_matches(' ').len());
        }
        if i == 0 {
            out.push(line);
        } else {
            let trimmed = line.trim_start_matches(' ');
            if trimmed.is_empty() && !out.is_empty() {
                continue;
            }
            out.push(trimmed.to_owned());
        }
    }
    out
}

/// Cuts `text` to at most `max` columns, never splitting a grapheme.
pub fn truncate(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, g) in text.grapheme_indices(true) {
        let w = width(g);
        if used + w > max {
            return &text[..i];
        }
        used += w;
    }
    text
}

/// The last part of `text` that fits in `max` columns.
pub fn truncate_start(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, g) in text.grapheme_indices(true).rev() {
        let w = width(g);
        if used + w > max {
            return &text[i + g.len()..];
        }
        used += w;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(lines: &[String]) -> Vec<usize> {
        lines.iter().map(|l| width(l)).collect()
    }

    #[test]
    fn short_text_is_one_line() {
        assert_eq!(wrap("hello", 10), vec!["hello"]);
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(wrap("abc", 0), vec!["abc"]);
    }

    #[test]
    fn breaks_at_spaces() {
        assert_eq!(
            wrap("lorem ipsum dolor sit amet", 11),
            vec!["lorem ipsum", "dolor sit", "amet"]
        );
    }

    #[test]
    fn never_breaks_inside_a_token() {
        assert_eq!(
            wrap("Alt+1..9, Ctrl+N/Ctrl+P or a click", 16),
            vec!["Alt+1..9,", "Ctrl+N/Ctrl+P or", "a click"]
        );
        assert_eq!(
            wrap("see https://example.org/a/b?c=d now", 30),
            vec!["see", "https://example.org/a/b?c=d", "now"]
        );
    }

    #[test]
    fn breaks_long_words_by_grapheme() {
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("ab cdefghij", 4), vec!["ab c", "defg", "hij"]);
    }

    #[test]
    fn wide_characters_never_straddle_the_edge() {
        let lines = wrap("日本語のテキスト", 5);
        assert!(widths(&lines).iter().all(|w| *w <= 5), "{lines:?}");
        assert_eq!(lines.concat(), "日本語のテキスト");
        let lines = wrap("a🎉🎉🎉", 4);
        assert_eq!(lines, vec!["a🎉", "🎉🎉"]);
        // A family emoji is one grapheme of width 2.
        let family = "👨‍👩‍👧";
        assert_eq!(wrap(&format!("{family}{family}"), 3), vec![family, family]);
    }

    #[test]
    fn every_line_fits() {
        let text = "emoji 🎉 test 日本語 mixed withaverylongwordthatneedsbreaking and more";
        for max in 2..30 {
            for line in wrap(text, max) {
                assert!(width(&line) <= max, "{max}: {line:?}");
            }
        }
    }

    #[test]
    fn truncates_by_width() {
        assert_eq!(truncate("日本語", 5), "日本");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate_start("日本語", 5), "本語");
        assert_eq!(truncate_start("abcdef", 3), "def");
    }
}
