//! The slash commands of the input line.
//!
//! | input | meaning |
//! |---|---|
//! | `/join ROOM` (`/j`) | join a room (or switch to it); `/join` alone opens the room picker |
//! | `/leave [ROOM]` (`/part`) | leave the current room (or ROOM) |
//! | `/nick NAME` | change your display name in every room |
//! | `/me ACTION` | send an action: `* alice waves` |
//! | `/who` (`/names`) | list who is in the room |
//! | `/topic [TEXT]` | show the room's topic, or set it (`/topic -` clears it) |
//! | `/search WORDS` (`/s`) | find messages with every word; Esc returns |
//! | `/reconnect` | connect this room again now |
//! | `/clear` | clear the room's messages from the screen |
//! | `/help` (`/?`) | show the commands and keys |
//! | `/quit` (`/exit`, `/q`) | leave every room and exit |
//! | `//text` | send `/text` as a message |
//!
//! Commands are one line: a multi-line input (a paste) is always a message.

use chat_protocol::{RoomName, UserName};

/// A parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this text as a chat message.
    Say(String),
    /// `/me`.
    Me(String),
    /// `/join ROOM`.
    Join(RoomName),
    /// `/join` with no room: the picker.
    Pick,
    /// `/leave [ROOM]`.
    Leave(Option<RoomName>),
    /// `/nick NAME`.
    Nick(UserName),
    /// `/who`.
    Who,
    /// `/topic` (show) or `/topic TEXT` (set; `-` clears).
    Topic(Option<String>),
    /// `/search WORDS`.
    Search(String),
    /// `/reconnect`.
    Reconnect,
    /// `/clear`.
    Clear,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// The help text, one line per entry (also the README's list). Each line
/// is short enough for an 80-column terminal, so that none wraps.
pub const HELP: &[&str] = &[
    "Commands (aliases in brackets):",
    "  /join ROOM      join or switch to ROOM [/j]; alone: pick a room",
    "  /leave [ROOM]   leave this room, or ROOM [/part]",
    "  /nick NAME      change your display name",
    "  /me ACTION      send an action: * you ACTION",
    "  /who            who is in this room [/names]",
    "  /topic [TEXT]   show the topic, or set it (/topic - clears)",
    "  /search WORDS   find messages with every word [/s]",
    "  /reconnect      connect this room again now",
    "  /clear          clear this room's lines from the screen",
    "  /help           this help [/?]",
    "  /quit           leave every room and exit [/exit /q]",
    "  //text          send \"/text\" as a message",
    "Keys:",
    "  Enter           send; Alt+Enter: a new line in the message",
    "  Up / Down       earlier / later lines you sent",
    "  Tab             complete a name; again: the next match",
    "  Ctrl+A / E      start / end of the line",
    "  Ctrl+W / U / K  delete a word / to the start / to the end",
    "  Alt+B / F       a word left / right (also Ctrl+Left/Right)",
    "  Alt+1..9        go to room 1..9 (also a click on it)",
    "  Ctrl+N / P      next / previous room (also Alt+Right/Left)",
    "  Alt+A           next room with activity, highlights first",
    "  PgUp / PgDn     scroll (also the wheel); at the top: older lines",
    "  Home / End      oldest / newest line (on an empty input line)",
    "  Ctrl+R          search this room; Esc closes the results",
    "  Ctrl+L          redraw the screen",
    "  Ctrl+C          quit (twice if messages are still unsent)",
];

/// Parses an input line.
///
/// # Errors
///
/// A one-line explanation for the user: an unknown command, a missing
/// argument, or a name that breaks the rules.
pub fn parse(line: &str) -> Result<Command, String> {
    if line.contains('\n') || !line.starts_with('/') {
        return Ok(Command::Say(line.to_owned()));
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{literal}")));
    }
    let (name, rest) = match line[1..].split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (&line[1..], ""),
    };
    let room = |arg: &str| RoomName::new(arg).map_err(|err| format!("cannot join: {err}"));
    match name.to_lowercase().as_str() {
        "join" | "j" if rest.is_empty() => Ok(Command::Pick),
        "join" | "j" => room(rest).map(Command::Join),
        "leave" | "part" if rest.is_empty() => Ok(Command::Leave(None)),
        "leave" | "part" => room(rest).map(|r| Command::Leave(Some(r))),
        "nick" if rest.is_empty() => Err("usage: /nick NAME".to_owned()),
        "nick" => UserName::new(rest)
            .map(Command::Nick)
            .map_err(|err| format!("cannot change name: {err}")),
        "me" if rest.is_empty() => Err("usage: /me ACTION, e.g. /me waves".to_owned()),
        "me" => Ok(Command::Me(rest.to_owned())),
        "who" | "names" => Ok(Command::Who),
        "topic" if rest.is_empty() => Ok(Command::Topic(None)),
        "topic" if rest == "-" => Ok(Command::Topic(Some(String::new()))),
        "topic" => Ok(Command::Topic(Some(rest.to_owned()))),
        "search" | "s" if rest.is_empty() => Err(
            "usage: /search WORDS (messages with every word), e.g. /search deploy friday"
                .to_owned(),
        ),
        "search" | "s" => Ok(Command::Search(rest.to_owned())),
        "reconnect" => Ok(Command::Reconnect),
        "clear" => Ok(Command::Clear),
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" | "q" => Ok(Command::Quit),
        "" => Err("a lone \"/\" is not a command; type //  to send a slash".to_owned()),
        _ => Err(format!(
            "unknown command /{name}: type /help for the list, or //{name} to send it as text"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("hello"), Ok(Command::Say("hello".into())));
        assert_eq!(parse(" /join x"), Ok(Command::Say(" /join x".into())));
        assert_eq!(parse("//etc/hosts"), Ok(Command::Say("/etc/hosts".into())));
        assert_eq!(
            parse("/join  dev "),
            Ok(Command::Join(RoomName::new("dev").unwrap()))
        );
        assert_eq!(parse("/join"), Ok(Command::Pick));
        assert_eq!(parse("/leave"), Ok(Command::Leave(None)));
        assert_eq!(parse("/me waves  hi"), Ok(Command::Me("waves  hi".into())));
        assert_eq!(
            parse("/nick Zoë"),
            Ok(Command::Nick(UserName::new("Zoë").unwrap()))
        );
        assert_eq!(parse("/QUIT"), Ok(Command::Quit));
        assert_eq!(parse("/who"), Ok(Command::Who));
        assert_eq!(parse("/names"), Ok(Command::Who));
        assert_eq!(parse("/topic"), Ok(Command::Topic(None)));
        assert_eq!(
            parse("/topic  ship it "),
            Ok(Command::Topic(Some("ship it".into())))
        );
        assert_eq!(parse("/topic -"), Ok(Command::Topic(Some(String::new()))));
        assert_eq!(parse("/s deploy"), Ok(Command::Search("deploy".into())));
        assert_eq!(parse("/reconnect"), Ok(Command::Reconnect));
        assert_eq!(
            parse("/me line\nnext"),
            Ok(Command::Say("/me line\nnext".into()))
        );
    }

    #[test]
    fn explains_mistakes() {
        let err = parse("/frobnicate now").unwrap_err();
        assert!(err.contains("unknown command /frobnicate"), "{err}");
        assert!(err.contains("//frobnicate"), "{err}");
        let err = parse("/join no/slashes").unwrap_err();
        assert!(err.contains("ASCII letters"), "{err}");
        assert!(parse("/nick").unwrap_err().contains("usage"));
        assert!(parse("/me").unwrap_err().contains("usage"));
        assert!(parse("/nick a\u{202e}b").is_err());
        assert!(parse("/search").unwrap_err().contains("usage"));
    }

    /// Issue #13: /help lists every key and alias, in lines short enough
    /// to take at most two rows of an 80-column terminal's text column
    /// (which wraps between words, never inside `Ctrl+N`).
    #[test]
    fn help_lists_keys_and_aliases_in_short_lines() {
        let help = HELP.join("\n");
        for needle in [
            "/j]",
            "/part]",
            "/names]",
            "/?]",
            "/exit /q]",
            "/s]",
            "Alt+A",
            "Ctrl+R",
            "Tab",
            "Alt+Enter",
            "Ctrl+W",
            "PgUp",
            "/reconnect",
            "/topic",
        ] {
            assert!(help.contains(needle), "{needle} missing from /help");
        }
        for line in HELP {
            assert!(crate::wrap::width(line) <= 72, "{line:?} is too wide");
        }
    }
}
