//! The database file's layout and settings, and opening a connection.
//!
//! ```text
//! meta(key, value)                 'clean': '1' while no server has the file open;
//!                                  'fts_through': messages up to this seq are in messages_fts;
//!                                  'ids_through': messages up to this seq are in message_ids
//! rooms(rid, name, epoch, last_id, topic)
//!                                  one row per room ever joined or written;
//!                                  last_id >= every id handed out, minus what
//!                                  a crash can lose (see store.rs); topic ""
//!                                  when none (added to older files at start)
//! messages(seq, room, id, user, text, emote, ts)
//!                                  append-only (seq is the rowid): a commit
//!                                  writes the table's last pages only; no
//!                                  (room, id) index of its own
//! message_ids(room, id, seq)       (room, id) -> seq, WITHOUT ROWID: the index
//!                                  for paging, filled by the writer in bulk
//!                                  (as messages_fts); reads scan the rows past
//!                                  'ids_through' (a short rowid range) for the rest;
//!                                  a trigger removes the rows of deleted messages
//! messages_fts                     FTS5 over messages.text (external content),
//!                                  filled by the writer when it has time; a
//!                                  trigger removes indexed rows that are deleted
//! ```
//!
//! Files written before `message_ids` existed had `UNIQUE (room, id)` on
//! `messages` (an index written at every commit, one page per room
//! written to: most of a commit's cost with many rooms); [`open_writer`]
//! rebuilds their `messages` table without it, once, at start (see
//! [`Migrated`]).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for a lock held by another one (the writer
/// checkpointing while a reader starts) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `messages` table (also the target of the migration's rebuild).
const MESSAGES: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    room INTEGER NOT NULL REFERENCES rooms(rid),
    id INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    emote INTEGER NOT NULL,
    ts INTEGER NOT NULL
);
";

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
CREATE TABLE IF NOT EXISTS message_ids (
    room INTEGER NOT NULL,
    id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    text,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('fts_through', '0');
INSERT OR IGNORE INTO meta (key, value) VALUES ('ids_through', '0');
";

/// The triggers on `messages` (dropped with the old table by the
/// migration, so created after it).
const TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages
WHEN old.seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through') BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER IF NOT EXISTS message_ids_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_ids WHERE room = old.room AND id = old.id AND seq = old.seq;
END;
";

/// What [`open_writer`] did to a file of an older layout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Migrated {
    /// Messages copied into the rebuilt table (and into `message_ids`).
    pub(super) messages: u64,
    /// How long the rebuild took.
    pub(super) took: Duration,
}

/// Opens the writer's connection: creates the file and the tables if
/// needed, WAL mode, and `synchronous = FULL` (every commit reaches the
/// disk before the next batch starts, so a power cut loses no committed
/// batch, and the id floor after a crash holds; see store.rs).
///
/// Also brings a file of an older layout up to date: `Some` when the
/// `messages` table had to be rebuilt (see [`migrate`]).
pub(super) fn open_writer(
    path: &Path,
    max_pages: Option<u64>,
) -> rusqlite::Result<(Connection, Option<Migrated>)> {
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
    conn.execute_batch(MESSAGES)?;
    // Files made before topics were stored have no `topic` column.
    let has_topic: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('rooms') WHERE name = 'topic'",
        [],
        |row| row.get(0),
    )?;
    if !has_topic {
        conn.execute_batch("ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT ''")?;
    }
    let migrated = migrate(&conn)?;
    conn.execute_batch(TRIGGERS)?;
    Ok((conn, migrated))
}

/// Files written before `message_ids` existed: `messages` has
/// `UNIQUE (room, id)`, an index SQLite made for the constraint, which
/// `DROP INDEX` cannot remove. In one transaction: copy the (room, id) ->
/// seq pairs into `message_ids`, rebuild `messages` without the
/// constraint keeping every seq (`messages_fts` refers to rows by seq),
/// and put its triggers back. `None` when the file needs none of it.
fn migrate(conn: &Connection) -> rusqlite::Result<Option<Migrated>> {
    let old: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages' \
         AND name LIKE 'sqlite_autoindex_messages%'",
        [],
        |row| row.get(0),
    )?;
    if !old {
        return Ok(None);
    }
    let started = Instant::now();
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "INSERT OR IGNORE INTO message_ids (room, id, seq) SELECT room, id, seq FROM messages ORDER BY room, id;
         ALTER TABLE messages RENAME TO messages_unique;",
    )?;
    tx.execute_batch(MESSAGES)?;
    let messages = tx.execute(
        "INSERT INTO messages (seq, room, id, user, text, emote, ts) \
         SELECT seq, room, id, user, text, emote, ts FROM messages_unique ORDER BY seq",
        [],
    )?;
    tx.execute_batch(
        "DROP TABLE messages_unique;
         UPDATE meta SET value = (SELECT coalesce(max(seq), 0) FROM messages) WHERE key = 'ids_through';",
    )?;
    tx.execute_batch(TRIGGERS)?;
    tx.commit()?;
    Ok(Some(Migrated {
        messages: messages as u64,
        took: started.elapsed(),
    }))
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
