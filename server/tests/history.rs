//! Paging and search over real sockets: the typed `history` frame
//! (`Client::history`) and `GET /api/rooms/<room>/messages`, with their
//! refusals. The same checks run against the memory layer and, with
//! `--db`, against a real SQLite file in a temp dir (`store.rs` has what
//! only the store does: restarts, crashes, retention, a full disk).

mod common;

use chat_protocol::{
    ChatEvent, ClientMessage, ErrorCode, HistoryQuery, MessagePage, ServerEvent, close,
};
use chat_server::{Access, Config, Limits};
use common::*;
use tokio_tungstenite::tungstenite::Message;

/// No rate limit: the tests publish quickly.
fn config(history_len: usize) -> Config {
    Config {
        history_len,
        limits: Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// Publishes `texts` in `room` from one client and waits until it has
/// seen them all come back (so they are stored before anyone pages).
async fn publish(server: &TestServer, room: &str, texts: &[String]) -> Vec<ChatEvent> {
    let (client, _) = server.joined(room, "writer").await;
    let (sender, mut events) = client.split();
    let owned = texts.to_vec();
    let send = tokio::spawn(async move {
        for text in owned {
            sender.say(&text).await.expect("say");
        }
        sender
    });
    let mut seen = Vec::new();
    while seen.len() < texts.len() {
        match within(events.next())
            .await
            .expect("stream open")
            .expect("event")
        {
            ServerEvent::Chat(chat) => seen.push(chat),
            ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let sender = within(send).await.expect("sender");
    within(sender.close()).await.expect("close");
    seen
}

fn ids(events: &[ChatEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

/// The next event that is not a presence notice.
async fn next_answer(client: &mut chat_protocol::Client) -> ServerEvent {
    loop {
        match next_event(client).await {
            ServerEvent::Join(_) | ServerEvent::Leave(_) | ServerEvent::Nick(_) => {}
            other => return other,
        }
    }
}

async fn get_page(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let response = get(server.addr(), path).await;
    let body = serde_json::from_str(&response.body)
        .unwrap_or_else(|err| panic!("GET {path}: not JSON ({err}): {}", response.body));
    (response.status, body)
}

#[tokio::test]
async fn typed_clients_walk_back_through_everything_held_and_search_it() {
    walk_back_and_search(config(1000)).await;
}

/// The same walk over a real Redis: the layer reads the room's stream.
#[tokio::test]
async fn with_redis_typed_clients_walk_back_through_everything_held_and_search_it() {
    let Some(redis) = redis::RedisServer::start() else {
        return;
    };
    walk_back_and_search(Config {
        redis: Some(Cluster::redis_config(
            &redis,
            &format!("hp{}", redis.port()),
        )),
        ..config(1000)
    })
    .await;
}

async fn walk_back_and_search(config: Config) {
    let server = TestServer::start_with(config).await;
    let texts: Vec<String> = (1..=250)
        .map(|i| {
            if i == 7 {
                "the Needle, in an old message".to_owned()
            } else {
                format!("message {i}")
            }
        })
        .collect();
    let sent = publish(&server, "paging", &texts).await;
    let (mut reader, welcome) = server.joined("paging", "reader").await;
    assert_eq!(welcome.last_id, sent.last().expect("sent").id);

    // Walk back from the newest, 60 at a time: every message exactly once.
    let mut walked: Vec<ChatEvent> = Vec::new();
    let mut query = HistoryQuery::new().limit(60);
    for _ in 0..10 {
        let page = within(reader.history(query.clone())).await.expect("page");
        assert!(page.messages.len() <= 60);
        walked.splice(0..0, page.messages.iter().cloned());
        if !page.more {
            break;
        }
        query = HistoryQuery::new().before(page.messages[0].id).limit(60);
    }
    assert_eq!(ids(&walked), ids(&sent), "every message once, in order");
    assert_eq!(walked[6].message, "the Needle, in an old message");

    // Forward from an id.
    let page = within(reader.history(HistoryQuery::new().after(sent[9].id).limit(3)))
        .await
        .expect("page");
    assert_eq!(ids(&page.messages), ids(&sent[10..13]));
    assert!(page.more);

    // Search: word prefixes, any case, FTS syntax taken as plain words.
    for q in ["needle", "NEED", "\"needle\"", "needle*", "old NEEDLE"] {
        let search = chat_protocol::SearchWords::parse(q).expect("words");
        let page = within(reader.history(HistoryQuery::new().search(search)))
            .await
            .expect("search");
        assert_eq!(ids(&page.messages), [sent[6].id], "q={q:?}");
        assert!(!page.more);
    }
    let search = chat_protocol::SearchWords::parse("NEAR(needle").expect("words");
    let page = within(reader.history(HistoryQuery::new().search(search)))
        .await
        .expect("search");
    assert!(page.messages.is_empty(), "no message has the word near");

    // A bad request is refused with an error event, and the connection lives on.
    reader
        .send_raw(Message::text(r#"{"type":"history","before":"abc"}"#))
        .await
        .expect("send");
    match next_answer(&mut reader).await {
        ServerEvent::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidQuery);
            assert!(error.message.contains("before"), "{}", error.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let page = within(reader.history(HistoryQuery::new().limit(1)))
        .await
        .expect("still answering");
    assert_eq!(ids(&page.messages), [sent.last().expect("sent").id]);
}

#[tokio::test]
async fn the_answer_echoes_the_request() {
    let server = TestServer::start_with(config(100)).await;
    let sent = publish(&server, "echo", &["a".to_owned(), "b".to_owned()]).await;
    let (mut reader, _) = server.joined("echo", "reader").await;
    let request = ClientMessage::History(chat_protocol::HistoryRequest {
        query: HistoryQuery::new().before(sent[1].id).limit(5),
        reference: Some("older-1".into()),
    });
    reader.send(&request).await.expect("send");
    match next_answer(&mut reader).await {
        ServerEvent::History(answer) => {
            assert_eq!(answer.reference.as_deref(), Some("older-1"));
            assert_eq!(answer.before, Some(sent[1].id));
            assert_eq!(answer.room.as_str(), "echo");
            assert_eq!(ids(&answer.messages), [sent[0].id]);
            assert!(!answer.more);
            assert_eq!(answer.message, "1 earlier message");
        }
        other => panic!("expected history, got {other:?}"),
    }
}

#[tokio::test]
async fn the_http_api_pages_searches_and_refuses_bad_parameters_with_400() {
    let server = TestServer::start_with(config(100)).await;
    let texts: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    let sent = publish(&server, "api", &texts).await;

    let (status, body) = get_page(&server, "/api/rooms/api/messages?limit=5").await;
    assert_eq!(status, 200, "{body}");
    let page: MessagePage = serde_json::from_value(body).expect("a page");
    assert_eq!(ids(&page.messages), ids(&sent[25..]));
    assert!(page.more);

    let path = format!("/api/rooms/api/messages?before={}&limit=100000", sent[2].id);
    let (status, body) = get_page(&server, &path).await;
    assert_eq!(status, 200, "a huge limit is capped: {body}");
    let page: MessagePage = serde_json::from_value(body).expect("a page");
    assert_eq!(ids(&page.messages), ids(&sent[..2]));
    assert!(!page.more);

    let (status, body) = get_page(&server, "/api/rooms/api/messages?q=line%2017").await;
    assert_eq!(status, 200, "{body}");
    let page: MessagePage = serde_json::from_value(body).expect("a page");
    assert_eq!(ids(&page.messages), [sent[16].id]);

    // FTS syntax is only word separators.
    for q in [
        "%22line",
        "line*",
        "NEAR(line",
        "line%22%20OR%20%22x",
        "%2A%2Bline%29",
    ] {
        let (status, body) = get_page(&server, &format!("/api/rooms/api/messages?q={q}")).await;
        assert_eq!(status, 200, "q={q}: {body}");
    }
    let (_, body) = get_page(&server, "/api/rooms/api/messages?q=NEAR(line").await;
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(0));

    for (query, needle) in [
        ("before=abc", "before"),
        ("before=-1", "before"),
        ("after=1.5", "after"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("before=3&after=2", "below"),
        ("q=%22%2A%22", "no word"),
        ("q=a%20b%20c%20d%20e%20f%20g%20h%20i", "too many words"),
        ("limit=1&limit=2", "more than once"),
    ] {
        let (status, body) = get_page(&server, &format!("/api/rooms/api/messages?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let reason = body["error"].as_str().unwrap_or_default();
        assert!(reason.contains(needle), "{query}: {reason}");
    }
    let (status, body) = get_page(&server, "/api/rooms/no%20spaces/messages").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_page(&server, "/api/rooms/nobody-here/messages").await;
    assert_eq!((status, body["more"].as_bool()), (200, Some(false)));
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn the_api_needs_the_token_when_the_server_has_one() {
    let server = TestServer::start_with(Config {
        access: Access {
            tokens: vec!["s3cret-token".into()],
            ..Access::new()
        },
        ..config(100)
    })
    .await;
    let response = get(server.addr(), "/api/rooms/lobby/messages").await;
    assert_eq!(response.status, 401, "{}", response.body);
    let (status, body) = get_page(
        &server,
        "/api/rooms/lobby/messages?token=s3cret-token&limit=3",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_plain_client_asking_for_history_is_closed_with_the_reason() {
    let server = TestServer::start_with(config(100)).await;
    let mut plain = server.plain("plain-history").await;
    send_text(&mut plain, r#"{"type":"history","limit":5}"#).await;
    let (code, reason) = close_code(&mut plain).await;
    assert_eq!(code, close::INVALID_PAYLOAD);
    assert!(reason.contains("typed events"), "{reason}");
}
