//! `--db`: real SQLite files in temp dirs. Restarts keep history and ids;
//! paging walks back over 10,000 messages exactly once; search finds old
//! words (FTS5) whatever syntax characters the query holds; retention
//! removes what it should (from the memory cache too); topics survive a
//! restart; a client resuming after a restart gets what it missed from the
//! store; a full "disk" refuses publishes visibly and `/healthz` says so. The crash test (the real binary, `kill -9`) is in
//! `store_crash.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use chat_protocol::{
    ChatEvent, Client, ClientMessage, ConnectOptions, ErrorCode, HistoryQuery, MessagePage,
    RoomName, ServerEvent, UserName, Welcome,
};
use chat_server::{Config, Limits, StoreConfig};
use common::*;

fn db_config(path: &Path, history_len: usize) -> Config {
    Config {
        history_len,
        store: Some(StoreConfig::new(path)),
        limits: Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// Publishes `count` messages (`text(i)`, i from 1) in `room` and waits
/// until they came back.
async fn publish(
    server: &TestServer,
    room: &str,
    count: usize,
    text: impl Fn(usize) -> String,
) -> Vec<ChatEvent> {
    let (client, _) = server.joined(room, "writer").await;
    let (sender, mut events) = client.split();
    let texts: Vec<String> = (1..=count).map(text).collect();
    let send = tokio::spawn(async move {
        for text in texts {
            sender.say(&text).await.expect("say");
        }
        sender
    });
    let mut seen = Vec::new();
    while seen.len() < count {
        match within(events.next()).await.expect("open").expect("event") {
            ServerEvent::Chat(chat) => seen.push(chat),
            ServerEvent::Error(error) => panic!("refused: {error:?}"),
            _ => {}
        }
    }
    let sender = within(send).await.expect("sender");
    within(sender.close()).await.expect("close");
    seen
}

async fn api_page(server: &TestServer, room: &str, query: &str) -> MessagePage {
    let path = format!("/api/rooms/{room}/messages?{query}");
    let response = get(server.addr(), &path).await;
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    serde_json::from_str(&response.body).expect("a page")
}

fn ids(events: &[ChatEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_restart_keeps_every_rooms_history_and_ids_continue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("chat.db");
    let server = TestServer::start_with(db_config(&db, 10)).await;
    let sent = publish(&server, "kept", 25, |i| format!("before restart {i}")).await;
    let other = publish(&server, "other", 3, |i| format!("other {i}")).await;
    let (_, welcome) = server.joined("kept", "first").await;
    server.shutdown().await;
    assert!(db.exists());

    let server = TestServer::start_with(db_config(&db, 10)).await;
    let (mut client, after) = server.joined("kept", "back").await;
    assert_eq!(after.epoch, welcome.epoch, "the room keeps its epoch");
    assert_eq!(after.last_id, sent.last().unwrap().id);
    assert_eq!(ids(&after.history), ids(&sent[15..]), "the cache reloads");
    client.say("after restart").await.expect("say");
    let chat = next_chat(&mut client).await;
    assert_eq!(chat.id, sent.last().unwrap().id + 1, "ids continue exactly");
    // Everything is still there, beyond the memory cache.
    let page = api_page(&server, "kept", "limit=500").await;
    assert_eq!(page.messages.len(), 26);
    assert_eq!(page.messages[0].message, "before restart 1");
    let page = api_page(&server, "other", "").await;
    assert_eq!(ids(&page.messages), ids(&other));
}

/// Joins `room` as a client that last saw `since` in `epoch`.
async fn resume(server: &TestServer, room: &str, since: u64, epoch: &str) -> Welcome {
    let options = ConnectOptions::new()
        .name(UserName::new("resumer").expect("name"))
        .since(Some(since))
        .epoch(Some(epoch.to_owned()));
    let room = RoomName::new(room).expect("room");
    let mut client = within(Client::connect(&server.url(), &room, &options))
        .await
        .expect("connect");
    match next_event(&mut client).await {
        ServerEvent::Welcome(welcome) => welcome,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_topic_and_what_a_resuming_client_missed_come_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("chat.db");
    let server = TestServer::start_with(db_config(&db, 10)).await;
    let (mut setter, welcome) = server.joined("kept", "setter").await;
    assert_eq!(welcome.topic.as_deref(), Some(""));
    let topic = "release on Friday".to_owned();
    setter
        .send(&ClientMessage::Topic {
            topic: topic.clone(),
        })
        .await
        .expect("send");
    loop {
        if let ServerEvent::Topic(set) = next_event(&mut setter).await {
            assert_eq!(set.topic, topic);
            break;
        }
    }
    let sent = publish(&server, "kept", 30, |i| format!("m{i}")).await;
    server.shutdown().await;

    let server = TestServer::start_with(db_config(&db, 10)).await;
    // Ids 6 to 30 were missed: the cache reloaded holds 21 to 30, the
    // store the rest.
    let back = resume(&server, "kept", sent[4].id, &welcome.epoch).await;
    assert_eq!(
        back.topic.as_deref(),
        Some(topic.as_str()),
        "the topic is kept"
    );
    assert_eq!(ids(&back.history), ids(&sent[5..]));
    assert_eq!(back.missed, 0);
    // Clearing is stored too.
    let (mut clearer, _) = server.joined("kept", "clearer").await;
    clearer
        .send(&ClientMessage::Topic {
            topic: String::new(),
        })
        .await
        .expect("send");
    while !matches!(next_event(&mut clearer).await, ServerEvent::Topic(_)) {}
    server.shutdown().await;
    let server = TestServer::start_with(db_config(&db, 10)).await;
    let (_, after_clearing) = server.joined("kept", "reader").await;
    assert_eq!(after_clearing.topic.as_deref(), Some(""));
}

#[tokio::test]
async fn paging_back_over_10000_messages_returns_each_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with(db_config(&dir.path().join("chat.db"), 100)).await;
    let sent = publish(&server, "big", 10_000, |i| format!("m{i}")).await;
    let mut walked: Vec<ChatEvent> = Vec::new();
    let mut query = "limit=500".to_owned();
    for _ in 0..30 {
        let page = api_page(&server, "big", &query).await;
        walked.splice(0..0, page.messages.iter().cloned());
        if !page.more {
            break;
        }
        query = format!("limit=500&before={}", page.messages[0].id);
    }
    assert_eq!(walked.len(), 10_000);
    assert_eq!(ids(&walked), ids(&sent), "each message once, oldest first");
    assert!(
        walked
            .iter()
            .zip(&sent)
            .all(|(a, b)| a.message == b.message)
    );
    // The typed frame walks the same way.
    let (mut client, _) = server.joined("big", "reader").await;
    let page = within(client.history(HistoryQuery::new().before(101).limit(500)))
        .await
        .expect("page");
    assert_eq!(ids(&page.messages), (1..=100).collect::<Vec<_>>());
    assert!(!page.more);
    let page = within(client.history(HistoryQuery::new().after(9_990).limit(500)))
        .await
        .expect("page");
    assert_eq!(ids(&page.messages), (9_991..=10_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn search_finds_a_word_in_an_old_message_and_never_reads_fts_syntax() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("chat.db");
    let server = TestServer::start_with(db_config(&db, 5)).await;
    let sent = publish(&server, "search", 300, |i| match i {
        3 => "a Zebra crossed, \"quoted\" NEAR(the road) *stars*".to_owned(),
        150 => "another zebras sighting".to_owned(),
        _ => format!("filler {i}"),
    })
    .await;
    // Twice: right away (the writer may not have indexed them yet: the
    // rest is scanned), and once the index has caught up (FTS5 alone).
    for round in ["maybe not indexed", "indexed"] {
        if round == "indexed" {
            wait_indexed(&db).await;
        }
        let page = api_page(&server, "search", "q=zebra").await;
        assert_eq!(ids(&page.messages), [sent[2].id, sent[149].id], "{round}");
        let path = format!("q=zebra&before={}", sent[149].id);
        let page = api_page(&server, "search", &path).await;
        assert_eq!(
            ids(&page.messages),
            [sent[2].id],
            "search and paging combine"
        );
        let page = api_page(&server, "search", "q=zebra&limit=1").await;
        assert_eq!((ids(&page.messages), page.more), (vec![sent[149].id], true));
        let page = api_page(&server, "search", "q=filler%202&limit=500").await;
        assert_eq!(page.messages.len(), 1 + 10 + 100, "{round}: 2, 2x, 2xx");
    }
    for q in [
        "%22zebra",
        "zebra%22",
        "zebra*",
        "*zebra",
        "NEAR(zebra",
        "near%28zebra%2C%20road%29",
        "zebra%20OR%20filler",
        "zebra%20AND%20NOT",
        "ZEBRA%20CROSSED",
        "quoted%22%20stars%2A",
        "%5Ezebra%20%2Bcrossed%20-road%20col%3Azebra",
    ] {
        let path = format!("/api/rooms/search/messages?{q}");
        let path = path.replacen('?', "?q=", 1);
        let response = get(server.addr(), &path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    // A word not in any message finds nothing; OR is a word, not an operator.
    let page = api_page(&server, "search", "q=zebra%20OR%20filler").await;
    assert!(page.messages.is_empty(), "{page:?}");
    let page = api_page(&server, "search", "q=NEAR(the").await;
    assert_eq!(ids(&page.messages), [sent[2].id]);
    let response = get(server.addr(), "/api/rooms/search/messages?q=%22%2A%28").await;
    assert_eq!(response.status, 400, "{}", response.body);
}

#[tokio::test]
async fn retention_removes_the_oldest_beyond_the_count_and_the_expired() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("chat.db");
    // Old messages: written, then aged in the file while no server runs.
    let server = TestServer::start_with(db_config(&db, 100)).await;
    let aged = publish(&server, "aged", 4, |i| format!("aged {i}")).await;
    server.shutdown().await;
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let three_days_ago = chat_protocol::unix_millis() - 3 * 86_400_000;
        conn.execute(
            "UPDATE messages SET ts = ?1 WHERE id <= 2",
            [i64::try_from(three_days_ago).unwrap()],
        )
        .expect("age");
    }
    let mut config = db_config(&db, 100);
    if let Some(store) = config.store.as_mut() {
        store.retain_days = Some(2);
        store.retain_messages = Some(5);
        store.retention_interval = Duration::from_millis(100);
    }
    let server = TestServer::start_with(config).await;
    let busy = publish(&server, "busy", 20, |i| format!("busy {i}")).await;
    let quiet = publish(&server, "quiet", 3, |i| format!("quiet {i}")).await;
    // Retention runs in the background: wait (bounded) for it.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let page = api_page(&server, "busy", "limit=100").await;
        if page.messages.len() == 5 {
            assert_eq!(
                ids(&page.messages),
                ids(&busy[15..]),
                "the newest five stay"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not run: {} messages",
            page.messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ids(&api_page(&server, "quiet", "").await.messages),
        ids(&quiet)
    );
    // The memory cache (--history 100) serves no more than the store keeps.
    let (_, welcome) = server.joined("busy", "late").await;
    assert_eq!(ids(&welcome.history), ids(&busy[15..]));
    let back = resume(&server, "busy", busy[1].id, &welcome.epoch).await;
    assert_eq!(ids(&back.history), ids(&busy[15..]));
    assert_eq!(back.missed, 13);
    let page = api_page(&server, "aged", "").await;
    assert_eq!(ids(&page.messages), ids(&aged[2..]), "the expired are gone");
    // Search no longer finds what retention removed.
    assert!(
        api_page(&server, "busy", "q=busy%203")
            .await
            .messages
            .is_empty()
    );
    let page = api_page(&server, "busy", "q=busy%202").await;
    assert_eq!(
        ids(&page.messages),
        [busy[19].id],
        "only busy 20 is left of 2*"
    );
}

#[tokio::test]
async fn a_full_database_refuses_publishes_visibly_and_healthz_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = db_config(&dir.path().join("chat.db"), 100);
    if let Some(store) = config.store.as_mut() {
        // A few hundred KiB of pages: what SQLite reports on a full disk.
        store.max_pages = Some(120);
    }
    let server = TestServer::start_with(config).await;
    assert_eq!(get(server.addr(), "/healthz").await.status, 200);
    let (mut client, _) = server.joined("full", "writer").await;
    let filler = "x".repeat(4000);
    let mut delivered = 0u64;
    let mut refused = None;
    for _ in 0..1000 {
        client.say(&filler).await.expect("say");
        match next_event_skipping_presence(&mut client).await {
            ServerEvent::Chat(_) => delivered += 1,
            ServerEvent::Error(error) => {
                refused = Some(error);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let refused = refused.expect("the store filled up and refused");
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        refused.message.contains("NOT delivered"),
        "{}",
        refused.message
    );
    assert!(refused.message.contains("full"), "{}", refused.message);
    assert!(delivered > 0);
    let health = get(server.addr(), "/healthz").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.contains("full"), "{}", health.body);
    // Another member sees nothing of the refused messages.
    let (mut other, _) = server.joined("full", "other").await;
    client.say("also refused").await.expect("say");
    assert_no_chat(&mut other).await;
    // Reads still work.
    let page = api_page(&server, "full", "limit=1").await;
    assert_eq!(page.messages.len(), 1);
}

async fn next_event_skipping_presence(client: &mut chat_protocol::Client) -> ServerEvent {
    loop {
        match next_event(client).await {
            ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_a_db,
        "this is not a database, just text that is long enough ".repeat(20),
    )
    .expect("write");
    for path in [dir.path().join("missing-dir").join("chat.db"), not_a_db] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let err = chat_server::spawn(listener, db_config(&path, 10))
            .await
            .expect_err("the server must not start");
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("check the path"),
            "{message}"
        );
    }
}

/// Waits (bounded) until the writer has indexed every stored message.
async fn wait_indexed(db: &Path) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(db, flags).expect("open");
        let (through, last): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through'), \
                        (SELECT coalesce(max(seq), 0) FROM messages)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("read");
        if through >= last {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not indexed: {through} < {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The layout of files written before `message_ids` existed (the commit
/// before it, f467130): `UNIQUE (room, id)` on `messages`.
const OLD_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE rooms (
    rid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    topic TEXT NOT NULL DEFAULT ''
);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    room INTEGER NOT NULL REFERENCES rooms(rid),
    id INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    emote INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    UNIQUE (room, id)
);
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO meta (key, value) VALUES ('fts_through', '0');
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through') BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
";

/// A file of the old layout (1,500 messages in "old", 300 in "other",
/// interleaved, the first 1,000 in the search index, closed cleanly) is
/// rebuilt at start; history, paging, search, ids and retention go on.
#[tokio::test]
async fn a_file_of_the_old_layout_is_upgraded_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("chat.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch(OLD_SCHEMA).expect("old schema");
        conn.execute_batch(
            "INSERT INTO rooms (rid, name, epoch, last_id, topic) VALUES
                 (1, 'old', 'e0ld.1', 1500, 'kept topic'), (2, 'other', 'e0th.1', 300, '');
             INSERT INTO meta (key, value) VALUES ('clean', '1');",
        )
        .expect("rooms");
        let mut insert = conn
            .prepare(
                "INSERT INTO messages (room, id, user, text, emote, ts) VALUES (?1, ?2, 'ann', ?3, 0, ?4)",
            )
            .expect("prepare");
        let now = i64::try_from(chat_protocol::unix_millis()).expect("a time");
        for id in 1..=1500i64 {
            let text = match id {
                7 => "an aardvark early".to_owned(),
                1400 => "an aardvark late".to_owned(),
                _ => format!("old message {id}"),
            };
            insert
                .execute(rusqlite::params![1, id, text, now])
                .expect("insert");
            if id % 5 == 0 {
                let text = format!("other message {}", id / 5);
                insert
                    .execute(rusqlite::params![2, id / 5, text, now])
                    .expect("insert");
            }
        }
        conn.execute_batch(
            "INSERT INTO messages_fts (rowid, text) SELECT seq, text FROM messages WHERE seq <= 1000;
             UPDATE meta SET value = '1000' WHERE key = 'fts_through';",
        )
        .expect("index");
    }

    let server = TestServer::start_with(db_config(&db, 10)).await;
    let (mut client, welcome) = server.joined("old", "back").await;
    assert_eq!((welcome.epoch.as_str(), welcome.last_id), ("e0ld.1", 1500));
    assert_eq!(welcome.topic.as_deref(), Some("kept topic"));
    assert_eq!(ids(&welcome.history), (1491..=1500).collect::<Vec<_>>());
    // Walking back over everything: each message once.
    let mut walked: Vec<ChatEvent> = Vec::new();
    let mut query = "limit=333".to_owned();
    loop {
        let page = api_page(&server, "old", &query).await;
        walked.splice(0..0, page.messages.iter().cloned());
        if !page.more {
            break;
        }
        query = format!("limit=333&before={}", page.messages[0].id);
    }
    assert_eq!(ids(&walked), (1..=1500).collect::<Vec<_>>());
    assert_eq!(walked[41].message, "old message 42");
    let page = api_page(&server, "other", "after=250&limit=500").await;
    assert_eq!(ids(&page.messages), (251..=300).collect::<Vec<_>>());
    // Search: one match indexed before the upgrade, one not.
    let page = api_page(&server, "old", "q=aardvark").await;
    assert_eq!(ids(&page.messages), [7, 1400]);
    // Ids continue.
    client.say("after the upgrade").await.expect("say");
    let chat = next_chat(&mut client).await;
    assert_eq!(chat.id, 1501);
    let page = api_page(&server, "old", "after=1499").await;
    assert_eq!(ids(&page.messages), [1500, 1501]);
    server.shutdown().await;

    // The file has the new layout, every message in message_ids, seqs kept.
    let conn = rusqlite::Connection::open(&db).expect("open");
    let (autoindex, indexed, messages, fts_ok): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema WHERE name LIKE 'sqlite_autoindex_messages%'), \
                    (SELECT count(*) FROM message_ids), (SELECT count(*) FROM messages), \
                    (SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'aardvark')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .expect("read");
    assert_eq!((autoindex, indexed, messages, fts_ok), (0, 1801, 1801, 2));
    drop(conn);

    // Retention on the upgraded file removes messages and their index rows.
    let mut config = db_config(&db, 10);
    config.store.as_mut().expect("store").retain_messages = Some(100);
    let server = TestServer::start_with(config).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let page = api_page(&server, "old", "limit=500").await;
        if page.messages.len() == 100 {
            assert_eq!(ids(&page.messages), (1402..=1501).collect::<Vec<_>>());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
