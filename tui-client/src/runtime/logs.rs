//! Room logs on disk (`--log-dir`), as WeeChat's logger keeps them: one
//! plain-text file per room, `DIR/HOST_PORT/ROOM.log`, appended, one line
//! per message (`time TAB nick TAB text`, already made safe by the app).
//!
//! The writing happens on a thread of its own, so that a slow disk never
//! holds up the UI; files stay open while the client runs.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use chat_protocol::{RoomName, ServerUrl};

/// Sends lines to the writer thread.
#[derive(Debug)]
pub struct Logger {
    lines: mpsc::Sender<(RoomName, String)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The directory for `server` under `dir`: `host_port`, with anything but
/// letters, digits, `.` and `-` made `_`.
pub fn server_dir(dir: &Path, server: &ServerUrl) -> PathBuf {
    let name: String = server
        .origin()
        .split("://")
        .nth(1)
        .unwrap_or("server")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(name)
}

impl Logger {
    /// A logger writing under `dir` (created when the first line comes).
    pub fn start(dir: PathBuf) -> Self {
        let (lines, inbox) = mpsc::channel::<(RoomName, String)>();
        let thread = std::thread::Builder::new()
            .name("chat-tui-logs".into())
            .spawn(move || write_all(&dir, &inbox))
            .ok();
        Self { lines, thread }
    }

    /// Appends `line` to `room`'s log.
    pub fn log(&self, room: RoomName, line: String) {
        let _ = self.lines.send((room, line));
    }

    /// Writes what is queued and stops the thread.
    pub fn finish(mut self) {
        let (closed, _) = mpsc::channel();
        // Dropping the last sender ends the thread's loop.
        self.lines = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_all(dir: &Path, inbox: &mpsc::Receiver<(RoomName, String)>) {
    let mut files: HashMap<RoomName, std::fs::File> = HashMap::new();
    let mut warned = false;
    while let Ok((room, line)) = inbox.recv() {
        if !files.contains_key(&room) {
            let path = dir.join(format!("{room}.log"));
            let opened = std::fs::create_dir_all(dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            });
            match opened {
                Ok(file) => {
                    files.insert(room.clone(), file);
                }
                Err(err) => {
                    if !warned {
                        tracing::warn!(path = %path.display(), %err, "cannot open the room log");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        if let Some(file) = files.get_mut(&room) {
            if let Err(err) = writeln!(file, "{line}") {
                tracing::warn!(%room, %err, "cannot write the room log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_one_file_per_room() {
        let dir = std::env::temp_dir().join(format!("chat-tui-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server: ServerUrl = "ws://127.0.0.1:8000".parse().unwrap();
        let where_ = server_dir(&dir, &server);
        assert!(where_.ends_with("127.0.0.1_8000"), "{}", where_.display());
        for _ in 0..2 {
            let logger = Logger::start(where_.clone());
            logger.log(RoomName::new("lobby").unwrap(), "a\tb\tc".into());
            logger.log(RoomName::new("dev").unwrap(), "x".into());
            logger.finish();
        }
        let lobby = std::fs::read_to_string(where_.join("lobby.log")).unwrap();
        assert_eq!(lobby, "a\tb\tc\na\tb\tc\n", "appended, never truncated");
        assert_eq!(
            std::fs::read_to_string(where_.join("dev.log")).unwrap(),
            "x\nx\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
