//! How pipe mode prints what it receives: JSON lines (text exactly as
//! sent, for programs) or readable text that is safe to print to a terminal
//! (`--format text`: every piece of remote text through [`sanitize`]).

use std::io::Write;

use chat_protocol::{ChatEvent, ServerEvent};

use crate::clock::TimeFormat;
use crate::config::OutputFormat;
use crate::sanitize::sanitize;

/// Prints events in one format.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    time: TimeFormat,
    utc_offset: i32,
}

impl Printer {
    /// A printer for `format`, times in `time` at `utc_offset`.
    pub fn new(format: OutputFormat, time: TimeFormat, utc_offset: i32) -> Self {
        Self {
            format,
            time,
            utc_offset,
        }
    }

    /// Writes `event` to `out`, and flushes.
    ///
    /// # Errors
    ///
    /// When writing fails (e.g. the reader went away: `BrokenPipe`).
    pub fn print(&self, event: &ServerEvent, out: &mut impl Write) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Json => writeln!(out, "{}", event.to_json())?,
            OutputFormat::Text => {
                for line in self.text(event) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()
    }

    fn stamp(&self, ts: u64) -> String {
        if ts == 0 {
            " ".repeat(self.time.width())
        } else {
            self.time.format(ts, self.utc_offset)
        }
    }

    fn chat(&self, chat: &ChatEvent) -> String {
        let time = self.stamp(chat.ts);
        let (user, text) = (sanitize(&chat.user), sanitize(&chat.message));
        match (chat.emote, user.is_empty()) {
            (true, _) => format!("{time} * {user} {text}"),
            (false, true) => format!("{time} {text}"),
            (false, false) => format!("{time} <{user}> {text}"),
        }
    }

    /// The lines `event` prints as in text format: one per event (and one
    /// per message of a welcome's or a page's history), never a control
    /// character among them.
    pub fn text(&self, event: &ServerEvent) -> Vec<String> {
        let notice = |ts: u64, mark: &str, text: &str| {
            format!("{} {mark} {}", self.stamp(ts), sanitize(text))
        };
        match event {
            ServerEvent::Welcome(w) => std::iter::once(notice(w.ts, "--", &w.message))
                .chain(w.history.iter().map(|c| self.chat(c)))
                .collect(),
            ServerEvent::Chat(chat) => vec![self.chat(chat)],
            ServerEvent::Join(p) => vec![notice(p.ts, "-->", &p.message)],
            ServerEvent::Leave(p) => vec![notice(p.ts, "<--", &p.message)],
            ServerEvent::Nick(n) => vec![notice(n.ts, "--", &n.message)],
            ServerEvent::Topic(t) => vec![notice(t.ts, "--", &t.message)],
            ServerEvent::Error(e) => vec![notice(e.ts, "!!", &e.message)],
            ServerEvent::Gap(g) => vec![notice(g.ts, "!!", &g.message)],
            ServerEvent::History(h) => std::iter::once(notice(h.ts, "--", &h.message))
                .chain(h.messages.iter().map(|c| self.chat(c)))
                .collect(),
            ServerEvent::Unknown => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_protocol::{ErrorCode, ErrorEvent, RoomName};

    use super::*;
    use crate::sanitize::is_harmless;

    fn chat(user: &str, text: &str, emote: bool) -> ServerEvent {
        ServerEvent::Chat(ChatEvent {
            message: text.into(),
            user: user.into(),
            room: RoomName::new("lobby").unwrap(),
            id: 1,
            ts: 1_796_396_169_000,
            emote,
        })
    }

    #[test]
    fn text_is_readable_and_harmless() {
        let printer = Printer::new(OutputFormat::Text, TimeFormat::default(), 0);
        assert_eq!(
            printer.text(&chat("alice", "hi", false)),
            ["14:56:09 <alice> hi"]
        );
        assert_eq!(
            printer.text(&chat("bob", "waves", true)),
            ["14:56:09 * bob waves"]
        );
        let nasty = printer.text(&chat(
            "\x1b]0;owned\x07mallory",
            "\x1b[2J\x1b[31mred\r\nsecond line\u{202e}",
            false,
        ));
        assert_eq!(nasty.len(), 1, "one event, one line: {nasty:?}");
        assert!(
            nasty[0].starts_with("14:56:09 <␛]0;owned␇mallory> ␛[2J␛[31mred⏎second line"),
            "{nasty:?}"
        );
        assert!(is_harmless(&nasty[0]), "{nasty:?}");
        let error = ServerEvent::Error(ErrorEvent {
            message: "slow down".into(),
            code: ErrorCode::RateLimited,
            ts: 0,
        });
        assert_eq!(printer.text(&error), ["         !! slow down"]);
    }

    #[test]
    fn json_is_the_event_as_sent() {
        let printer = Printer::new(OutputFormat::Json, TimeFormat::default(), 0);
        let mut out = Vec::new();
        let event = chat("alice", "\x1b[31m", false);
        printer.print(&event, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", event.to_json())
        );
    }
}
