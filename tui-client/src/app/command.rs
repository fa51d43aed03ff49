//! The slash commands of the input line.
//!
//! | input | meaning |
//! |---|---|
//! | `/join ROOM` (`/j`) | join a room (or switch to it); `/join` alone opens the room picker |
//! | `/leave [ROOM]` (`/part`) | leave the current room (or ROOM) |
//! | `/nick NAME` | change your display name in every room |
//! | `/me ACTION` | send an action: `* alice waves` |
//! | `/who` (`/names`) | list who is in the room |
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
    /// `/clear`.
    Clear,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// The help text, one line per entry (also the README's list).
pub const HELP: &[&str] = &[
    "Commands:",
    "  /join ROOM     join a room, or switch to it (/join alone: the room picker)",
    "  /leave [ROOM]  leave this room (or ROOM)",
    "  /nick NAME     change your display name",
    "  /me ACTION     send an action, shown as \"* you ACTION\"",
    "  /who           who is in this room",
    "  /clear         clear this room's messages from the screen",
    "  /help          this help",
    "  /quit          leave every room and exit (also Ctrl+C)",
    "  //text         send \"/text\" as a message",
    "Keys:",
    "  Enter send · Up/Down history · Tab complete a name · Ctrl+A/E/W/U/K edit",
    "  Alt+1..9, Ctrl+N/Ctrl+P or a click: switch room · PgUp/PgDn, wheel: scroll",
    "  Home/End on an empty line: oldest/newest message · Ctrl+L: redraw",
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
    }
}
