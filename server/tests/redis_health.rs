//! Honest health with a hung Redis: a real `redis-server` frozen with
//! `kill -STOP` (it keeps its connections open and answers nothing) turns
//! `/healthz` to 503 within 3 s, handshakes do not wait for it, a message
//! sent meanwhile is refused visibly, and `kill -CONT` brings 200 back.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chat_protocol::{ErrorCode, ServerEvent};
use chat_server::Config;
use common::redis::RedisServer;
use common::*;
use tokio::time::Instant;

/// What the issue asks: 503 within 3 s of the hang (the layer pings every
/// second with a 1 s timeout), and 200 again as quickly once it answers.
const NOTICED_WITHIN: Duration = Duration::from_secs(3);

/// Polls `/healthz` until it answers `status`; returns how long it took.
async fn health_becomes(server: &TestServer, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let health = get(server.addr(), "/healthz").await;
        if health.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "/healthz still {} after {within:?}: {}",
            health.status,
            health.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_turns_healthz_503_and_back_and_holds_no_handshake() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = Config {
        redis: Some(Cluster::redis_config(&redis, &format!("h{}", redis.port()))),
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let (mut alice, _) = server.joined("hang", "alice").await;
    alice.say("before").await.unwrap();
    assert_eq!(next_chat(&mut alice).await.message, "before");
    assert_eq!(get(server.addr(), "/healthz").await.status, 200);

    redis.signal("STOP");
    let noticed = health_becomes(&server, 503, NOTICED_WITHIN).await;
    eprintln!("/healthz 503 {noticed:?} after kill -STOP");
    let health = get(server.addr(), "/healthz").await;
    assert!(health.body.contains("degraded"), "{}", health.body);

    // A handshake does not wait for the hung Redis.
    let started = Instant::now();
    let (_bob, welcome) = server.joined("hang", "bob").await;
    let handshake = started.elapsed();
    eprintln!("handshake during the hang: {handshake:?}");
    assert!(
        handshake < Duration::from_secs(1),
        "a handshake waited {handshake:?} for a hung Redis"
    );
    assert!(welcome.history.is_empty());

    // A message is refused visibly, within the command timeout.
    alice.say("during").await.unwrap();
    match next_event(&mut alice).await {
        ServerEvent::Error(error) => assert_eq!(error.code, ErrorCode::Unavailable),
        other => panic!("expected a refusal, got {other:?}"),
    }

    redis.signal("CONT");
    let back = health_becomes(&server, 200, NOTICED_WITHIN).await;
    eprintln!("/healthz 200 {back:?} after kill -CONT");
    alice.say("after").await.unwrap();
    loop {
        match next_event(&mut alice).await {
            ServerEvent::Chat(chat) => {
                assert_eq!(chat.message, "after");
                break;
            }
            ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

/// The Redis timeout this test sets (`--redis-timeout-ms`).
const TIMEOUT: Duration = Duration::from_millis(1500);
/// Room for scheduling on a busy machine on top of that limit.
const SLACK: Duration = Duration::from_secs(1);

/// The next chat message, skipping presence notices; a `gap` or anything
/// else fails the test.
async fn next_message(client: &mut chat_protocol::Client) -> String {
    loop {
        match next_event(client).await {
            ServerEvent::Chat(chat) => return chat.message,
            ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
            other => panic!("expected a chat message, got {other:?}"),
        }
    }
}

/// Before the probe notices a hang, a handshake that needs every Redis
/// step of a join (a new room: name claim, subscription, presence,
/// snapshot, topic) waits at most the configured timeout once, not once
/// per step; a message sent meanwhile is refused within that timeout, and
/// when Redis wakes up and reads the queued publish, the script sees its
/// deadline has passed and does nothing: the refused message is never
/// delivered late, nor stored, and ids go on without a hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_costs_a_join_one_timeout_and_a_refused_publish_never_arrives_late() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = Config {
        redis: Some(chat_server::RedisConfig {
            timeout: TIMEOUT,
            ..Cluster::redis_config(&redis, &format!("l{}", redis.port()))
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let (mut alice, _) = server.joined("late", "alice").await;
    let (mut bob, _) = server.joined("late", "bob").await;
    alice.say("before").await.unwrap();
    assert_eq!(next_message(&mut alice).await, "before");
    assert_eq!(next_message(&mut bob).await, "before");

    redis.signal("STOP");
    let started = Instant::now();
    let (_carol, welcome) = server.joined("fresh", "carol").await;
    let handshake = started.elapsed();
    eprintln!("a join into a new room right after kill -STOP: {handshake:?}");
    assert!(
        handshake <= TIMEOUT + SLACK,
        "a join waited {handshake:?} for a hung Redis (timeout {TIMEOUT:?})"
    );
    assert!(welcome.history.is_empty());

    let started = Instant::now();
    alice.say("during").await.unwrap();
    match next_event(&mut alice).await {
        ServerEvent::Error(error) => assert_eq!(error.code, ErrorCode::Unavailable),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let refused = started.elapsed();
    eprintln!("publish refused {refused:?} into the hang");
    assert!(refused <= TIMEOUT + SLACK, "refused after {refused:?}");

    // Redis now reads the publish queued on its socket, past its deadline.
    redis.signal("CONT");
    health_becomes(&server, 200, NOTICED_WITHIN).await;
    alice.say("after").await.unwrap();
    assert_eq!(next_message(&mut alice).await, "after");
    assert_eq!(next_message(&mut bob).await, "after");
    let (_dave, welcome) = server.joined("late", "dave").await;
    let stored: Vec<(u64, &str)> = welcome
        .history
        .iter()
        .map(|chat| (chat.id, chat.message.as_str()))
        .collect();
    assert_eq!(stored, [(1, "before"), (2, "after")]);
}
