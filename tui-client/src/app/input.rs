//! The input line: text with a cursor counted in characters, the editing
//! keys of readline (Ctrl+A/E/W/U/K, word moves), and the history that
//! Up/Down walk through.

use std::collections::VecDeque;

/// How many sent lines the history keeps.
pub const HISTORY_LEN: usize = 500;

/// The text being typed and where the cursor is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    /// The cursor, in characters from the start (not bytes, not columns).
    cursor: usize,
}

impl Input {
    /// An input line holding `text`, the cursor at its end.
    pub fn with_text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            cursor: text.chars().count(),
        }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor position in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn byte_at(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// Inserts `s` at the cursor and moves the cursor past it.
    pub fn insert_str(&mut self, s: &str) {
        let at = self.byte_at(self.cursor);
        self.text.insert_str(at, s);
        self.cursor += s.chars().count();
    }

    /// Inserts one character.
    pub fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    /// Backspace.
    pub fn delete_back(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    /// Delete (the character under the cursor).
    pub fn delete_forward(&mut self) {
        if self.cursor < self.len() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    /// Left arrow.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Right arrow.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.len());
    }

    /// Home / Ctrl+A.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// End / Ctrl+E.
    pub fn end(&mut self) {
        self.cursor = self.len();
    }

    fn word_start_before(&self, from: usize) -> usize {
        let chars: Vec<char> = self.text.chars().collect();
        let mut i = from;
        while i > 0 && chars[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    }

    fn word_end_after(&self, from: usize) -> usize {
        let chars: Vec<char> = self.text.chars().collect();
        let mut i = from;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        i
    }

    /// Ctrl+Left / Alt+B.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start_before(self.cursor);
    }

    /// Ctrl+Right / Alt+F.
    pub fn word_right(&mut self) {
        self.cursor = self.word_end_after(self.cursor);
    }

    /// Ctrl+W: deletes the word before the cursor (and the spaces after it).
    pub fn delete_word_back(&mut self) {
        let start = self.word_start_before(self.cursor);
        let (a, b) = (self.byte_at(start), self.byte_at(self.cursor));
        self.text.replace_range(a..b, "");
        self.cursor = start;
    }

    /// Ctrl+U: deletes everything before the cursor.
    pub fn kill_to_start(&mut self) {
        let b = self.byte_at(self.cursor);
        self.text.replace_range(..b, "");
        self.cursor = 0;
    }

    /// Ctrl+K: deletes everything from the cursor on.
    pub fn kill_to_end(&mut self) {
        let a = self.byte_at(self.cursor);
        self.text.truncate(a);
    }

    /// Empties the line and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        *self = Self::with_text(text);
    }

    /// The text before the cursor.
    pub fn before_cursor(&self) -> &str {
        &self.text[..self.byte_at(self.cursor)]
    }
}

/// Lines sent before, newest last, and where Up/Down currently are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    entries: VecDeque<String>,
    /// `Some(i)` while browsing: the entry shown.
    position: Option<usize>,
    /// What was being typed when browsing started, given back by Down.
    draft: String,
}

impl History {
    /// Remembers a sent line (not an immediate repeat) and stops browsing.
    pub fn push(&mut self, line: &str) {
        self.position = None;
        if line.is_empty() || self.entries.back().is_some_and(|last| last == line) {
            return;
        }
        if self.entries.len() == HISTORY_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back(line.to_owned());
    }

    /// Up: the previous entry, keeping the current text as the draft.
    pub fn up(&mut self, current: &str) -> Option<&str> {
        let next = match self.position {
            None if self.entries.is_empty() => return None,
            None => {
                current.clone_into(&mut self.draft);
                self.entries.len() - 1
            }
            Some(0) => return None,
            Some(i) => i - 1,
        };
        self.position = Some(next);
        self.entries.get(next).map(String::as_str)
    }

    /// Down: the next entry, or the draft after the newest.
    pub fn down(&mut self) -> Option<String> {
        let i = self.position?;
        if i + 1 < self.entries.len() {
            self.position = Some(i + 1);
            self.entries.get(i + 1).cloned()
        } else {
            self.position = None;
            Some(std::mem::take(&mut self.draft))
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_by_characters_not_bytes() {
        let mut input = Input::default();
        input.insert_str("héllo 日本");
        input.left();
        input.insert('x');
        assert_eq!(input.text(), "héllo 日x本");
        input.home();
        input.delete_forward();
        input.right();
        input.delete_back();
        assert_eq!(input.text(), "llo 日x本");
        input.end();
        input.delete_back();
        assert_eq!(input.text(), "llo 日x");
        assert_eq!(input.cursor(), 6);
    }

    #[test]
    fn readline_kills() {
        let mut input = Input::with_text("one two  three");
        input.delete_word_back();
        assert_eq!(input.text(), "one two  ");
        input.delete_word_back();
        assert_eq!(input.text(), "one ");
        input.set("alpha beta gamma");
        input.word_left();
        input.word_left();
        assert_eq!(input.before_cursor(), "alpha ");
        input.kill_to_end();
        assert_eq!(input.text(), "alpha ");
        input.set("alpha beta");
        input.word_left();
        input.kill_to_start();
        assert_eq!((input.text(), input.cursor()), ("beta", 0));
        input.word_right();
        assert_eq!(input.cursor(), 4);
    }

    #[test]
    fn history_walks_and_restores_the_draft() {
        let mut history = History::default();
        history.push("first");
        history.push("second");
        history.push("second");
        assert_eq!(history.len(), 2);
        assert_eq!(history.up("draft"), Some("second"));
        assert_eq!(history.up("second"), Some("first"));
        assert_eq!(history.up("first"), None);
        assert_eq!(history.down().as_deref(), Some("second"));
        assert_eq!(history.down().as_deref(), Some("draft"));
        assert_eq!(history.down(), None);
    }
}
