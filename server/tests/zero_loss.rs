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

use chat_protocol::{ChatEvent, ServerEvent};
use chat_server::{Config, Limits};
use common::proxy::Proxy;
use common::redis::RedisServer;
use common::*;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Messages sent per run, at [`RATE`].
const MESSAGES: usize = 600;
/// The sender's pace (messages per second).
const RATE: u64 = 100;
/// The last message of a run, sent once every feed is back.
const END: &str = "end";

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

/// What one run saw.
#[derive(Debug)]
struct Run {
    /// Messages sent, [`END`] attempts included.
    sent: usize,
    /// The sender's own messages as echoed to it: what Redis accepted.
    echoed: Vec<(u64, String)>,
    /// Error events the sender got (messages refused).
    refused: usize,
    /// What the plain client read, in order.
    plain: Vec<String>,
    /// What the typed client read, in order.
    typed: Vec<(u64, String)>,
    /// Ids the typed client was told it missed.
    gaps: Vec<(u64, u64)>,
}

/// Sends [`MESSAGES`] from instance 1 at [`RATE`] while `disrupt` runs,
/// then [`END`] once both instances are healthy, and collects what the
/// sender and the two live clients on instance 2 saw.
async fn run<F>(first: &TestServer, second: &TestServer, room: &str, disrupt: F) -> Run
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut plain = second.plain(room).await;
    let (watcher, _) = second.joined(room, "watcher").await;
    let (sender, _) = first.joined(room, "sender").await;
    // Bounded by a deadline derived from the run's own length.
    let deadline = Instant::now() + Duration::from_secs(MESSAGES as u64 / RATE + 40);

    let plain_reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        loop {
            let frame = tokio::time::timeout_at(deadline, plain.next()).await;
            match frame {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    let message = value["message"].as_str().unwrap().to_owned();
                    let end = message == END;
                    texts.push(message);
                    if end {
                        return texts;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!(
                    "the plain client's stream broke: {other:?} after {} messages",
                    texts.len()
                ),
            }
        }
    });
    let typed_reader = tokio::spawn(async move {
        let mut watcher = watcher;
        let (mut chats, mut gaps) = (Vec::new(), Vec::new());
        loop {
            match tokio::time::timeout_at(deadline, watcher.next()).await {
                Ok(Some(Ok(ServerEvent::Chat(ChatEvent { id, message, .. })))) => {
                    let end = message == END;
                    chats.push((id, message));
                    if end {
                        return (chats, gaps);
                    }
                }
                Ok(Some(Ok(ServerEvent::Gap(gap)))) => gaps.push((gap.after_id, gap.missed)),
                Ok(Some(Ok(_))) => {}
                other => panic!(
                    "the typed client's stream broke: {other:?} after {} messages",
                    chats.len()
                ),
            }
        }
    });
    let (tx, mut events) = sender.split();
    let sender_reader = tokio::spawn(async move {
        let (mut echoed, mut refused) = (Vec::new(), 0usize);
        loop {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(Ok(ServerEvent::Chat(chat)))) => {
                    let end = chat.message == END;
                    echoed.push((chat.id, chat.message));
                    if end {
                        return (echoed, refused);
                    }
                }
                Ok(Some(Ok(ServerEvent::Error(_)))) => refused += 1,
                Ok(Some(Ok(_))) => {}
                other => panic!("the sender's stream broke: {other:?}"),
            }
        }
    });

    let disruption = tokio::spawn(disrupt);
    let mut pace = tokio::time::interval(Duration::from_millis(1000 / RATE));
    for n in 0..MESSAGES {
        pace.tick().await;
        tx.say(&format!("m{n}")).await.unwrap();
    }
    disruption.await.unwrap();
    // Every feed back: the last message.
    for server in [first, second] {
        while get(server.addr(), "/healthz").await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "an instance never became healthy again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut sent = MESSAGES;
    tx.say(END).await.unwrap();
    sent += 1;
    let (echoed, refused) = sender_reader.await.unwrap();
    let plain = plain_reader.await.unwrap();
    let (typed, gaps) = typed_reader.await.unwrap();
    Run {
        sent,
        echoed,
        refused,
        plain,
        typed,
        gaps,
    }
}

impl Run {
    /// Every message got an echo or an error; the live clients got what
    /// Redis accepted, once each, in order, with the same ids.
    fn assert_nothing_lost(&self, what: &str) {
        eprintln!(
            "{what}: sent {}, echoed {}, refused {}, plain client got {}, typed client got {}, gaps {:?}",
            self.sent,
            self.echoed.len(),
            self.refused,
            self.plain.len(),
            self.typed.len(),
            self.gaps
        );
        assert_eq!(
            self.echoed.len() + self.refused,
            self.sent,
            "{what}: every message gets an echo or an error"
        );
        assert!(
            self.echoed.windows(2).all(|w| w[0].0 < w[1].0),
            "{what}: ids increase"
        );
        assert_eq!(
            self.typed, self.echoed,
            "{what}: the typed client got every accepted message once, in order"
        );
        let texts: Vec<&String> = self.echoed.iter().map(|(_, text)| text).collect();
        let plain: Vec<&String> = self.plain.iter().collect();
        assert_eq!(
            plain, texts,
            "{what}: the plain client got every accepted message once, in order"
        );
        assert!(self.gaps.is_empty(), "{what}: nothing was missed");
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
