//! A client that stops reading is disconnected once it is a queue's length
//! behind, the others miss nothing, and the backlog is not kept in memory.
//! In a file of its own: it measures this process's memory, so no other
//! test may run beside it.

mod common;

use std::time::Duration;

use chat_protocol::close;
use chat_server::Config;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_slow_consumer_is_dropped_and_the_others_miss_nothing() {
    let queue = 64;
    // The sender floods on purpose: no rate limit here.
    let limits = chat_server::Limits {
        rate_per_sec: 0.0,
        ..chat_server::Limits::default()
    };
    let server = TestServer::start_with(Config {
        queue_len: queue,
        limits,
        ..Config::default()
    })
    .await;
    let (mut fast, _) = server.joined("slow", "fast").await;
    // The slow client never reads after the handshake.
    let mut slow = server.plain("slow").await;
    let (sender, _) = server.joined("slow", "sender").await;
    let (tx, mut sender_events) = sender.split();
    tokio::spawn(async move { while sender_events.next().await.is_some() {} });

    let baseline = rss_kib();
    let payload = "p".repeat(8 * 1024);
    let total = 2_000;
    let send_all = tokio::spawn(async move {
        for n in 0..total {
            tx.say(&format!("{n} {payload}")).await.unwrap();
        }
    });
    for n in 0..total {
        let chat = next_chat(&mut fast).await;
        assert!(
            chat.message.starts_with(&format!("{n} ")),
            "no gap for the fast client at {n}"
        );
    }
    send_all.await.unwrap();
    // 2000 x 8 KiB went by; the slow client's backlog is not kept in memory.
    let grown = rss_kib().saturating_sub(baseline);
    assert!(
        grown < 64 * 1024,
        "server memory grew by {grown} KiB for a backlog of ~16 MiB"
    );

    let mut got_close = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, slow.next()).await {
        match frame {
            Ok(Message::Close(Some(frame))) => {
                got_close = Some(u16::from(frame.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        got_close,
        Some(close::POLICY_VIOLATION),
        "the slow consumer is told why it was dropped"
    );
}
