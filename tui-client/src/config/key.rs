//! This person's secret key: made once, kept in a file only its owner can
//! read (`$XDG_STATE_HOME/chat-tui/key`, by default
//! `~/.local/state/chat-tui/key`), and sent at every connect. The server
//! lets every connection with the same key share a display name (two
//! terminals of one person) and refuses the name to anyone else while it is
//! in use.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why the key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("the key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something that is not a key.
    #[error(
        "the key file {} does not hold a key (16 to 128 letters, digits, '-', '_', '.', '~'); \
         delete it and a new one is made",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
    },
}

/// Where the key lives by default.
pub fn default_path(state_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match state_home.filter(|p| p.is_absolute()) {
        Some(dir) => dir.to_path_buf(),
        None => home?.join(".local").join("state"),
    };
    Some(base.join("chat-tui").join("key"))
}

fn is_key(key: &str) -> bool {
    (16..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The key in `path`, made (and the file written, mode 0600) if there is
/// none yet.
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or written, or holds no key.
pub fn load_or_create(path: &Path) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = text.trim();
            return if is_key(key) {
                Ok(key.to_owned())
            } else {
                Err(KeyError::Invalid {
                    path: path.to_path_buf(),
                })
            };
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let key = chat_protocol::generate_key().map_err(io)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{key}\n").as_bytes()).map_err(io)?;
            Ok(key)
        }
        // Another chat-tui made it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(err) => Err(io(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_then_kept() {
        let dir = std::env::temp_dir().join(format!("chat-tui-key-{}", std::process::id()));
        let path = dir.join("sub").join("key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&path).unwrap();
        assert!(is_key(&first), "{first}");
        assert_eq!(load_or_create(&path).unwrap(), first, "the same key again");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
        }
        std::fs::write(&path, "not a key\n").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("delete it"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_path_follows_xdg() {
        assert_eq!(
            default_path(Some(Path::new("/s")), Some(Path::new("/h"))),
            Some(PathBuf::from("/s/chat-tui/key"))
        );
        assert_eq!(
            default_path(Some(Path::new("relative")), Some(Path::new("/h"))),
            Some(PathBuf::from("/h/.local/state/chat-tui/key")),
            "a relative XDG_STATE_HOME is ignored, as the spec says"
        );
        assert_eq!(default_path(None, None), None);
    }
}
