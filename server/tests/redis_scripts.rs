//! What the Redis layer's scripts guarantee, over a real `redis-server`:
//!
//! * Upgrading a single-Redis deployment from the release before history
//!   became a stream: the test writes a room in the old key layout straight
//!   into Redis (`P:seq:ROOM`, `P:epoch:ROOM`, and the history list
//!   `P:history:ROOM`, oldest first, as the old publish script `RPUSH`ed
//!   it), then starts two new instances: joiners see the old history and
//!   epoch, ids continue after the old ones on both instances, and the old
//!   keys are gone once carried over.
//! * A publish runs once even when it reaches Redis twice: the cluster
//!   client resends a command whose connection broke before the reply came
//!   back (redis-rs retries I/O errors), although Redis may already have
//!   run it. The test captures the exact command the server sent (`MONITOR`)
//!   and sends it again, as such a resend would.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// One argument of a `MONITOR` line, unquoted: Redis writes each as
/// `"..."` with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` escapes.
fn monitor_args(line: &str) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut chars = line.bytes().skip_while(|&b| b != b']').skip(1).peekable();
    while let Some(b) = chars.next() {
        if b != b'"' {
            continue;
        }
        let mut arg = Vec::new();
        while let Some(b) = chars.next() {
            match b {
                b'"' => break,
                b'\\' => match chars.next() {
                    Some(b'n') => arg.push(b'\n'),
                    Some(b'r') => arg.push(b'\r'),
                    Some(b't') => arg.push(b'\t'),
                    Some(b'a') => arg.push(7),
                    Some(b'b') => arg.push(8),
                    Some(b'x') => {
                        let hex: Vec<u8> = chars.by_ref().take(2).collect();
                        let hex = std::str::from_utf8(&hex).unwrap();
                        arg.push(u8::from_str_radix(hex, 16).unwrap());
                    }
                    Some(other) => arg.push(other),
                    None => break,
                },
                other => arg.push(other),
            }
        }
        args.push(arg);
    }
    args
}

/// The command as RESP, ready to send on a raw connection.
fn resp(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_sent_to_redis_twice_is_published_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let prefix = format!("r{}", redis.port());
    let config = Config {
        redis: Some(Cluster::redis_config(&redis, &prefix)),
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let (mut ann, _) = server.joined("resent", "ann").await;
    let (mut bob, _) = server.joined("resent", "bob").await;

    let mut monitor = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "MONITOR"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run redis-cli MONITOR");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "OK");
    ann.say("once").await.unwrap();
    for client in [&mut ann, &mut bob] {
        assert_eq!(next_chat(client).await.message, "once");
    }
    // The publish: the EVALSHA whose arguments carry the message.
    let deadline = Instant::now() + Duration::from_secs(10);
    let publish = loop {
        assert!(Instant::now() < deadline, "no publish seen by MONITOR");
        let line = lines.next().unwrap().unwrap();
        if line.contains("\"EVALSHA\"") && line.contains("once") {
            break monitor_args(&line);
        }
    };
    let _ = monitor.kill();
    let _ = monitor.wait();

    // Sent again, byte for byte, as a resend after a lost reply would be.
    let reply = tokio::task::spawn_blocking({
        let command = resp(&publish);
        let port = redis.port();
        move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(&command).unwrap();
            let mut reply = [0u8; 256];
            let n = stream.read(&mut reply).unwrap();
            String::from_utf8_lossy(&reply[..n]).into_owned()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        reply.trim(),
        ":-2",
        "the resend is answered 'already published'"
    );
    ann.say("next").await.unwrap();
    for client in [&mut ann, &mut bob] {
        let chat = next_chat(client).await;
        assert_eq!(
            (chat.id, chat.message.as_str()),
            (2, "next"),
            "no second copy of 'once'"
        );
    }
    let log = format!("{prefix}:{{{prefix}:resent}}:log");
    assert_eq!(cli(&redis, &["XLEN", &log]), "2");
}
