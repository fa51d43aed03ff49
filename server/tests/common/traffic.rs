//! Traffic through two instances while the test breaks their feeds, with
//! every message counted: the sender on instance 1 publishes at a steady
//! pace; a plain client that never reconnects and a typed one, both on
//! instance 2, record what they get.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chat_protocol::{ChatEvent, ServerEvent};
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{TestServer, get};

/// Messages sent per run, at [`RATE`].
pub const MESSAGES: usize = 600;
/// The sender's pace (messages per second).
pub const RATE: u64 = 100;
/// The last message of a run, sent once every feed is back.
pub const END: &str = "end";

/// What one run saw.
#[derive(Debug)]
pub struct Run {
    /// Messages sent, [`END`] attempts included.
    pub sent: usize,
    /// The sender's own messages as echoed to it: what Redis accepted.
    pub echoed: Vec<(u64, String)>,
    /// Error events the sender got (messages refused).
    pub refused: usize,
    /// What the plain client read, in order.
    pub plain: Vec<String>,
    /// What the typed client read, in order.
    pub typed: Vec<(u64, String)>,
    /// Ids the typed client was told it missed.
    pub gaps: Vec<(u64, u64)>,
}

/// Sends [`MESSAGES`] from instance 1 at [`RATE`] while `disrupt` runs,
/// then [`END`] once both instances are healthy, and collects what the
/// sender and the two live clients on instance 2 saw.
pub async fn run<F>(first: &TestServer, second: &TestServer, room: &str, disrupt: F) -> Run
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
    pub fn assert_nothing_lost(&self, what: &str) {
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
