//! Two instances sharing rooms through a real Redis Cluster (3 masters, 3
//! replicas, started by the test on loopback), in one test so that the
//! cluster is started once:
//!
//! 1. 50 rooms with members on both instances: every member gets every
//!    message once, in order, with the same ids; the rooms' keys are
//!    spread over every master; `PUBSUB SHARDNUMSUB` shows one
//!    subscription per room per instance with members there;
//! 2. every pub/sub connection killed on every master, twice, while
//!    instance 1 publishes at 100 messages/s: nothing lost;
//! 3. a busy room's slot moved to another master mid-traffic (resharding):
//!    nothing lost; and a slot stopped halfway (its name owner keys moved,
//!    its presence not) through two heartbeats, a join and a topic: every
//!    write lands on one side only, so the rest moves with a plain
//!    MIGRATE, and the room works after;
//! 4. the master holding a busy room SIGKILLed and its replica taking
//!    over, mid-traffic: every message is echoed or refused, and every
//!    accepted one reaches both live clients (plain and typed) exactly
//!    once, in order, without them reconnecting; meanwhile `/healthz` is
//!    503 and names the dead master, and 200 once the replica took over.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{Client, ServerEvent};
use chat_server::{Config, Limits, RedisConfig};
use common::redis_cluster::RedisCluster;
use common::traffic::run;
use common::*;

const PREFIX: &str = "c";

fn config(cluster: &RedisCluster) -> Config {
    Config {
        history_len: 2000,
        limits: Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        },
        redis: Some(RedisConfig {
            prefix: PREFIX.to_owned(),
            presence_ttl: Duration::from_secs(2),
            ..RedisConfig::cluster(cluster.seeds())
        }),
        ..Config::default()
    }
}

/// The room's channel, as `layer/redis/keys.rs` names it.
fn channel(room: &str) -> String {
    common::redis::channel(PREFIX, room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_rooms_loses_nothing_and_survives_a_failover() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let first = TestServer::start_with(config(&cluster)).await;
    let second = TestServer::start_with(config(&cluster)).await;
    let health = get(first.addr(), "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("redis-cluster"), "{}", health.body);

    fifty_rooms(&cluster, &first, &second).await;

    // 2. Every pub/sub connection of every master killed, twice.
    let masters: Vec<u16> = cluster.masters().iter().map(|(port, _)| *port).collect();
    let disrupt = async move {
        for at in [1500, 2000] {
            tokio::time::sleep(Duration::from_millis(at)).await;
            for &port in &masters {
                common::redis::RedisServer::command_on(port, "CLIENT KILL TYPE pubsub");
            }
        }
    };
    let killed = run(&first, &second, "killed", disrupt).await;
    killed.assert_nothing_lost("cluster: CLIENT KILL TYPE pubsub on every master x2");
    assert_eq!(killed.refused, 0);

    // 3. A busy room's slot moves to another master mid-traffic (Redis
    //    drops the room's sharded subscriptions; writes meet ASK/MOVED).
    let cluster = Arc::new(Mutex::new(cluster));
    let handle = Arc::clone(&cluster);
    let disrupt = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let moved = tokio::task::spawn_blocking(move || {
            handle.lock().unwrap().move_slot_of(&channel("resharded"))
        })
        .await
        .unwrap();
        eprintln!("the room's slot moved to the master on port {moved}");
    };
    let resharded = run(&first, &second, "resharded", disrupt).await;
    resharded.assert_nothing_lost("cluster: the room's slot moved to another master");
    let cluster = Arc::try_unwrap(cluster)
        .ok()
        .expect("one owner")
        .into_inner()
        .unwrap();

    // 3b. A slot stopped halfway while the instances write to it.
    halfway_moved_slot(&cluster, &first, &second).await;

    // 3c. A slot handed to its new master on the old one first: for a
    //     second the masters disagree about its owner.
    reordered_handover(&cluster, &first, &second).await;

    // 4. The master of a busy room dies; its replica takes over.
    let victim = cluster.master_of(&channel("failover"));
    let cluster = Arc::new(Mutex::new(cluster));
    let handle = Arc::clone(&cluster);
    let health_of = first.addr();
    let disrupt = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("SIGKILL to the master on port {victim}");
        handle.lock().unwrap().kill(victim);
        // /healthz names the master that is gone, until its replica is
        // promoted and answers in its place.
        let start = tokio::time::Instant::now();
        loop {
            let health = get(health_of, "/healthz").await;
            // The pump's per-master report, not merely a failed command's text.
            let named = format!("masters unwell: 127.0.0.1:{victim}: ");
            if health.status == 503 && health.body.contains(&named) {
                eprintln!(
                    "/healthz {:?} after the kill: {}",
                    start.elapsed(),
                    health.body
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "/healthz does not name the dead master {victim}: {} {}",
                health.status,
                health.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let failover = run(&first, &second, "failover", disrupt).await;
    failover.assert_nothing_lost("cluster: master SIGKILLed, replica promoted");
    let new_master = cluster.lock().unwrap().master_of(&channel("failover"));
    assert_ne!(new_master, victim, "a replica took over");
    let health = get(first.addr(), "/healthz").await;
    assert_eq!(health.status, 200, "healthy again: {}", health.body);
}

/// Part 1: 50 rooms over both instances and every master.
async fn fifty_rooms(cluster: &RedisCluster, first: &TestServer, second: &TestServer) {
    let rooms: Vec<String> = (0..50).map(|i| format!("room{i}")).collect();
    let mut members = Vec::new();
    for room in &rooms {
        let (a, _) = first.joined(room, "a").await;
        let (b, _) = second.joined(room, "b").await;
        members.push((a, b));
    }
    let (_solo, _) = first.joined("solo", "alone").await;
    for (i, (a, _)) in members.iter_mut().enumerate() {
        for k in 0..3 {
            a.say(&format!("{i}-{k}")).await.unwrap();
        }
    }
    for (i, (a, b)) in members.iter_mut().enumerate() {
        let mut seen = Vec::new();
        for client in [a, b] {
            let mut got = Vec::new();
            for _ in 0..3 {
                let chat = next_chat(client).await;
                got.push((chat.id, chat.message));
            }
            assert_no_chat(client).await;
            seen.push(got);
        }
        let texts: Vec<&str> = seen[0].iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            texts,
            [format!("{i}-0"), format!("{i}-1"), format!("{i}-2")]
        );
        assert_eq!(
            seen[0], seen[1],
            "room {i}: the same messages and ids on both instances"
        );
        assert!(seen[0].windows(2).all(|w| w[0].0 < w[1].0));
    }

    // Keys on every master.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let mut rooms_per_master = HashMap::new();
    for room in &rooms {
        *rooms_per_master
            .entry(cluster.master_of(&channel(room)))
            .or_insert(0) += 1;
    }
    for (port, _) in &masters {
        let keys: u64 = cluster.cli(*port, &["DBSIZE"]).trim().parse().unwrap();
        assert!(
            keys > 0 && rooms_per_master.get(port).copied().unwrap_or(0) > 0,
            "master {port} holds rooms ({keys} keys; rooms per master {rooms_per_master:?})"
        );
    }
    eprintln!("rooms per master: {rooms_per_master:?}");

    // One sharded subscription per room per instance with members there.
    let mut subscriptions: HashMap<String, u64> = HashMap::new();
    let mut command = vec!["PUBSUB", "SHARDNUMSUB"];
    let channels: Vec<String> = rooms
        .iter()
        .map(|room| channel(room))
        .chain([channel("solo")])
        .collect();
    command.extend(channels.iter().map(String::as_str));
    for (port, _) in &masters {
        let reply = cluster.cli(*port, &command);
        let lines: Vec<&str> = reply.lines().collect();
        for pair in lines.chunks_exact(2) {
            *subscriptions.entry(pair[0].to_owned()).or_default() +=
                pair[1].trim().parse::<u64>().unwrap();
        }
    }
    for room in &rooms {
        assert_eq!(subscriptions[&channel(room)], 2, "{room}: one per instance");
    }
    assert_eq!(
        subscriptions[&channel("solo")],
        1,
        "only the instance with members"
    );

    // The room list, without KEYS or a scan of every node.
    let list = room_list(second.addr()).await;
    assert_eq!(list.rooms.len(), 51);
    assert!(list.rooms.iter().filter(|r| r.members == 2).count() == 50);
    drop(members);
}

/// Part 3b: the room's name owner keys are on the importing master, its
/// presence set still on the migrating one, for longer than a heartbeat.
/// A write that touched both (a heartbeat pipeline, resent whole after
/// its ASK) used to create the presence set on the importing side too, and
/// the rest of the slot could never move: MIGRATE answered BUSYKEY. The
/// instances' writes are single-slot scripts now, which Redis runs on one
/// side or refuses with TRYAGAIN.
async fn halfway_moved_slot(cluster: &RedisCluster, first: &TestServer, second: &TestServer) {
    let room = "halfway";
    let (mut ann, mut bob) = ann_and_bob(room, first, second).await;

    let moving = cluster.begin_move(&channel(room));
    let owners = |key: &str| key.contains(":owner:");
    let before: Vec<String> = cluster.keys_left(&moving);
    assert!(
        before.iter().filter(|key| owners(key)).count() >= 2,
        "both names have owner keys in the slot: {before:?}"
    );
    cluster.migrate(&moving, owners);
    // Two heartbeats (presence TTL 2 s: one every 667 ms) meet the split
    // slot, and so do a join (name claim + presence) and a topic.
    let (mut cy, _) = first.joined(room, "cy").await;
    cy.send(&chat_protocol::ClientMessage::Topic {
        topic: "halfway there".into(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let to = cluster.finish_move(&moving);
    eprintln!(
        "slot {} moved halfway ({} keys), held through heartbeats, then to port {to}",
        moving.slot,
        before.len()
    );
    // The topic set mid-move is refused to its sender, or reaches
    // everyone: never published where nobody listens.
    let outcome = loop {
        let event = next_event(&mut cy).await;
        if matches!(event, ServerEvent::Topic(_) | ServerEvent::Error(_)) {
            break event;
        }
    };
    eprintln!("the topic set while the slot moved: {outcome:?}");
    if let ServerEvent::Error(refused) = &outcome {
        assert!(
            refused.message.contains("NOT delivered")
                && refused.message.contains("moving between Redis nodes"),
            "refused, saying why: {}",
            refused.message
        );
        // A slot on the move is no fault of Redis: the instance that was
        // refused stays healthy.
        let health = get(first.addr(), "/healthz").await;
        assert_eq!(health.status, 200, "{}", health.body);
    }
    if let ServerEvent::Topic(topic) = outcome {
        assert_eq!(topic.topic, "halfway there");
        for client in [&mut ann, &mut bob] {
            let seen = loop {
                if let ServerEvent::Topic(topic) = next_event(client).await {
                    break topic.topic;
                }
            };
            assert_eq!(seen, "halfway there");
        }
    }

    ann.say("after").await.unwrap();
    for (name, client) in [("ann", &mut ann), ("bob", &mut bob), ("cy", &mut cy)] {
        assert_eq!(next_chat_of(name, client).await.message, "after", "{name}");
    }
    // Presence is whole again once a heartbeat ran on the new master.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let members = room_list(second.addr())
            .await
            .rooms
            .iter()
            .find(|summary| summary.name.as_str() == room)
            .map_or(0, |summary| summary.members);
        if members == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room}: {members} members listed after the move, expected 3"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Part 3c: the old master gives a room's slot away before the new one
/// takes it (as a reshard tool that updates the masters in list order
/// does). Redis drops the room's subscriptions on the old master at once,
/// while the slot map an instance reads may still name the old owner, and
/// the new one refuses the subscription with MOVED until it takes the
/// slot. Each instance must keep reading the slot map until it finds the
/// new owner (it used to retry the old one for ever: the room went deaf
/// on that instance), then catch up, so that a message sent once the
/// masters agree reaches every member.
async fn reordered_handover(cluster: &RedisCluster, first: &TestServer, second: &TestServer) {
    let room = "handover";
    let (mut ann, mut bob) = ann_and_bob(room, first, second).await;
    let moving = cluster.begin_move(&channel(room));
    let from = moving.from;
    let to = tokio::task::block_in_place(|| {
        cluster.finish_move_old_owner_first(&moving, Duration::from_secs(1))
    });
    eprintln!(
        "slot {} given to port {to} on its old master {from} first, 1 s before the others",
        moving.slot
    );
    ann.say("after").await.unwrap();
    for (name, client) in [("ann", &mut ann), ("bob", &mut bob)] {
        assert_eq!(next_chat_of(name, client).await.message, "after");
    }
}

/// Ann in `room` on the first instance and Bob on the second, both
/// hearing Ann's "before": the room is live on both.
async fn ann_and_bob(room: &str, first: &TestServer, second: &TestServer) -> (Client, Client) {
    let (mut ann, _) = first.joined(room, "ann").await;
    let (mut bob, _) = second.joined(room, "bob").await;
    ann.say("before").await.unwrap();
    for (name, client) in [("ann", &mut ann), ("bob", &mut bob)] {
        assert_eq!(next_chat_of(name, client).await.message, "before");
    }
    (ann, bob)
}
