//! Who may use a display name in a room.
//!
//! A name is held in a room by the connections that use it. Another
//! connection may take the same name only if it belongs to the same person,
//! which it proves with the secret key it sends at connect (`?key=`): two
//! tabs or two terminals of one person share a name, someone else gets
//! `name_taken` (HTTP 409 on join, an `error` event on rename). Without a
//! key a connection is a person of its own.
//!
//! The server never keeps a key: it keeps an [`Identity`], the SHA-256 of
//! the key, which is what layers store and compare (and what another
//! instance sees through Redis). Names are compared by their
//! [`name_fold`], so that `Alice` is `alice`.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

/// The shortest key accepted.
pub const KEY_MIN_LEN: usize = 16;
/// The longest key accepted.
pub const KEY_MAX_LEN: usize = 128;

/// Who a connection is, for name ownership: the hash of its key, or a
/// random identity of its own when it sent none. Held inline (no heap):
/// every member of every room keeps one, in its session and in the room's
/// presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The SHA-256 of the key the client sent.
    Key([u8; 32]),
    /// A connection without a key: random, nobody else has it.
    Anonymous([u8; 16]),
}

/// Why a `key` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key must be {KEY_MIN_LEN} to {KEY_MAX_LEN} ASCII letters, digits, '-', '_', '.' or '~' \
     (got {len} characters); a random one, kept by the client, e.g. 32 hex digits"
)]
pub struct KeyError {
    /// The length of what was sent.
    len: usize,
}

impl Identity {
    /// The identity of whoever holds `key`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the key is too short, too long or holds other
    /// characters than letters, digits and `-_.~`.
    pub fn from_key(key: &str) -> Result<Self, KeyError> {
        let ok = (KEY_MIN_LEN..=KEY_MAX_LEN).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if !ok {
            return Err(KeyError {
                len: key.chars().count(),
            });
        }
        Ok(Self::Key(Sha256::digest(key.as_bytes()).into()))
    }

    /// A fresh identity for a connection without a key: nobody else has it.
    pub fn anonymous() -> Self {
        Self::Anonymous(std::array::from_fn(|_| fastrand::u8(..)))
    }
}

/// The identity as text, as layers store it (Redis): hex with a one-letter
/// kind prefix (`k` for a key's hash, `a` for anonymous). Never contains
/// `:`.
impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, bytes): (char, &[u8]) = match self {
            Self::Key(hash) => ('k', hash),
            Self::Anonymous(random) => ('a', random),
        };
        write!(f, "{kind}")?;
        bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The form names are compared in: lower case, so that one person's
/// `alice` cannot be taken as `Alice` or `ALICE` by another.
pub fn name_fold(name: &str) -> String {
    name.to_lowercase()
}

/// The name is held in the room by someone else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the name {name:?} is taken in this room by someone else; choose another name \
     (the same person in another tab or terminal shares it by sending the same key)"
)]
pub struct NameTaken {
    /// The name asked for.
    pub name: String,
}

/// Display names present in a room: which identity holds each folded
/// name, and how many connections use each exact spelling of it (for the
/// member list and for join/leave announcements).
///
/// One map entry per folded name, with its spelling inline when there is
/// one (almost always): every member of every room has an entry, so it is
/// kept small.
#[derive(Debug, Default)]
pub struct NameCounts {
    holders: HashMap<Box<str>, Holder>,
    /// Distinct exact names present.
    spellings: usize,
}

/// Who holds one folded name in a room, and under which spellings.
#[derive(Debug)]
struct Holder {
    identity: Identity,
    spellings: Spellings,
}

/// The exact spellings of one folded name in use, each with its number of
/// connections (never zero; a holder with none is removed).
#[derive(Debug)]
enum Spellings {
    One(Box<str>, u32),
    Many(Vec<(Box<str>, u32)>),
}

impl Spellings {
    /// Counts one more connection of `name`: true if the spelling is new.
    fn add(&mut self, name: &str) -> bool {
        match self {
            Self::One(one, count) if **one == *name => {
                *count += 1;
                false
            }
            Self::One(one, count) => {
                let first = (std::mem::take(one), *count);
                *self = Self::Many(vec![first, (name.into(), 1)]);
                true
            }
            Self::Many(all) => {
                if let Some((_, count)) = all.iter_mut().find(|(spelling, _)| **spelling == *name) {
                    *count += 1;
                    false
                } else {
                    all.push((name.into(), 1));
                    true
                }
            }
        }
    }

    /// Counts one connection of `name` less: `Some(true)` if it was the
    /// last with this spelling, `None` if the spelling is not in use.
    fn remove(&mut self, name: &str) -> Option<bool> {
        match self {
            Self::One(one, count) if **one == *name => {
                *count -= 1;
                Some(*count == 0)
            }
            Self::One(..) => None,
            Self::Many(all) => {
                let at = all.iter().position(|(spelling, _)| **spelling == *name)?;
                all[at].1 -= 1;
                let gone = all[at].1 == 0;
                if gone {
                    all.swap_remove(at);
                }
                Some(gone)
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::One(_, count) => *count == 0,
            Self::Many(all) => all.is_empty(),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Self::One(name, _) => (Some(&**name), &[][..]),
            Self::Many(all) => (None, &all[..]),
        };
        one.into_iter().chain(many.iter().map(|(name, _)| &**name))
    }
}

impl NameCounts {
    /// Whether `identity` may use `name` here now.
    pub fn check(&self, name: &str, identity: &Identity) -> Result<(), NameTaken> {
        match self.holders.get(name_fold(name).as_str()) {
            Some(holder) if holder.identity != *identity => Err(NameTaken {
                name: name.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Counts one more connection of `name` for `identity`; `Ok(true)` if
    /// it is the first connection with this exact name.
    ///
    /// # Errors
    ///
    /// [`NameTaken`] when another identity holds the name; nothing changes.
    pub fn add(&mut self, name: &str, identity: &Identity) -> Result<bool, NameTaken> {
        self.check(name, identity)?;
        let folded = name_fold(name);
        let first = if let Some(holder) = self.holders.get_mut(folded.as_str()) {
            holder.spellings.add(name)
        } else {
            let holder = Holder {
                identity: *identity,
                spellings: Spellings::One(name.into(), 1),
            };
            self.holders.insert(folded.into_boxed_str(), holder);
            true
        };
        if first {
            self.spellings += 1;
        }
        Ok(first)
    }

    /// Counts one connection of `name` less; true if it was the last with
    /// this exact name.
    pub fn remove(&mut self, name: &str) -> bool {
        self.release(name).0
    }

    /// Counts one connection of `name` less: whether it was the last with
    /// this exact name, and the identity that no longer holds the name
    /// (folded) at all here, if so.
    pub fn release(&mut self, name: &str) -> (bool, Option<Identity>) {
        let folded = name_fold(name);
        let Some(holder) = self.holders.get_mut(folded.as_str()) else {
            return (false, None);
        };
        let last_of_spelling = holder.spellings.remove(name) == Some(true);
        if last_of_spelling {
            self.spellings -= 1;
        }
        if !holder.spellings.is_empty() {
            return (last_of_spelling, None);
        }
        let released = self
            .holders
            .remove(folded.as_str())
            .map(|holder| holder.identity);
        (last_of_spelling, released)
    }

    /// Moves one connection of `identity` from `old` to `new`: `(old_gone,
    /// new_first)` as [`Self::remove`] and [`Self::add`] say them.
    ///
    /// # Errors
    ///
    /// [`NameTaken`] when another identity holds `new`; nothing changes.
    pub fn rename(
        &mut self,
        old: &str,
        new: &str,
        identity: &Identity,
    ) -> Result<(bool, bool), NameTaken> {
        self.check(new, identity)?;
        let old_gone = self.remove(old);
        let new_first = self.add(new, identity)?;
        Ok((old_gone, new_first))
    }

    /// Who holds each name here: (folded name, identity).
    pub fn holders(&self) -> impl Iterator<Item = (&str, &Identity)> {
        self.holders
            .iter()
            .map(|(folded, holder)| (&**folded, &holder.identity))
    }

    /// The names present, each once, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .holders
            .values()
            .flat_map(|holder| holder.spellings.names())
            .collect();
        names.sort_unstable();
        names
    }

    /// How many distinct names are present.
    pub fn len(&self) -> usize {
        self.spellings
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> Identity {
        Identity::from_key(&c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn keys_are_hashed_and_checked() {
        let id = Identity::from_key("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(id.to_string().len(), 65);
        assert!(!id.to_string().contains("0123456789abcdef"));
        assert_eq!(
            id,
            Identity::from_key("0123456789abcdef0123456789abcdef").unwrap()
        );
        assert!(Identity::from_key("short").is_err());
        assert!(Identity::from_key(&"x".repeat(KEY_MAX_LEN + 1)).is_err());
        let err = Identity::from_key("has spaces in it, sixteen+").unwrap_err();
        assert!(err.to_string().contains("letters, digits"), "{err}");
        assert_ne!(Identity::anonymous(), Identity::anonymous());
        assert!(!Identity::anonymous().to_string().contains(':'));
        assert_eq!(Identity::anonymous().to_string().len(), 33);
    }

    #[test]
    fn a_name_is_held_by_one_identity() {
        let (alice, bob) = (key('a'), key('b'));
        let mut names = NameCounts::default();
        assert_eq!(names.add("alice", &alice), Ok(true));
        assert_eq!(names.add("alice", &alice), Ok(false), "a second tab");
        assert_eq!(
            names.add("Alice", &alice),
            Ok(true),
            "same person, other case"
        );
        assert!(names.add("alice", &bob).is_err());
        assert!(names.add("ALICE", &bob).is_err(), "case does not help");
        assert_eq!(names.len(), 2);
        assert!(!names.remove("alice"));
        assert!(names.remove("alice"));
        assert!(names.add("alice", &bob).is_err(), "Alice still holds it");
        assert_eq!(names.release("Alice"), (true, Some(alice)));
        assert_eq!(names.add("alice", &bob), Ok(true), "free once gone");
        assert_eq!(names.holders().collect::<Vec<_>>(), [("alice", &bob)]);
    }

    #[test]
    fn renames_are_checked_before_anything_changes() {
        let (alice, bob) = (key('a'), key('b'));
        let mut names = NameCounts::default();
        names.add("alice", &alice).unwrap();
        names.add("bob", &bob).unwrap();
        assert!(names.rename("bob", "alice", &bob).is_err());
        assert_eq!(names.names(), ["alice", "bob"]);
        assert_eq!(names.rename("bob", "robert", &bob), Ok((true, true)));
        assert_eq!(names.rename("alice", "alice", &alice), Ok((true, true)));
        assert!(names.add("bob", &alice).is_ok(), "bob's old name is free");
    }

    #[test]
    fn spellings_of_one_name_are_counted_apart_and_listed_sorted() {
        let (alice, bob) = (key('a'), key('b'));
        let mut names = NameCounts::default();
        for name in ["alice", "Alice", "ALICE", "alice"] {
            names.add(name, &alice).unwrap();
        }
        names.add("bob", &bob).unwrap();
        assert_eq!(names.names(), ["ALICE", "Alice", "alice", "bob"]);
        assert_eq!(names.len(), 4);
        assert_eq!(names.release("Alice"), (true, None), "alice still here");
        assert_eq!(names.release("alice"), (false, None), "one alice tab left");
        assert_eq!(names.release("nobody"), (false, None));
        assert_eq!(names.release("alice"), (true, None));
        assert!(names.add("alice", &bob).is_err(), "ALICE still holds it");
        assert_eq!(names.release("ALICE"), (true, Some(alice)));
        assert_eq!(names.len(), 1);
        assert_eq!(names.names(), ["bob"]);
        assert_eq!(names.release("bob"), (true, Some(bob)));
        assert!(names.is_empty());
        assert_eq!(names.len(), 0);
    }

    #[test]
    fn anonymous_connections_do_not_share() {
        let (one, two) = (Identity::anonymous(), Identity::anonymous());
        let mut names = NameCounts::default();
        names.add("guest", &one).unwrap();
        assert!(names.add("guest", &two).is_err());
    }
}
