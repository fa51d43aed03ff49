//! Several instances sharing rooms through Redis, and the same bodies
//! against the in-memory layer, so the two layers cannot drift apart.
//!
//! Each Redis test starts its own `redis-server` on a free loopback port
//! (persistence off) and kills and restarts it where the test says so.

// The bodies shared by each layer's #[test] are plain functions: unwrap is the test idiom there too.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use chat_protocol::{ClientError, ConnectOptions, ErrorCode, ServerEvent};
use chat_server::Config;
use common::*;

on_both_layers!(
    every_member_on_every_instance_gets_each_message_once_in_one_order,
    history_and_members_are_the_same_from_every_instance,
    a_reconnecting_client_recovers_exactly_what_it_missed,
    a_gap_beyond_history_is_reported,
);

async fn every_member_on_every_instance_gets_each_message_once_in_one_order(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 3, Config::default()).await else {
        return;
    };
    let mut readers = Vec::new();
    for i in 0..9 {
        readers.push(
            cluster
                .server(i)
                .joined("lobby", &format!("reader{i}"))
                .await
                .0,
        );
    }
    let mut senders = Vec::new();
    for s in 0..3 {
        let client = cluster
            .server(s)
            .joined("lobby", &format!("sender{s}"))
            .await
            .0;
        let (tx, mut events) = client.split();
        tokio::spawn(async move { while events.next().await.is_some() {} });
        senders.push(tokio::spawn(async move {
            for n in 0..30 {
                tx.say(&format!("s{s}-{n}")).await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let mut seen_by_reader = Vec::new();
    for reader in &mut readers {
        let mut seen = Vec::new();
        while seen.len() < 90 {
            let chat = next_chat(reader).await;
            seen.push((chat.id, chat.message));
        }
        assert_no_chat(reader).await;
        seen_by_reader.push(seen);
    }
    for seen in &seen_by_reader {
        assert_eq!(
            seen, &seen_by_reader[0],
            "one order, the same ids, on every instance"
        );
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "ids strictly increase"
        );
    }
    let mut texts: Vec<&String> = seen_by_reader[0].iter().map(|(_, m)| m).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 90, "each message exactly once");
}

async fn history_and_members_are_the_same_from_every_instance(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, Config::default()).await else {
        return;
    };
    let (mut alice, _) = cluster.server(0).joined("shared", "alice").await;
    let (_bob, _) = cluster.server(1).joined("shared", "bob").await;
    for n in 0..5 {
        alice.say(&format!("m{n}")).await.unwrap();
        next_chat(&mut alice).await;
    }
    let (_carol, on_first) = cluster.server(0).joined("shared", "carol").await;
    let (_dave, on_second) = cluster.server(1).joined("shared", "dave").await;
    let texts = |w: &chat_protocol::Welcome| {
        w.history
            .iter()
            .map(|e| (e.id, e.message.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&on_first), texts(&on_second));
    assert_eq!(texts(&on_first).len(), 5);
    assert_eq!(on_second.members, vec!["alice", "bob", "carol", "dave"]);
    assert_eq!(on_first.epoch, on_second.epoch);
    for server in &cluster.servers {
        let list = room_list(server.addr()).await;
        assert_eq!(list.rooms.len(), 1);
        assert_eq!(
            (list.rooms[0].name.as_str(), list.rooms[0].members),
            ("shared", 4)
        );
    }
}

async fn a_reconnecting_client_recovers_exactly_what_it_missed(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, Config::default()).await else {
        return;
    };
    let (mut talker, _) = cluster.server(0).joined("resume", "talker").await;
    let (mut listener, welcome) = cluster.server(1).joined("resume", "listener").await;
    talker.say("before").await.unwrap();
    next_chat(&mut talker).await;
    let last = next_chat(&mut listener).await;
    assert_eq!(last.message, "before");
    listener.close().await.unwrap();
    for n in 0..4 {
        talker.say(&format!("missed {n}")).await.unwrap();
        // Published once the sender has its own echo.
        assert_eq!(next_chat(&mut talker).await.message, format!("missed {n}"));
    }
    let options = ConnectOptions::new()
        .name("listener".parse().unwrap())
        .since(Some(last.id))
        .epoch(Some(welcome.epoch.clone()));
    let mut back = within(chat_protocol::Client::connect(
        &cluster.server(1).url(),
        &"resume".parse().unwrap(),
        &options,
    ))
    .await
    .unwrap();
    let welcome = match next_event(&mut back).await {
        ServerEvent::Welcome(welcome) => welcome,
        other => panic!("{other:?}"),
    };
    let recovered: Vec<String> = welcome.history.iter().map(|e| e.message.clone()).collect();
    assert_eq!(recovered, ["missed 0", "missed 1", "missed 2", "missed 3"]);
    assert_eq!(welcome.missed, 0);
    talker.say("live").await.unwrap();
    let live = next_chat(&mut back).await;
    assert_eq!(
        live.message, "live",
        "no duplicate of the recovered ones before live messages"
    );
    assert!(live.id > welcome.history.last().unwrap().id);
}

async fn a_gap_beyond_history_is_reported(backend: Backend) {
    let config = Config {
        history_len: 3,
        ..Config::default()
    };
    let Some(cluster) = Cluster::start(backend, 2, config).await else {
        return;
    };
    let (mut talker, welcome) = cluster.server(0).joined("gap", "talker").await;
    for n in 0..10 {
        talker.say(&format!("m{n}")).await.unwrap();
        next_chat(&mut talker).await;
    }
    let options = ConnectOptions::new()
        .since(Some(2))
        .epoch(Some(welcome.epoch));
    let mut back = within(chat_protocol::Client::connect(
        &cluster.server(1).url(),
        &"gap".parse().unwrap(),
        &options,
    ))
    .await
    .unwrap();
    match next_event(&mut back).await {
        ServerEvent::Welcome(welcome) => {
            assert_eq!(
                welcome.history.iter().map(|e| e.id).collect::<Vec<_>>(),
                vec![8, 9, 10]
            );
            assert_eq!(welcome.missed, 5, "messages 3 to 7 are gone");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_holds_one_subscription_per_room_not_per_client() {
    let Some(cluster) = Cluster::start(Backend::Redis, 2, Config::default()).await else {
        return;
    };
    let redis = cluster.redis.as_ref().unwrap();
    let channel = redis::channel(&cluster.prefix, "busy");
    let mut clients = Vec::new();
    for i in 0..40 {
        clients.push(cluster.server(i).plain("busy").await);
    }
    assert_eq!(
        redis.subscribers(&channel),
        2,
        "one per instance with members"
    );
    let quiet = redis::channel(&cluster.prefix, "quiet");
    let only_one = cluster.server(0).plain("quiet").await;
    assert_eq!(
        redis.subscribers(&quiet),
        1,
        "only the instance with members subscribes"
    );
    drop(only_one);
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (redis.subscribers(&channel) > 0 || redis.subscribers(&quiet) > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        redis.subscribers(&channel),
        0,
        "unsubscribed once the room has no local members"
    );
    assert_eq!(redis.subscribers(&quiet), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_errors_clearly_and_traffic_resumes_within_two_seconds() {
    let Some(mut cluster) = Cluster::start(Backend::Redis, 2, Config::default()).await else {
        return;
    };
    let (mut alice, _) = cluster.server(0).joined("outage", "alice").await;
    let (mut bob, _) = cluster.server(1).joined("outage", "bob").await;
    alice.say("before").await.unwrap();
    assert_eq!(next_chat(&mut bob).await.message, "before");

    cluster.redis.as_mut().unwrap().kill();
    // A message that cannot be published is refused out loud, not dropped.
    let refused = loop {
        alice.say("during").await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), alice.next()).await {
            Ok(Some(Ok(ServerEvent::Error(error)))) => break error,
            Ok(Some(Ok(ServerEvent::Chat(chat)))) if chat.message == "during" => {
                // Published just before Redis went away; try again.
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected an error event, got {other:?}"),
        }
    };
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        refused.message.contains("NOT delivered"),
        "{}",
        refused.message
    );
    let health = get(cluster.server(0).addr(), "/healthz").await;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.contains("degraded"), "{}", health.body);

    cluster.redis.as_mut().unwrap().restart();
    let back_at = Instant::now();
    // Existing connections: traffic resumes by itself.
    let resumed = loop {
        assert!(
            back_at.elapsed() < Duration::from_secs(2),
            "traffic did not resume within 2 s"
        );
        alice.say("after").await.unwrap();
        match tokio::time::timeout(Duration::from_millis(300), next_chat_or_error(&mut bob)).await {
            Ok(Some(message)) if message == "after" => break back_at.elapsed(),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    eprintln!("traffic resumed {resumed:?} after Redis was back");
    // New connections too, on both instances.
    let (mut carol, _) = cluster.server(1).joined("outage", "carol").await;
    let (mut dave, _) = cluster.server(0).joined("outage", "dave").await;
    carol.say("new").await.unwrap();
    assert_eq!(next_chat(&mut dave).await.message, "new");
    assert!(back_at.elapsed() < Duration::from_secs(4));
    assert_eq!(get(cluster.server(1).addr(), "/healthz").await.status, 200);
}

/// The next chat text for `client`, skipping notices; `None` on an error event.
async fn next_chat_or_error(client: &mut chat_protocol::Client) -> Option<String> {
    loop {
        match client.next().await? {
            Ok(ServerEvent::Chat(chat)) => return Some(chat.message),
            Ok(ServerEvent::Error(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_members_expire_and_the_survivor_carries_on() {
    let Some(redis) = redis::RedisServer::start() else {
        return;
    };
    let prefix = format!("k{}", redis.port());
    let survivor_config = Config {
        redis: Some(Cluster::redis_config(&redis, &prefix)),
        ..Config::default()
    };
    let survivor = TestServer::start_with(survivor_config).await;
    // The victim is a real process, so that it can die by SIGKILL.
    let port = redis::free_port();
    let mut victim = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--redis",
                &redis.url(),
            ])
            .args(["--redis-prefix", &prefix, "--presence-ttl", "2"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let victim_url = format!("ws://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut doomed = loop {
        let options = ConnectOptions::new().name("doomed".parse().unwrap());
        match chat_protocol::Client::connect(
            &victim_url.parse().unwrap(),
            &"crash".parse().unwrap(),
            &options,
        )
        .await
        {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("victim did not start: {err}"),
        }
    };
    let (mut alive, welcome) = survivor.joined("crash", "alive").await;
    assert_eq!(welcome.members, vec!["alive", "doomed"]);
    doomed.say("from the victim").await.unwrap();
    assert_eq!(next_chat(&mut alive).await.message, "from the victim");

    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    let killed_at = Instant::now();
    let rooms = || async {
        let list = room_list(survivor.addr()).await;
        list.rooms.iter().map(|r| r.members).sum::<u64>()
    };
    while rooms().await > 1 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(8),
            "a dead instance's members never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the dead instance's members expired after {:?}",
        killed_at.elapsed()
    );
    let (_late, welcome) = survivor.joined("crash", "late").await;
    assert_eq!(welcome.members, vec!["alive", "late"]);
    assert_eq!(
        welcome.history.last().unwrap().message,
        "from the victim",
        "history survives the instance"
    );
    alive.say("still here").await.unwrap();
    assert_eq!(next_chat(&mut alive).await.message, "still here");
    drop(doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_is_bounded_in_bytes_too() {
    let Some(redis) = redis::RedisServer::start() else {
        return;
    };
    let prefix = format!("b{}", redis.port());
    let config = Config {
        redis: Some(chat_server::RedisConfig {
            history_bytes: 2000,
            ..Cluster::redis_config(&redis, &prefix)
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let (mut alice, _) = server.joined("big", "alice").await;
    let text = "x".repeat(500);
    for n in 0..20 {
        alice.say(&format!("{n} {text}")).await.unwrap();
        next_chat(&mut alice).await;
    }
    let (_bob, welcome) = server.joined("big", "bob").await;
    let ids: Vec<u64> = welcome.history.iter().map(|e| e.id).collect();
    // Each stored event is ~600 bytes: three fit in 2000.
    assert_eq!(ids, [18, 19, 20], "the oldest go first");
    let log = format!("{prefix}:{{{prefix}:big}}:log");
    assert_eq!(redis.command(&format!("XLEN {log}")).as_deref(), Some(":3"));
    let ttl: i64 = redis
        .command(&format!("TTL {log}"))
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        (1..=i64::try_from(chat_server::DEFAULT_ROOM_TTL.as_secs()).unwrap()).contains(&ttl),
        "idle rooms expire: TTL {ttl}"
    );
}

#[test]
fn a_bad_or_unreachable_redis_is_a_clear_error_at_start() {
    let port = redis::free_port();
    for (url, expected) in [
        ("not a url", "invalid Redis URL"),
        (
            &format!("redis://127.0.0.1:{port}/0") as &str,
            "cannot reach Redis",
        ),
    ] {
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--addr", "127.0.0.1:0", "--redis", url])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{url}");
        assert_eq!(output.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn healthz_names_the_layer() {
    let server = TestServer::start().await;
    let health = get(server.addr(), "/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        health.body.contains("\"layer\":\"memory\""),
        "{}",
        health.body
    );
    let _ = ClientError::NotConnected; // the protocol crate's error type is in scope for the bodies above
}

/// A child process that is killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
