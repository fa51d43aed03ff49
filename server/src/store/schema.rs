//! The database file's layout and settings, and opening a connection.
//!
//! ```text
//! meta(key, value)                 'clean': '1' while no server has the file open;
//!                                  'fts_through': messages up to this seq are indexed
//! rooms(rid, name, epoch, last_id, topic)
//!                                  one row per room ever joined or written;
//!                                  last_id >= every id handed out, minus what
//!                                  a crash can lose (see store.rs); topic ""
//!                                  when none (added to older files at start)
//! messages(seq, room, id, user, text, emote, ts)
//! messages_fts                     FTS5 over messages.text (external content),
//!                                  filled by the writer when it has time; a
//!                                  trigger removes indexed rows that are deleted
//! ```

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for a lock held by another one (the writer
/// checkpointing while a reader starts) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    rid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    topic TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    room INTEGER NOT NULL REFERENCES rooms(rid),
    id INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    emote INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    UNIQUE (room, id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    text,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('fts_through', '0');
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages
WHEN old.seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through') BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
";

/// Opens the writer's connection: creates the file and the tables if
/// needed, WAL mode, and `synchronous = FULL` (every commit reaches the
/// disk before the next batch starts, so a power cut loses no committed
/// batch, and the id floor after a crash holds; see store.rs).
pub(super) fn open_writer(path: &Path, max_pages: Option<u64>) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database cannot use WAL mode (it reports {mode:?})"
            )),
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")?;
    if let Some(pages) = max_pages {
        // Only for tests of a full disk: SQLite then fails writes with
        // SQLITE_FULL exactly as on a full file system.
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    conn.execute_batch(SCHEMA)?;
    // Files made before topics were stored have no `topic` column.
    let has_topic: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('rooms') WHERE name = 'topic'",
        [],
        |row| row.get(0),
    )?;
    if !has_topic {
        conn.execute_batch("ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(conn)
}

/// Opens a reader's connection to a database the writer has set up.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}
