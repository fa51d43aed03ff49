//! Zero loss for live clients across Redis trouble, over real processes:
//! a real `redis-server`, two server instances, a plain (tutorial) client
//! that never reconnects and a typed one, both on instance 2, while a
//! sender on instance 1 publishes at 100 messages/s and the test breaks
//! the instances' feeds:
//!
//! * every pub/sub connection killed by Redis (`CLIENT KILL TYPE pubsub`), twice;
//! * instance 2's line to Redis cut for 2 s, twice, by a TCP proxy;
//! * Redis killed and restarted empty (no persistence).
//!
//! Every message is counted: each one the sender sends gets an echo or an
//! error; every message Redis accepted (echoed to the sender) reaches both
//! live clients exactly once, in order, with the sender's ids; whatever a
//! client did not get is accounted for by a `gap` event (only possible
//! when Redis itself lost data).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chat_protocol::{ErrorCode, ServerEvent};
use chat_server::{Config, Limits};
use common::proxy::Proxy;
use common::redis::{Admin, RedisServer};
use common::traffic::run;
use common::*;

/// History longer than the messages of a run, so that every hole can be
/// filled from it.
const LONG_HISTORY: usize = 2000;

fn config(redis_url: String, prefix: &str, history_len: usize) -> Config {
    Config {
        history_len,
        limits: Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        },
        redis: Some(chat_server::RedisConfig {
            prefix: prefix.to_owned(),
            presence_ttl: Duration::from_secs(2),
            ..chat_server::RedisConfig::new(redis_url)
        }),
        ..Config::default()
    }
}

/// Two instances on one Redis, the second one through `proxy` if given.
async fn instances(
    redis: &RedisServer,
    proxy: Option<&Proxy>,
    history_len: usize,
) -> (TestServer, TestServer) {
    let prefix = format!("z{}", redis.port());
    let first = TestServer::start_with(config(redis.url(), &prefix, history_len)).await;
    let url = proxy.map_or_else(|| redis.url(), Proxy::redis_url);
    let second = TestServer::start_with(config(url, &prefix, history_len)).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_pubsub_connection_twice_loses_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, second) = instances(&redis, None, LONG_HISTORY).await;
    let port = redis.port();
    let disrupt = async move {
        for at in [1500, 2000] {
            tokio::time::sleep(Duration::from_millis(at)).await;
            let killed = RedisServer::command_on(port, "CLIENT KILL TYPE pubsub");
            eprintln!("CLIENT KILL TYPE pubsub: {killed:?}");
            assert!(
                killed.as_deref().is_some_and(|reply| reply != ":0"),
                "some pub/sub connection was killed: {killed:?}"
            );
        }
    };
    let run = run(&first, &second, "killed", disrupt).await;
    run.assert_nothing_lost("CLIENT KILL TYPE pubsub x2");
    assert_eq!(run.refused, 0, "the command connections were never touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_one_instances_line_to_redis_twice_loses_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
    let (first, second) = instances(&redis, Some(&proxy), LONG_HISTORY).await;
    let proxy = std::sync::Arc::new(proxy);
    let line = std::sync::Arc::clone(&proxy);
    let disrupt = async move {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            line.cut();
            tokio::time::sleep(Duration::from_secs(2)).await;
            line.restore();
        }
    };
    let run = run(&first, &second, "partition", disrupt).await;
    run.assert_nothing_lost("instance 2 cut off from Redis for 2 s x2");
    assert_eq!(run.refused, 0, "the sender's instance never lost Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gets_every_message_an_echo_or_an_error() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, second) = instances(&redis, None, LONG_HISTORY).await;
    let redis = std::sync::Arc::new(std::sync::Mutex::new(redis));
    let handle = std::sync::Arc::clone(&redis);
    let disrupt = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.lock().unwrap().kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        handle.lock().unwrap().restart();
    };
    let run = run(&first, &second, "restart", disrupt).await;
    eprintln!(
        "Redis restart: sent {}, echoed {}, refused {}, plain {}, typed {}, gaps {:?}",
        run.sent,
        run.echoed.len(),
        run.refused,
        run.plain.len(),
        run.typed.len(),
        run.gaps
    );
    assert_eq!(
        run.echoed.len() + run.refused,
        run.sent,
        "every message gets an echo or an error"
    );
    assert!(
        run.refused > 0,
        "messages sent while Redis was down are refused"
    );
    // Redis lost its data: what a client did not get must be a message it
    // was told it missed (one in flight when Redis died), never silence.
    let mut told: Vec<u64> = Vec::new();
    for (after, missed) in &run.gaps {
        told.extend(after + 1..=after + missed);
    }
    for (id, text) in &run.echoed {
        assert!(
            run.typed.contains(&(*id, text.clone())) || told.contains(id),
            "accepted message {id} ({text}) neither delivered nor reported missing"
        );
    }
    assert!(
        run.typed.windows(2).all(|w| w[0].0 < w[1].0),
        "the typed client's ids increase, across the restart too"
    );
    let texts: Vec<&String> = run.echoed.iter().map(|(_, text)| text).collect();
    let mut expected = texts.iter();
    for got in &run.plain {
        assert!(
            expected.any(|text| *text == got),
            "the plain client got {got} out of order or twice"
        );
    }
}

/// The narrowest window of a Redis crash, held open: Redis runs a publish
/// and answers the publisher, then goes away before this instance's pub/sub
/// connection gets the message, and comes back without its data. The
/// message is in no feed and no history any more, yet it is never silent:
/// its sender gets an error event instead of an echo, the room's typed
/// members a `gap` naming its id, and that id is not given to the next
/// message. (The window is held open by killing the pub/sub connection and
/// refusing new connections while the publish runs, then flushing Redis.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redis_lost_after_accepting_it_is_never_silent() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let prefix = format!("l{}", redis.port());
    let server = TestServer::start_with(config(redis.url(), &prefix, LONG_HISTORY)).await;
    let (mut watcher, _) = server.joined("lost", "watcher").await;
    let (mut sender, _) = server.joined("lost", "sender").await;
    sender.say("before").await.unwrap();
    let before = next_chat_of("sender", &mut sender).await.id;
    assert_eq!(next_chat_of("watcher", &mut watcher).await.id, before);

    // The pump loses its connection and cannot make a new one.
    let mut admin = Admin::connect(redis.port());
    assert_eq!(admin.command("CONFIG SET maxclients 1"), "+OK");
    let killed = admin.command("CLIENT KILL TYPE pubsub");
    assert_ne!(killed, ":0", "the pump's connection was killed");
    sender.say("lost").await.unwrap();
    // Redis runs the publish (on the command connection, still open)...
    let seq = format!("GET {prefix}:{{{prefix}:lost}}:seq");
    let lost = before + 1;
    within(async {
        while admin.command(&seq) != lost.to_string() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // ...then loses it, as a restart without persistence would.
    assert_eq!(admin.command("FLUSHALL"), "+OK");
    assert_eq!(admin.command("CONFIG SET maxclients 10000"), "+OK");

    let refusal = before_any_chat("sender", &mut sender, |event| match event {
        ServerEvent::Error(error) => Some(error),
        _ => None,
    })
    .await;
    eprintln!("the sender was told: {}", refusal.message);
    assert_eq!(refusal.code, ErrorCode::Unavailable);
    assert!(
        refusal.message.contains("may not have reached"),
        "the error says the message may be lost: {}",
        refusal.message
    );
    let gap = before_any_chat("watcher", &mut watcher, |event| match event {
        ServerEvent::Gap(gap) => Some(gap),
        _ => None,
    })
    .await;
    assert_eq!(
        (gap.after_id, gap.missed),
        (before, 1),
        "the gap names the lost id"
    );

    sender.say("after").await.unwrap();
    let after = next_chat_of("sender", &mut sender).await;
    assert_eq!(after.message, "after");
    assert!(
        after.id > lost,
        "the lost id {lost} is not reused: {after:?}"
    );
    assert_eq!(next_chat_of("watcher", &mut watcher).await.id, after.id);
}

/// The first event of `client` that `pick` takes, skipping others; a chat
/// message before it fails the test (it would be the lost one).
async fn before_any_chat<T>(
    who: &str,
    client: &mut chat_protocol::Client,
    pick: impl Fn(ServerEvent) -> Option<T>,
) -> T {
    within(async {
        loop {
            match next_event(client).await {
                ServerEvent::Chat(chat) => panic!("{who} got a chat message first: {chat:?}"),
                event => {
                    if let Some(picked) = pick(event) {
                        return picked;
                    }
                }
            }
        }
    })
    .await
}

/// A member who joins a room while its instance's pub/sub connection is
/// down (the join cannot wait for the room's subscription) gets every
/// message published after its welcome: the room's feed starts where the
/// welcome left off, not where the room stands once the subscription is
/// made; a plain client that joins then gets everything published after
/// it joined. (Instance 2's pub/sub connection is killed and new
/// connections refused while they join and two messages are sent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_who_join_while_pubsub_is_down_miss_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (first, second) = instances(&redis, None, LONG_HISTORY).await;
    // One room for a typed joiner, one for a plain one, each with a sender
    // on instance 1 (whose pub/sub connection then has two subscriptions);
    // instance 2's is the one with three.
    let _keepers = (
        second.joined("keep-a", "keeper").await,
        second.joined("keep-b", "keeper").await,
        second.joined("keep-c", "keeper").await,
    );
    let (mut typed_sender, _) = first.joined("late-typed", "sender").await;
    let (mut plain_sender, _) = first.joined("late-plain", "sender").await;
    for sender in [&mut typed_sender, &mut plain_sender] {
        sender.say("m1").await.unwrap();
        assert_eq!(next_chat_of("sender", sender).await.message, "m1");
    }

    let mut admin = Admin::connect(redis.port());
    assert_eq!(admin.command("CONFIG SET maxclients 1"), "+OK");
    let pubsub = admin
        .client_with("sub", "3")
        .expect("instance 2's pub/sub connection");
    assert_eq!(admin.command(&format!("CLIENT KILL ID {pubsub}")), ":1");
    within(async {
        while get(second.addr(), "/healthz").await.status == 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (mut joiner, welcome) = second.joined("late-typed", "joiner").await;
    assert_eq!(
        welcome.history.last().map(|m| m.message.as_str()),
        Some("m1")
    );
    // A plain client has no welcome: its place is read at the join.
    let mut plain = second.plain("late-plain").await;
    for sender in [&mut typed_sender, &mut plain_sender] {
        for text in ["m2", "m3"] {
            sender.say(text).await.unwrap();
            assert_eq!(next_chat_of("sender", sender).await.message, text);
        }
    }
    assert_eq!(admin.command("CONFIG SET maxclients 10000"), "+OK");
    for sender in [&mut typed_sender, &mut plain_sender] {
        sender.say("m4").await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_chat_of("joiner", &mut joiner).await.message);
    }
    assert_eq!(
        got,
        ["m2", "m3", "m4"],
        "the typed client missed nothing after its welcome"
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let frame: serde_json::Value = serde_json::from_str(&next_text(&mut plain).await).unwrap();
        got.push(frame["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        got,
        ["m2", "m3", "m4"],
        "the plain client missed nothing after it joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_longer_than_history_is_reported_to_typed_clients() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
    // History far shorter than what is published during the cut.
    let (first, second) = instances(&redis, Some(&proxy), 20).await;
    let proxy = std::sync::Arc::new(proxy);
    let line = std::sync::Arc::clone(&proxy);
    let disrupt = async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        line.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        line.restore();
    };
    let run = run(&first, &second, "short", disrupt).await;
    eprintln!(
        "short history: echoed {}, plain {}, typed {}, gaps {:?}",
        run.echoed.len(),
        run.plain.len(),
        run.typed.len(),
        run.gaps
    );
    assert_eq!(run.echoed.len() + run.refused, run.sent);
    assert!(!run.gaps.is_empty(), "the typed client is told");
    let mut told: Vec<u64> = Vec::new();
    for (after, missed) in &run.gaps {
        told.extend(after + 1..=after + missed);
    }
    let delivered: Vec<u64> = run.typed.iter().map(|(id, _)| *id).collect();
    let accepted: Vec<u64> = run.echoed.iter().map(|(id, _)| *id).collect();
    let mut accounted: Vec<u64> = delivered.iter().chain(&told).copied().collect();
    accounted.sort_unstable();
    assert_eq!(
        accounted, accepted,
        "every accepted message was delivered or reported missed, once"
    );
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "in order, the recovered part of the hole included"
    );
    assert!(
        run.plain.len() < run.echoed.len(),
        "the plain client missed what history lost (and cannot be told)"
    );
}

/// Calls of `EVALSHA` Redis has run so far (`INFO commandstats`): the
/// publish and catch-up scripts.
fn script_calls(redis: &RedisServer) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "INFO", "commandstats"])
        .output()
        .expect("run redis-cli (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Instance 2's pump may queue only 1 byte of live messages: every live
/// message reaching it is dropped from its inbound queue (as a burst
/// beyond the bound would be) and must come from history instead, the
/// last one too (nothing newer arrives to reveal that hole). Both live
/// clients still get every message once, in order; Redis ran a catch-up
/// script for about every message, which shows the live path was not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_past_its_byte_bound_drops_live_messages_and_reads_them_from_history() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let prefix = format!("b{}", redis.port());
    let first = TestServer::start_with(config(redis.url(), &prefix, LONG_HISTORY)).await;
    let mut bounded = config(redis.url(), &prefix, LONG_HISTORY);
    if let Some(redis) = bounded.redis.as_mut() {
        redis.pump_bytes = 1;
    }
    let second = TestServer::start_with(bounded).await;
    let before = script_calls(&redis);
    let run = run(&first, &second, "bounded", async {}).await;
    run.assert_nothing_lost("instance 2's pump bounded to 1 byte");
    let scripts = script_calls(&redis) - before;
    eprintln!(
        "scripts run: {scripts} for {} messages published",
        run.echoed.len()
    );
    assert!(
        scripts >= run.echoed.len() as u64 * 3 / 2,
        "instance 2 caught up from history ({scripts} scripts for {} publishes)",
        run.echoed.len()
    );
}
