//! Display names: what the server stamps on every event a person sends.
//!
//! Names are free-form Unicode so that people can be themselves, but they
//! are shown in terminals and pages next to other people's text, so the
//! rule keeps out whatever could forge or garble a line: control
//! characters, bidirectional overrides and other invisible formatting
//! characters, line breaks, and leading or trailing white space.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest display name accepted, in characters.
pub const USER_NAME_MAX_LEN: usize = 32;

/// The display-name rule in words, for error messages and help texts.
pub const USER_NAME_RULE: &str = "a display name is 1 to 32 characters, with no control or \
     invisible formatting characters and no leading or trailing spaces";

/// A validated display name.
///
/// ```
/// use chat_protocol::UserName;
///
/// let me = UserName::new("Zoë 🦀")?;
/// assert_eq!(me.as_str(), "Zoë 🦀");
/// assert!(UserName::new("evil\u{202e}").is_err());
/// # Ok::<(), chat_protocol::UserNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

/// Why a string is not a valid display name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserNameError {
    /// The name is empty.
    #[error("the display name is empty; {USER_NAME_RULE}")]
    Empty,
    /// The name is longer than [`USER_NAME_MAX_LEN`] characters.
    #[error("the display name is {len} characters long, over the limit of 32; {USER_NAME_RULE}")]
    TooLong {
        /// The length of the refused name, in characters.
        len: usize,
    },
    /// The name holds a control or invisible formatting character.
    #[error("the display name contains {character:?}, which is not allowed; {USER_NAME_RULE}")]
    InvalidCharacter {
        /// The first offending character.
        character: char,
    },
    /// The name starts or ends with white space.
    #[error("the display name starts or ends with white space; {USER_NAME_RULE}")]
    SurroundingWhitespace,
}

impl UserName {
    /// Validates `name` against the display-name rule.
    ///
    /// # Errors
    ///
    /// Returns a [`UserNameError`] saying which part of the rule `name` breaks.
    pub fn new(name: impl Into<String>) -> Result<Self, UserNameError> {
        let name = name.into();
        validate_user_name(&name)?;
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

/// Checks `name` against the display-name rule.
///
/// # Errors
///
/// Returns a [`UserNameError`] saying which part of the rule `name` breaks.
pub fn validate_user_name(name: &str) -> Result<(), UserNameError> {
    if name.is_empty() {
        return Err(UserNameError::Empty);
    }
    if let Some(character) = name.chars().find(|c| is_forbidden_in_names(*c)) {
        return Err(UserNameError::InvalidCharacter { character });
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(UserNameError::SurroundingWhitespace);
    }
    let len = name.chars().count();
    if len > USER_NAME_MAX_LEN {
        return Err(UserNameError::TooLong { len });
    }
    Ok(())
}

/// Characters that may not appear in a display name: C0/C1 controls, line
/// and paragraph separators, bidi embeddings/overrides/isolates, zero-width
/// and other invisible format characters.
fn is_forbidden_in_names(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                // soft hyphen
            | '\u{034F}'              // combining grapheme joiner
            | '\u{061C}'              // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels (invisible)
            | '\u{180B}'..='\u{180F}' // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{2800}'              // braille blank
            | '\u{3164}'              // Hangul filler
            | '\u{FEFF}'              // byte-order mark
            | '\u{FFA0}'              // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
            | '\u{13430}'..='\u{1343F}' // Egyptian hieroglyph format controls
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical format controls
            | '\u{E0000}'..='\u{E007F}' // tag characters
        )
}

impl TryFrom<String> for UserName {
    type Error = UserNameError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl TryFrom<&str> for UserName {
    type Error = UserNameError;
    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl std::str::FromStr for UserName {
    type Err = UserNameError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> Self {
        name.0
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_unicode_names() {
        for name in [
            "alice",
            "Zoë",
            "山田 太郎",
            "🦀 crab",
            "<b>bold</b>",
            &"é".repeat(32),
        ] {
            assert!(UserName::new(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        assert_eq!(UserName::new(""), Err(UserNameError::Empty));
        assert_eq!(
            UserName::new("é".repeat(33)),
            Err(UserNameError::TooLong { len: 33 })
        );
        assert_eq!(
            UserName::new(" bob"),
            Err(UserNameError::SurroundingWhitespace)
        );
        assert_eq!(
            UserName::new("bob\t"),
            Err(UserNameError::InvalidCharacter { character: '\t' })
        );
        for bad in [
            '\n',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{2800}',
            '\u{34f}',
            '\u{1d173}',
        ] {
            let name = format!("a{bad}b");
            assert_eq!(
                UserName::new(name.clone()),
                Err(UserNameError::InvalidCharacter { character: bad }),
                "{name:?}"
            );
        }
    }
}
