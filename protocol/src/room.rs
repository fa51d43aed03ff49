//! Room names: the one rule that the server, the pages and every client share.
//!
//! The rule is Channels' group-name rule, so that a room name is always a
//! valid `chat_<room>` group on a Django Channels server too: 1 to 100
//! characters, each an ASCII letter, an ASCII digit, `-`, `_` or `.`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest room name accepted, in characters (and bytes: the rule is ASCII).
pub const ROOM_NAME_MAX_LEN: usize = 100;

/// The room-name rule in words, for error messages and help texts.
pub const ROOM_NAME_RULE: &str =
    "a room name is 1 to 100 characters of ASCII letters, digits, '-', '_' or '.'";

/// A validated room name.
///
/// ```
/// use chat_protocol::RoomName;
///
/// let room = RoomName::new("lobby")?;
/// assert_eq!(room.as_str(), "lobby");
/// assert!(RoomName::new("../x").is_err());
/// # Ok::<(), chat_protocol::RoomNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(String);

/// Why a string is not a valid room name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomNameError {
    /// The name is the empty string.
    #[error("the room name is empty; {ROOM_NAME_RULE}")]
    Empty,
    /// The name is longer than [`ROOM_NAME_MAX_LEN`].
    #[error("the room name is {len} characters long, over the limit of 100; {ROOM_NAME_RULE}")]
    TooLong {
        /// The length of the refused name, in characters.
        len: usize,
    },
    /// The name is `.` or `..`, which URLs resolve as paths, so no browser
    /// or URL library could reach the room.
    #[error(
        "the room name {0:?} cannot appear in a URL; {ROOM_NAME_RULE}, and not just '.' or '..'"
    )]
    DotSegment(&'static str),
    /// The name holds a character outside the allowed set.
    #[error("the room name contains {character:?}, which is not allowed; {ROOM_NAME_RULE}")]
    InvalidCharacter {
        /// The first offending character.
        character: char,
    },
}

impl RoomName {
    /// Validates `name` against the room-name rule.
    ///
    /// # Errors
    ///
    /// Returns a [`RoomNameError`] saying which part of the rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<Self, RoomNameError> {
        let name = name.into();
        validate_room_name(&name)?;
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks `name` against the room-name rule without allocating.
///
/// # Errors
///
/// Returns a [`RoomNameError`] saying which part of the rule `name` breaks.
pub fn validate_room_name(name: &str) -> Result<(), RoomNameError> {
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    if let Some(character) = name.chars().find(|c| !is_room_name_char(*c)) {
        return Err(RoomNameError::InvalidCharacter { character });
    }
    match name {
        "." => return Err(RoomNameError::DotSegment(".")),
        ".." => return Err(RoomNameError::DotSegment("..")),
        _ => {}
    }
    // Every character is ASCII here, so bytes and characters agree.
    if name.len() > ROOM_NAME_MAX_LEN {
        return Err(RoomNameError::TooLong { len: name.len() });
    }
    Ok(())
}

fn is_room_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl TryFrom<String> for RoomName {
    type Error = RoomNameError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl TryFrom<&str> for RoomName {
    type Error = RoomNameError;
    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl std::str::FromStr for RoomName {
    type Err = RoomNameError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl From<RoomName> for String {
    fn from(name: RoomName) -> Self {
        name.0
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RoomName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_channels_group_alphabet() {
        for name in [
            "lobby",
            "a",
            "A-b_c.9",
            &"x".repeat(100),
            "...",
            "-",
            ".hidden",
        ] {
            assert!(RoomName::new(name).is_ok(), "{name:?} should be valid");
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        assert_eq!(RoomName::new(""), Err(RoomNameError::Empty));
        assert_eq!(RoomName::new("."), Err(RoomNameError::DotSegment(".")));
        assert_eq!(RoomName::new(".."), Err(RoomNameError::DotSegment("..")));
        assert_eq!(
            RoomName::new("x".repeat(101)),
            Err(RoomNameError::TooLong { len: 101 })
        );
        for (name, bad) in [
            ("../x", '/'),
            ("a b", ' '),
            ("a\0", '\0'),
            ("café", 'é'),
            ("</script>", '<'),
            ("%3C", '%'),
            ("日本", '日'),
        ] {
            assert_eq!(
                RoomName::new(name),
                Err(RoomNameError::InvalidCharacter { character: bad }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn error_messages_state_the_rule() {
        let err = RoomName::new("a b").unwrap_err().to_string();
        assert!(err.contains("' '"), "{err}");
        assert!(err.contains(ROOM_NAME_RULE), "{err}");
    }

    #[test]
    fn serde_validates() {
        let ok: RoomName = serde_json::from_str("\"lobby\"").unwrap();
        assert_eq!(ok.as_str(), "lobby");
        assert!(serde_json::from_str::<RoomName>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"lobby\"");
    }
}
