//! Upgrading a single-Redis deployment from the release before history
//! became a stream: the test writes a room in the old key layout straight
//! into a real `redis-server` (`P:seq:ROOM`, `P:epoch:ROOM`, and the
//! history list `P:history:ROOM`, oldest first, as the old publish script
//! `RPUSH`ed it), then starts two new instances: joiners see the old
//! history and epoch, ids continue after the old ones on both instances,
//! and the old keys are gone once carried over.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use chat_protocol::ServerEvent;
use chat_server::Config;
use common::redis::RedisServer;
use common::*;

/// Runs `redis-cli` with `args` against `redis`; its output, trimmed.
fn cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A chat event as the old release stored it in its history list.
fn old_event(room: &str, id: u64, text: &str) -> String {
    serde_json::json!({
        "type": "chat", "message": text, "user": "old-timer", "room": room,
        "id": id, "ts": 1_700_000_000_000u64 + id,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_in_the_old_key_layout_keeps_its_history_epoch_and_ids() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let prefix = format!("m{}", redis.port());
    let room = "legacy";
    let (seq, epoch, history) = (
        format!("{prefix}:seq:{room}"),
        format!("{prefix}:epoch:{room}"),
        format!("{prefix}:history:{room}"),
    );
    // Ids 5..=7 are still in the old history (older ones were trimmed).
    cli(&redis, &["SET", &seq, "7"]);
    cli(&redis, &["SET", &epoch, "old-epoch.1"]);
    for (id, text) in [(5, "five"), (6, "six"), (7, "seven")] {
        cli(&redis, &["RPUSH", &history, &old_event(room, id, text)]);
    }

    let config = || Config {
        redis: Some(Cluster::redis_config(&redis, &prefix)),
        ..Config::default()
    };
    let first = TestServer::start_with(config()).await;
    let second = TestServer::start_with(config()).await;
    let (mut ann, welcome) = first.joined(room, "ann").await;
    let seen: Vec<(u64, &str)> = welcome
        .history
        .iter()
        .map(|chat| (chat.id, chat.message.as_str()))
        .collect();
    assert_eq!(seen, [(5, "five"), (6, "six"), (7, "seven")]);
    assert_eq!(welcome.last_id, 7);
    assert_eq!(welcome.epoch, "old-epoch.1", "clients' ids stay valid");
    let (mut bob, welcome) = second.joined(room, "bob").await;
    assert_eq!(welcome.last_id, 7);
    assert_eq!(welcome.history.len(), 3);

    ann.say("eight").await.unwrap();
    for client in [&mut ann, &mut bob] {
        loop {
            match next_event(client).await {
                ServerEvent::Chat(chat) => {
                    assert_eq!((chat.id, chat.message.as_str()), (8, "eight"));
                    break;
                }
                ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
                other => panic!("expected the message, got {other:?}"),
            }
        }
    }
    for old in [&seq, &epoch, &history] {
        assert_eq!(cli(&redis, &["EXISTS", old]), "0", "{old} carried over");
    }
    let log = format!("{prefix}:{{{prefix}:{room}}}:log");
    assert_eq!(cli(&redis, &["XLEN", &log]), "4");
}
