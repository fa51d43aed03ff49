//! The config file: `$XDG_CONFIG_HOME/chat-tui/config.toml` (by default
//! `~/.config/chat-tui/config.toml`), or `--config PATH`. Every key is
//! optional; flags and `CHAT_*` variables override it.
//!
//! ```toml
//! server = "wss://chat.example.org"
//! name = "zoe"
//! rooms = ["lobby", "dev"]
//! highlights = ["deploy", "release"]   # besides your name
//! time_format = "%H:%M"                # %H %M %S %I %p %Y %y %m %d %e %a %A %b %B %%
//! bell = true                          # ring on a highlight
//! notify = "auto"                      # desktop notifications: auto, osc777, osc9, off
//! log_dir = "~/chat-logs"              # one plain-text file per room
//! mouse = true
//! theme = "default"                    # or "mono"
//!
//! [colors]
//! status_bg = "blue"
//! marker = "#ff8000"
//! nick_colors = true
//! ```
//!
//! A mistake (a typo in a key, a value of the wrong type, a bad room name
//! or colour) is an error that names the file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::clock::TimeFormat;
use crate::theme::{self, Theme};

/// When desktop notifications are sent, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NotifyMode {
    /// OSC 9 or OSC 777, whichever the terminal is known to support
    /// (from `TERM_PROGRAM`, `TERM`); none when unknown.
    #[default]
    Auto,
    /// `ESC ] 777 ; notify ; title ; body` (foot, urxvt, Ghostty, WezTerm, VTE).
    Osc777,
    /// `ESC ] 9 ; body` (iTerm2, Windows Terminal, kitty, WezTerm).
    Osc9,
    /// No desktop notifications (the bell still rings unless turned off).
    Off,
}

/// The file as written. Unknown keys are errors, so typos are found.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `server`.
    pub server: Option<Spanned<String>>,
    /// `name`.
    pub name: Option<Spanned<String>>,
    /// `rooms`.
    pub rooms: Option<Vec<Spanned<String>>>,
    /// `highlights`.
    pub highlights: Option<Vec<Spanned<String>>>,
    /// `time_format`.
    pub time_format: Option<Spanned<String>>,
    /// `bell`.
    pub bell: Option<bool>,
    /// `notify`.
    pub notify: Option<NotifyMode>,
    /// `log_dir`.
    pub log_dir: Option<PathBuf>,
    /// `mouse`.
    pub mouse: Option<bool>,
    /// `token`.
    pub token: Option<String>,
    /// `theme`.
    pub theme: Option<Spanned<String>>,
    /// `[colors]`.
    pub colors: Option<BTreeMap<String, Spanned<toml::Value>>>,
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file exists but cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or of the wrong type.
    #[error("config file {}: {source}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's error, which names the line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A value is of the right type but not usable.
    #[error("config file {}, line {line}: {key}: {problem}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The key.
        key: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

/// A parsed config file and where it came from (for error lines).
#[derive(Debug)]
pub struct LoadedFile {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    source: String,
    /// What it says.
    pub config: FileConfig,
}

impl LoadedFile {
    /// An error about the value at `span`.
    pub fn error<T>(&self, value: &Spanned<T>, key: &str, problem: impl Into<String>) -> FileError {
        let line = self.source[..value.span().start.min(self.source.len())]
            .matches('\n')
            .count()
            + 1;
        FileError::Value {
            path: self.path.clone(),
            line,
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    /// The time format, checked.
    pub fn time_format(&self) -> Result<Option<TimeFormat>, FileError> {
        let Some(pattern) = &self.config.time_format else {
            return Ok(None);
        };
        TimeFormat::parse(pattern.get_ref())
            .map(Some)
            .map_err(|err| self.error(pattern, "time_format", err.to_string()))
    }

    /// The theme with `[colors]` applied, checked.
    pub fn theme(&self) -> Result<Theme, FileError> {
        let mut theme = match &self.config.theme {
            None => Theme::default(),
            Some(name) => match name.get_ref().as_str() {
                "default" => Theme::default(),
                "mono" => Theme::mono(),
                other => {
                    return Err(self.error(
                        name,
                        "theme",
                        format!("unknown theme {other:?}; use \"default\" or \"mono\""),
                    ));
                }
            },
        };
        for (key, value) in self.config.colors.iter().flatten() {
            let key_name = format!("colors.{key}");
            match (key.as_str(), value.get_ref()) {
                ("nick_colors", toml::Value::Boolean(on)) => theme.nick_colors = *on,
                ("nick_colors", _) => {
                    return Err(self.error(value, &key_name, "must be true or false"));
                }
                (slot, toml::Value::String(text)) => {
                    let color =
                        theme::parse_color(text).map_err(|p| self.error(value, &key_name, p))?;
                    let Some(target) = theme.slot_mut(slot) else {
                        return Err(self.error(
                            value,
                            &key_name,
                            format!("unknown colour slot; known: {}, nick_colors", theme::SLOTS),
                        ));
                    };
                    *target = color;
                }
                _ => return Err(self.error(value, &key_name, "must be a colour in quotes")),
            }
        }
        Ok(theme)
    }
}

/// Where the config file is by default: `$XDG_CONFIG_HOME/chat-tui/config.toml`,
/// else `$HOME/.config/chat-tui/config.toml`.
pub fn default_path(config_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match config_home.filter(|p| p.is_absolute()) {
        Some(dir) => dir.to_path_buf(),
        None => home?.join(".config"),
    };
    Some(base.join("chat-tui").join("config.toml"))
}

/// Reads and parses `path`. A missing file is `Ok(None)` when `optional`
/// (the default path), an error otherwise (a path given with `--config`).
///
/// # Errors
///
/// [`FileError`] when the file cannot be read or is not a valid config.
pub fn load(path: &Path, optional: bool) -> Result<Option<LoadedFile>, FileError> {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(err) if optional && err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let config = toml::from_str(&source).map_err(|source| FileError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(LoadedFile {
        path: path.to_path_buf(),
        source,
        config,
    }))
}

/// `~/x` as `$HOME/x`, for paths written in the file.
pub fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}
