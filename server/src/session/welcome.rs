//! The welcome, streamed. A room's history can be megabytes (100 messages
//! of 64 KiB), and a joiner may never read it: building the welcome as one
//! text per connection let a few hundred such joiners hold gigabytes.
//! Instead the history's events stay shared with the layer's store
//! (`Arc<ChatEvent>`), and the welcome's JSON is made one fragment at a time
//! as the socket takes it, so that a welcome costs its connection about one
//! fragment plus one message, however slowly it is read.
//!
//! On the wire nothing changes: the text is byte for byte what serialising
//! the whole [`Welcome`] gives, cut into fragments at the same places.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chat_protocol::{ChatEvent, ServerEvent, Welcome};

use crate::ws::{Fragment, OpCode};

use super::FRAGMENT_BYTES;

/// Where the history goes in a welcome serialised without any: the key
/// with its empty array. A string value cannot hold it, as quotes in
/// strings are escaped.
const HISTORY_KEY: &str = "\"history\":[]";

/// The frames of one welcome, made as they are asked for.
#[derive(Debug)]
pub(super) struct Fragments {
    /// The JSON before the history's first event, until it is queued.
    head: Option<String>,
    /// The history's events not serialised yet.
    history: std::vec::IntoIter<Arc<ChatEvent>>,
    /// No event was serialised yet (no comma before the next one).
    first_event: bool,
    /// The JSON after the history's last event, until it is queued.
    tail: Option<String>,
    /// Serialised and not yet handed out.
    pending: BytesMut,
    /// A fragment was handed out: the next ones continue the message.
    started: bool,
    /// The last fragment was handed out.
    done: bool,
}

impl Fragments {
    /// The welcome `welcome` (whose own `history` is ignored) carrying
    /// `history`.
    pub(super) fn new(mut welcome: Welcome, history: Vec<Arc<ChatEvent>>) -> Self {
        welcome.history = Vec::new();
        let mut head = ServerEvent::Welcome(welcome).to_json();
        // The key is always there: `history` is serialised even when empty.
        let at = head
            .find(HISTORY_KEY)
            .map_or(head.len(), |at| at + HISTORY_KEY.len() - 1);
        let tail = head.split_off(at);
        Self {
            head: Some(head),
            history: history.into_iter(),
            first_event: true,
            tail: Some(tail),
            pending: BytesMut::new(),
            started: false,
            done: false,
        }
    }

    fn frame(&mut self, fin: bool, len: usize) -> Fragment {
        let opcode = if self.started {
            OpCode::Continue
        } else {
            OpCode::Text
        };
        self.started = true;
        Fragment {
            opcode,
            fin,
            payload: self.pending.split_to(len).freeze(),
        }
    }
}

impl Iterator for Fragments {
    type Item = Fragment;

    /// The next fragment: [`FRAGMENT_BYTES`] of the text, or the rest with
    /// `fin` set.
    fn next(&mut self) -> Option<Fragment> {
        if self.done {
            return None;
        }
        while self.pending.len() <= FRAGMENT_BYTES {
            if let Some(head) = self.head.take() {
                self.pending.extend_from_slice(head.as_bytes());
            } else if let Some(event) = self.history.next() {
                if !std::mem::take(&mut self.first_event) {
                    self.pending.put_u8(b',');
                }
                // Serialising plain data into memory cannot fail.
                let _ = serde_json::to_writer((&mut self.pending).writer(), &*event);
            } else if let Some(tail) = self.tail.take() {
                self.pending.extend_from_slice(tail.as_bytes());
            } else {
                self.done = true;
                let len = self.pending.len();
                return Some(self.frame(true, len));
            }
        }
        Some(self.frame(false, FRAGMENT_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use chat_protocol::RoomName;

    use super::*;

    fn welcome(history: Vec<ChatEvent>) -> Welcome {
        Welcome {
            message: "Welcome to r, \"history\":[] ann: 2 people here".into(),
            room: RoomName::new("r").unwrap(),
            user: "ann".into(),
            members: vec!["ann".into(), "\"history\":[]".into()],
            history,
            last_id: 7,
            missed: 1,
            epoch: "e.1".into(),
            ts: 42,
            limits: Some(chat_protocol::Limits {
                rate: 50.0,
                burst: 500,
                max_message_bytes: 65_536,
            }),
            topic: Some("a topic with \"history\":[] in it".into()),
        }
    }

    fn event(id: u64, len: usize) -> ChatEvent {
        ChatEvent {
            message: "é\"\n".repeat(len / 4),
            user: "bob".into(),
            room: RoomName::new("r").unwrap(),
            id,
            ts: 1,
            emote: id % 2 == 0,
        }
    }

    /// The fragments' payloads, checking the opcodes and `fin` bits.
    fn payloads(fragments: Fragments) -> Vec<Vec<u8>> {
        let frames: Vec<Fragment> = fragments.collect();
        for (i, frame) in frames.iter().enumerate() {
            let expected = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continue
            };
            assert_eq!(frame.opcode, expected);
            assert_eq!(frame.fin, i == frames.len() - 1);
        }
        frames.iter().map(|f| f.payload.to_vec()).collect()
    }

    #[test]
    fn the_streamed_welcome_is_the_serialised_welcome_cut_in_the_same_places() {
        for (count, len) in [(0, 0), (1, 10), (3, 5000), (100, 60_000), (7, 16_384)] {
            let events: Vec<ChatEvent> = (1..=count).map(|id| event(id, len)).collect();
            let whole = ServerEvent::Welcome(welcome(events.clone())).to_json();
            let shared = events.into_iter().map(Arc::new).collect();
            let parts = payloads(Fragments::new(welcome(Vec::new()), shared));
            assert_eq!(parts.concat(), whole.as_bytes(), "{count} x {len}");
            let expected: Vec<usize> = whole
                .as_bytes()
                .chunks(FRAGMENT_BYTES)
                .map(<[u8]>::len)
                .collect();
            let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
            assert_eq!(sizes, expected, "{count} x {len}");
        }
    }
}
