//! `--db PATH`: every room's messages in an embedded SQLite database (WAL),
//! so that history survives restarts, can be paged back to the first
//! message, and searched (FTS5).
//!
//! # How it fits
//!
//! The memory layer stays the source of ids and the live cache (the last
//! `--history` messages per room, for welcomes); the store is behind it:
//!
//! * [`Store::append`] queues a published message for the writer thread,
//!   without blocking and without waiting for the disk. It refuses (and the
//!   publish is refused visibly) when the store is failing (full or
//!   read-only disk) or its queue is full.
//! * One writer thread (`store/writer.rs`) owns the writing connection and
//!   commits whatever is queued in one transaction at a time (group
//!   commit), so the async workers never wait for SQLite; it runs at a
//!   lower priority than they do (nice 5 on Linux, see `writer.rs`). Indexing for
//!   search (FTS5, about four times the cost of storing a message) is done
//!   by the same thread once nothing has been queued for 50 ms (or when
//!   100,000 messages wait for it), so a burst is stored at full speed and
//!   indexed after it; search also scans the messages not indexed yet, so
//!   it always sees everything stored. The (room, id) index used for
//!   paging is filled the same way, in bulk (`message_ids`, see
//!   `writer.rs`), and sooner: after 50 ms idle or 16,384 messages behind.
//! * [`Store::set_topic`] queues a room's topic the same way; it is
//!   committed with the messages queued before it.
//! * [`Store::load_room`] gives a room's epoch, last id, topic and recent
//!   messages when the memory layer (re)creates it; it runs on the writer, after
//!   everything queued before it, so it never misses a queued message.
//! * [`Store::page`] answers paging and search with reader connections
//!   (`store/read.rs`) on the blocking pool, after the writer has committed
//!   everything queued before the request.
//!
//! # Durability contract
//!
//! Messages are delivered first and written a moment later (within about
//! 10 ms: the writer commits at most every 10 ms, and every commit is
//! fsynced, `synchronous = FULL`; within about 50 ms while more than 256
//! messages arrive per 10 ms, see `writer.rs`).
//! So:
//!
//! * a clean stop (SIGINT/SIGTERM) loses nothing, and ids continue exactly;
//! * `kill -9`, a crash or a power cut loses at most the messages not yet
//!   committed: those in the writer's queue and its current batch, at most
//!   [`QUEUE_MAX_MESSAGES`] + [`BATCH_MAX`] in total (the queue is also
//!   capped at [`QUEUE_MAX_BYTES`]), in practice the last 10 to 50
//!   milliseconds of traffic;
//! * ids are never reused: every room's `last_id` is committed together
//!   with its messages, and a start after an unclean stop raises every
//!   room's `last_id` by [`CRASH_ID_GAP`] (more than can have been handed
//!   out without being committed) before serving. A client that saw id N
//!   never receives a different message with id N or below; the room keeps
//!   its epoch, so clients resume with `?since=` as usual and see the lost
//!   ids as `missed`.
//!
//! # One server per file
//!
//! The crash floor and the ids rely on one writer: a server holds an
//! exclusive lock on `PATH.lock` (beside the database) from start to stop,
//! and a second server given the same `--db` refuses to start. The kernel
//! releases the lock when the process ends, however it ends, so a
//! `kill -9` leaves no stale lock behind. `sqlite3 PATH ".backup ..."`
//! does not take this lock and works while the server runs.

mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{ChatEvent, HistoryQuery, MessagePage, RoomName};
use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{info, warn};

/// The most messages waiting for the writer; past this, publishes are
/// refused (the disk cannot keep up).
pub const QUEUE_MAX_MESSAGES: usize = 16 * 1024;

/// The most bytes of messages waiting for the writer (text, name, room and
/// bookkeeping), whatever their count.
pub const QUEUE_MAX_BYTES: usize = 32 << 20;

/// The most messages the writer commits in one transaction.
pub const BATCH_MAX: usize = 4096;

/// How far every room's ids jump after an unclean stop: more than the
/// writer can hold uncommitted (a full queue plus a batch, with a batch to
/// spare for the moment a failing disk is noticed).
pub const CRASH_ID_GAP: u64 = (QUEUE_MAX_MESSAGES + 2 * BATCH_MAX) as u64;

/// Paging and search requests read at the same time at most; more wait.
const READERS: usize = 2;

/// How long a read waits for the writer to commit what was queued before
/// it; past that the store is too far behind to answer.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Where and how to keep messages.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database file (created if missing, with `-wal` and `-shm` files beside it).
    pub path: PathBuf,
    /// Remove messages older than this many days (`None`: keep them).
    pub retain_days: Option<u32>,
    /// Keep at most this many messages per room (`None`: all).
    pub retain_messages: Option<u64>,
    /// How often retention runs (it also runs at start).
    pub retention_interval: Duration,
    /// Caps the file at this many pages (SQLite's `max_page_count`), so
    /// that tests can fill the "disk"; `None` in production.
    pub max_pages: Option<u64>,
}

impl StoreConfig {
    /// Keep everything in `path`, checking retention every minute.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            retain_days: None,
            retain_messages: None,
            retention_interval: Duration::from_secs(60),
            max_pages: None,
        }
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("cannot use the database {path}: {source}; check the path and its permissions")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// Another server has the database open (it holds `lock`).
    #[error(
        "the database {path} is in use by another chat-server (it holds {lock}); stop that server first, or give this one another --db"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
        /// The lock file the other server holds.
        lock: PathBuf,
    },
    /// The lock file beside the database could not be created or locked.
    #[error(
        "cannot use the database {path}: cannot lock {lock}: {source}; check the path and its permissions"
    )]
    Lock {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the database writer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Writes are failing (a full or read-only disk); see the log.
    #[error("the message store cannot write ({reason})")]
    Failing {
        /// The last write error.
        reason: String,
    },
    /// More is queued than the disk has taken so far.
    #[error("the message store is behind (the disk cannot keep up)")]
    Behind,
    /// A read failed.
    #[error("reading the message store failed: {0}")]
    Read(#[source] rusqlite::Error),
    /// The writer has stopped (the server is shutting down).
    #[error("the message store has stopped")]
    Stopped,
}

/// What the memory layer needs to (re)create a room.
#[derive(Debug)]
pub struct LoadedRoom {
    /// The room's epoch, kept across restarts.
    pub epoch: String,
    /// The highest id handed out (or, after a crash, a floor above it).
    pub last_id: u64,
    /// The room's topic ("" when none).
    pub topic: String,
    /// The newest messages, oldest first.
    pub history: Vec<ChatEvent>,
}

/// A request to the writer thread.
#[derive(Debug)]
enum Command {
    /// Store this message (shared with the deliveries: queuing it copies
    /// nothing).
    Append(Arc<ChatEvent>),
    /// Store this room's topic.
    Topic { room: RoomName, topic: String },
    /// Commit what is queued, then load a room.
    Load {
        room: RoomName,
        history_len: usize,
        reply: oneshot::Sender<Result<LoadedRoom, StoreError>>,
    },
    /// Commit what is queued, mark the file cleanly closed, and stop.
    Close(oneshot::Sender<()>),
}

/// State shared by the handle and the writer thread.
#[derive(Debug)]
struct Shared {
    /// Bytes of messages queued or in the writer's uncommitted batch.
    queued_bytes: AtomicUsize,
    /// Messages queued so far (the writer's `committed` catches up with it).
    enqueued: AtomicU64,
    /// Messages committed so far.
    committed: watch::Sender<u64>,
    /// Why writes fail, while they do.
    failing: Mutex<Option<String>>,
    /// Whether `failing` holds a reason: the publish path reads this
    /// flag, not the lock.
    is_failing: AtomicBool,
}

impl Shared {
    /// Nothing queued, nothing committed, writes working.
    fn new() -> Self {
        Self {
            queued_bytes: AtomicUsize::new(0),
            enqueued: AtomicU64::new(0),
            committed: watch::channel(0).0,
            failing: Mutex::new(None),
            is_failing: AtomicBool::new(false),
        }
    }

    fn failing(&self) -> Option<String> {
        if !self.is_failing.load(Ordering::Acquire) {
            return None;
        }
        self.failing.lock().map_or_else(
            |poisoned| poisoned.into_inner().clone(),
            |reason| reason.clone(),
        )
    }

    fn set_failing(&self, reason: Option<String>) {
        let is_failing = reason.is_some();
        match self.failing.lock() {
            Ok(mut slot) => *slot = reason,
            Err(poisoned) => *poisoned.into_inner() = reason,
        }
        self.is_failing.store(is_failing, Ordering::Release);
    }
}

/// Retention as configured (what the memory layer's cache must not serve
/// either).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this many days are removed.
    pub days: Option<u32>,
    /// At most this many messages per room are kept.
    pub messages: Option<u64>,
}

impl Retention {
    /// Messages stamped before this time (unix ms) are expired; 0 when
    /// none expire.
    pub fn cutoff_ms(&self) -> u64 {
        self.days.map_or(0, |days| {
            chat_protocol::unix_millis().saturating_sub(u64::from(days) * 86_400_000)
        })
    }
}

/// The handle to the message store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: SyncSender<Command>,
    shared: Arc<Shared>,
    path: PathBuf,
    /// Idle reader connections, opened on demand.
    readers: Mutex<Vec<rusqlite::Connection>>,
    /// At most [`READERS`] reads at a time.
    read_permits: Semaphore,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The exclusive lock on `PATH.lock`, held until [`Store::close`].
    lock: Mutex<Option<std::fs::File>>,
    retention: Retention,
}

/// What one message costs in the queue, in bytes.
fn queued_size(event: &ChatEvent) -> usize {
    event.message.len() + event.user.len() + event.room.as_str().len() + 96
}

/// What one topic costs in the queue, in bytes.
fn topic_size(room: &RoomName, topic: &str) -> usize {
    topic.len() + room.as_str().len() + 96
}

/// The lock file of the database `path`: `PATH.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock that says a server has `path` open.
#[cfg(unix)]
fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    use rustix::fs::{FlockOperation, flock};
    let lock = lock_path(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| StoreError::Lock {
            path: path.to_owned(),
            lock: lock.clone(),
            source,
        })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::InUse {
            path: path.to_owned(),
            lock,
        }),
        Err(errno) => Err(StoreError::Lock {
            path: path.to_owned(),
            lock,
            source: errno.into(),
        }),
    }
}

/// Without `flock`, no lock is taken (only unix systems are supported for
/// `--db` sharing checks).
#[cfg(not(unix))]
fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    let lock = lock_path(path);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| StoreError::Lock {
            path: path.to_owned(),
            lock,
            source,
        })
}

impl Store {
    /// Opens (or creates) the database, recovers from an unclean stop, and
    /// starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the file cannot be opened or written (a
    /// read-only or full disk, a file that is not a database).
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: config.path.clone(),
            source,
        };
        let lock = lock_database(&config.path)?;
        let (conn, migrated) =
            schema::open_writer(&config.path, config.max_pages).map_err(open_error)?;
        if let Some(migrated) = migrated {
            info!(
                path = %config.path.display(),
                messages = migrated.messages,
                took_ms = migrated.took.as_millis(),
                "database upgraded: the messages table was rebuilt without its (room, id) unique index, which is now the separate message_ids table (one transaction; seqs, ids and the search index kept)"
            );
        }
        let recovered = writer::recover(&conn).map_err(open_error)?;
        if let Some(rooms) = recovered {
            warn!(
                path = %config.path.display(),
                rooms,
                gap = CRASH_ID_GAP,
                "the database was not closed cleanly (a crash or kill -9): messages of the last moments may be lost; every room's ids continue {CRASH_ID_GAP} higher so that none is reused"
            );
        }
        // What the last server stored since its last indexing step (after
        // a crash, up to a few tens of thousands of messages).
        let indexed = writer::index_all_ids(&conn).map_err(open_error)?;
        if indexed > 0 {
            info!(
                messages = indexed,
                "indexed the newest messages by room and id"
            );
        }
        let (commands, inbox) = std::sync::mpsc::sync_channel(QUEUE_MAX_MESSAGES);
        let shared = Arc::new(Shared::new());
        let writer = writer::Writer::new(conn, inbox, shared.clone(), config);
        let thread = std::thread::Builder::new()
            .name("chat-db-writer".into())
            .spawn(move || writer.run())
            .map_err(StoreError::Thread)?;
        info!(path = %config.path.display(), "message store open");
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                shared,
                path: config.path.clone(),
                readers: Mutex::new(Vec::new()),
                read_permits: Semaphore::new(READERS),
                writer: Mutex::new(Some(thread)),
                lock: Mutex::new(Some(lock)),
                retention: Retention {
                    days: config.retain_days,
                    messages: config.retain_messages,
                },
            }),
        })
    }

    /// Retention as configured.
    pub fn retention(&self) -> Retention {
        self.inner.retention
    }

    /// Queues `event` for writing. Never blocks.
    ///
    /// # Errors
    ///
    /// [`StoreError::Failing`] while writes fail, [`StoreError::Behind`]
    /// when the queue is full: the caller must not deliver the message.
    pub fn append(&self, event: &Arc<ChatEvent>) -> Result<(), StoreError> {
        self.enqueue(queued_size(event), Command::Append(Arc::clone(event)))
    }

    /// Queues `room`'s topic for writing (`""`: none). Never blocks.
    ///
    /// # Errors
    ///
    /// As [`Store::append`]: the caller must not announce the topic.
    pub fn set_topic(&self, room: &RoomName, topic: &str) -> Result<(), StoreError> {
        let command = Command::Topic {
            room: room.clone(),
            topic: topic.to_owned(),
        };
        self.enqueue(topic_size(room, topic), command)
    }

    /// Queues a write costing `size` bytes of the queue's budget.
    fn enqueue(&self, size: usize, command: Command) -> Result<(), StoreError> {
        let shared = &self.inner.shared;
        if let Some(reason) = shared.failing() {
            return Err(StoreError::Failing { reason });
        }
        if shared.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > QUEUE_MAX_BYTES {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(StoreError::Behind);
        }
        let counts = matches!(command, Command::Append(_));
        match self.inner.commands.try_send(command) {
            Ok(()) => {
                if counts {
                    shared.enqueued.fetch_add(1, Ordering::AcqRel);
                }
                Ok(())
            }
            Err(err) => {
                shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                Err(match err {
                    TrySendError::Full(_) => StoreError::Behind,
                    TrySendError::Disconnected(_) => StoreError::Stopped,
                })
            }
        }
    }

    /// The epoch, last id and newest `history_len` messages of `room`,
    /// after everything queued before this call is committed. Creates the
    /// room's row (durably) if it has none, so that its ids are covered by
    /// the crash floor from the first message on.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store cannot write or has stopped.
    pub async fn load_room(
        &self,
        room: &RoomName,
        history_len: usize,
    ) -> Result<LoadedRoom, StoreError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Load {
            room: room.clone(),
            history_len,
            reply,
        };
        self.inner
            .commands
            .try_send(command)
            .map_err(|err| match err {
                TrySendError::Full(_) => StoreError::Behind,
                TrySendError::Disconnected(_) => StoreError::Stopped,
            })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// A page of `room`'s stored messages as `query` asks, including every
    /// message queued before the call.
    ///
    /// # Errors
    ///
    /// [`StoreError::Behind`] when the writer does not catch up in time,
    /// [`StoreError::Read`] when SQLite fails.
    pub async fn page(
        &self,
        room: &RoomName,
        query: &HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        let shared = &self.inner.shared;
        // Read what was published before the request: wait for the writer
        // to commit it (unless writes are failing: then read what is there).
        let target = shared.enqueued.load(Ordering::Acquire);
        if shared.failing().is_none() {
            let mut committed = shared.committed.subscribe();
            let caught_up = committed.wait_for(|&done| done >= target);
            match tokio::time::timeout(CATCH_UP, caught_up).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(StoreError::Stopped),
                Err(_) => return Err(StoreError::Behind),
            }
        }
        let _permit = self
            .inner
            .read_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Stopped)?;
        let store = self.clone();
        let (room, query) = (room.clone(), query.clone());
        tokio::task::spawn_blocking(move || store.read(&room, &query))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// Runs one read on a pooled reader connection (blocking).
    fn read(&self, room: &RoomName, query: &HistoryQuery) -> Result<MessagePage, StoreError> {
        let pooled = self
            .inner
            .readers
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.inner.path).map_err(StoreError::Read)?,
        };
        let page = read::page(&conn, room, query).map_err(StoreError::Read);
        if let Ok(mut idle) = self.inner.readers.lock() {
            idle.push(conn);
        }
        page
    }

    /// Why writes fail, while they do (for `/healthz` and refusals).
    pub fn failing(&self) -> Option<String> {
        self.inner.shared.failing()
    }

    /// Commits what is queued, marks the file cleanly closed and stops the
    /// writer; waits for it. Later appends are refused.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        let commands = self.inner.commands.clone();
        // The queue may be full: wait for room on the blocking pool.
        let sent = tokio::task::spawn_blocking(move || commands.send(Command::Close(done)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            let _ = closed.await;
        }
        let thread = self
            .inner
            .writer
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The file is closed: another server may have it now.
        let lock = self.inner.lock.lock().ok().and_then(|mut slot| slot.take());
        drop(lock);
    }
}
