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

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest as _, Sha256};

/// The shortest key accepted.
pub const KEY_MIN_LEN: usize = 16;
/// The longest key accepted.
pub const KEY_MAX_LEN: usize = 128;

/// Who a connection is, for name ownership: the hash of its key, or a
/// random identity of its own when it sent none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

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
        let digest = Sha256::digest(key.as_bytes());
        Ok(Self(format!("k{}", hex(&digest))))
    }

    /// A fresh identity for a connection without a key: nobody else has it.
    pub fn anonymous() -> Self {
        let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        Self(format!("a{}", hex(&bytes)))
    }

    /// The identity as text (hex, with a one-letter kind prefix): what
    /// layers store. Never contains `:`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
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

/// Display names present in a room: how many connections use each exact
/// name (for the member list and for join/leave announcements), and which
/// identity holds each folded name.
#[derive(Debug, Default)]
pub struct NameCounts {
    counts: BTreeMap<String, usize>,
    owners: HashMap<String, (Identity, usize)>,
}

impl NameCounts {
    /// Whether `identity` may use `name` here now.
    pub fn check(&self, name: &str, identity: &Identity) -> Result<(), NameTaken> {
        match self.owners.get(&name_fold(name)) {
            Some((owner, _)) if owner != identity => Err(NameTaken {
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
        self.owners
            .entry(name_fold(name))
            .or_insert_with(|| (identity.clone(), 0))
            .1 += 1;
        let count = self.counts.entry(name.to_owned()).or_default();
        *count += 1;
        Ok(*count == 1)
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
        let mut released = None;
        if let Some((_, count)) = self.owners.get_mut(&folded) {
            *count -= 1;
            if *count == 0 {
                released = self.owners.remove(&folded).map(|(identity, _)| identity);
            }
        }
        (self.remove_count(name), released)
    }

    fn remove_count(&mut self, name: &str) -> bool {
        match self.counts.get_mut(name) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(name);
                true
            }
            None => false,
        }
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
    pub fn holders(&self) -> impl Iterator<Item = (&String, &Identity)> {
        self.owners
            .iter()
            .map(|(folded, (identity, _))| (folded, identity))
    }

    /// The names present, each once, sorted.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.counts.keys()
    }

    /// How many distinct names are present.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
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
        assert_eq!(id.as_str().len(), 65);
        assert!(!id.as_str().contains("0123456789abcdef"));
        assert_eq!(
            id,
            Identity::from_key("0123456789abcdef0123456789abcdef").unwrap()
        );
        assert!(Identity::from_key("short").is_err());
        assert!(Identity::from_key(&"x".repeat(KEY_MAX_LEN + 1)).is_err());
        let err = Identity::from_key("has spaces in it, sixteen+").unwrap_err();
        assert!(err.to_string().contains("letters, digits"), "{err}");
        assert_ne!(Identity::anonymous(), Identity::anonymous());
        assert!(!Identity::anonymous().as_str().contains(':'));
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
        assert_eq!(names.release("Alice"), (true, Some(alice.clone())));
        assert_eq!(names.add("alice", &bob), Ok(true), "free once gone");
        assert_eq!(
            names.holders().collect::<Vec<_>>(),
            [(&"alice".to_owned(), &bob)]
        );
    }

    #[test]
    fn renames_are_checked_before_anything_changes() {
        let (alice, bob) = (key('a'), key('b'));
        let mut names = NameCounts::default();
        names.add("alice", &alice).unwrap();
        names.add("bob", &bob).unwrap();
        assert!(names.rename("bob", "alice", &bob).is_err());
        assert_eq!(names.names().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(names.rename("bob", "robert", &bob), Ok((true, true)));
        assert_eq!(names.rename("alice", "alice", &alice), Ok((true, true)));
        assert!(names.add("bob", &alice).is_ok(), "bob's old name is free");
    }

    #[test]
    fn anonymous_connections_do_not_share() {
        let (one, two) = (Identity::anonymous(), Identity::anonymous());
        let mut names = NameCounts::default();
        names.add("guest", &one).unwrap();
        assert!(names.add("guest", &two).is_err());
    }
}
