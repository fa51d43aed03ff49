//! Exact loss accounting among well-behaved clients, with churn.
//!
//! The rule uses the room's message ids, which the server assigns in one
//! per-room sequence and delivers to every member in that order:
//!
//! * Every connection of a well-behaved client is both a **stream** (it
//!   sends messages numbered 0, 1, 2, … on that connection) and a
//!   **membership** (it receives its room's messages).
//! * A stream learns the room id of each of its own messages from its echo
//!   (the server sends every message to every member, the sender
//!   included). Before leaving it waits until all its messages have come
//!   back, so a stream that ends cleanly knows the id of everything it sent.
//! * A membership knows `joined_after`, the welcome's `last_id` (the server
//!   subscribes the connection and reads `last_id` atomically, and relays
//!   only ids above it), and `seen_through`, the highest id it received.
//!   Because each member receives ids in increasing order, having
//!   `seen_through` means every earlier id has been delivered to it.
//! * So a membership must hold, exactly once, every message of every
//!   stream of its room (same room *epoch*) whose id is in
//!   `(joined_after, seen_through]`. A missing one is **lost**. No timing
//!   grace is needed at either end of a churner's stay.
//! * A message whose echo never came back to its sender, on a stream that
//!   ended cleanly, has no id and is counted lost too (**unechoed**); on a
//!   stream that broke, it is **unconfirmed** (the break itself is
//!   reported as an unexpected disconnect).
//!
//! Duplicates and reordering are counted as messages arrive ([`SeqSet`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::tracker::Arrival;

/// The sequence numbers one membership received from one stream, as
/// sorted, disjoint, inclusive runs: one run while they arrive in order,
/// so memory grows only with gaps.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    runs: Vec<(u64, u64)>,
    /// Highest number received, if any.
    max: Option<u64>,
}

impl SeqSet {
    /// Records `seq` and classifies the arrival.
    pub fn insert(&mut self, seq: u64) -> Arrival {
        let arrival = match self.max {
            Some(max) if seq < max => Arrival::OutOfOrder,
            _ => Arrival::InOrder,
        };
        // Fast path: the next number of the last run.
        if let Some(last) = self.runs.last_mut() {
            if seq == last.1 + 1 {
                last.1 = seq;
                self.max = Some(seq);
                return arrival;
            }
        }
        let i = self.runs.partition_point(|run| run.0 <= seq);
        if i > 0 && self.runs[i - 1].1 >= seq {
            return Arrival::Duplicate;
        }
        let joins_prev = i > 0 && self.runs[i - 1].1 + 1 == seq;
        let joins_next = i < self.runs.len() && self.runs[i].0 == seq + 1;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.runs[i - 1].1 = self.runs[i].1;
                self.runs.remove(i);
            }
            (true, false) => self.runs[i - 1].1 = seq,
            (false, true) => self.runs[i].0 = seq,
            (false, false) => self.runs.insert(i, (seq, seq)),
        }
        self.max = Some(self.max.map_or(seq, |max| max.max(seq)));
        arrival
    }

    /// Whether `seq` was received.
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.runs.partition_point(|run| run.0 <= seq);
        i > 0 && self.runs[i - 1].1 >= seq
    }

    /// Distinct numbers received.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// What one well-behaved connection sent.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// The stream's id (unique per connection in the run).
    pub stream: u32,
    /// Room index.
    pub room: u32,
    /// The room's epoch, from the welcome: ids restart in a new epoch.
    pub epoch: String,
    /// The room id of each message by sequence number; 0 while its echo
    /// has not come back.
    pub ids: Vec<u64>,
    /// The stream ended by its own clean leave (every echo awaited).
    pub clean: bool,
}

/// What one well-behaved connection received.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// The connection's own stream id.
    pub stream: u32,
    /// Room index.
    pub room: u32,
    /// The room's epoch, from the welcome.
    pub epoch: String,
    /// The welcome's `last_id`: ids up to it predate the join.
    pub joined_after: u64,
    /// The highest id received.
    pub seen_through: u64,
    /// Sequence numbers received, by stream.
    pub received: HashMap<u32, SeqSet>,
    /// Extra copies received.
    pub duplicated: u64,
    /// First copies that came after a later message of the same stream.
    pub out_of_order: u64,
    /// Chat events whose id was not above the previous one.
    pub id_regressions: u64,
    /// Chat events with an id up to `joined_after` (relayed, though they
    /// predate the join).
    pub early: u64,
    /// Chat events naming another room than the connection's.
    pub wrong_room: u64,
}

/// The loss figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Deliveries that had to happen (membership × message pairs).
    pub expected: u64,
    /// Of those, made.
    pub delivered: u64,
    /// Of those, missing.
    pub lost: u64,
    /// Messages sent on a cleanly ended stream whose echo never came back
    /// (counted in `lost` too: no member can be held to them).
    pub unechoed: u64,
    /// Messages sent on a broken stream whose echo never came back
    /// (not counted lost: the server may never have read them).
    pub unconfirmed: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// First copies received after a later message of the same stream.
    pub out_of_order: u64,
    /// Chat events whose id was not above the previous one on a connection.
    pub id_regressions: u64,
    /// Chat events relayed with an id the welcome said was already past.
    pub early: u64,
    /// Messages received from a stream of another room or epoch, or chat
    /// events naming another room.
    pub misrouted: u64,
    /// Messages received from no known stream.
    pub unknown_stream: u64,
    /// Up to ten missing deliveries, for the report.
    pub examples: Vec<String>,
}

impl Loss {
    /// Whether every count that must be zero is.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.id_regressions == 0
            && self.early == 0
            && self.misrouted == 0
            && self.unknown_stream == 0
    }
}

/// A stream's messages whose id is known: the stream id, and its
/// `(id, seq)` pairs sorted by id.
type Known = (u32, Vec<(u64, u64)>);

/// Decides loss: each membership against the streams of its room.
pub fn reconcile(streams: &[StreamRecord], members: &[Membership]) -> Loss {
    let mut loss = Loss::default();
    // Each stream's known (id, seq) pairs, sorted by id, grouped by room
    // and epoch.
    let mut by_room: HashMap<(u32, &str), Vec<Known>> = HashMap::new();
    let mut stream_room: HashMap<u32, (u32, &str)> = HashMap::new();
    for s in streams {
        let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(s.ids.len());
        for (seq, &id) in (0u64..).zip(&s.ids) {
            if id == 0 {
                if s.clean {
                    loss.unechoed += 1;
                    loss.lost += 1;
                    push_example(
                        &mut loss.examples,
                        format!("stream {} seq {seq}: its echo never came back", s.stream),
                    );
                } else {
                    loss.unconfirmed += 1;
                }
            } else {
                pairs.push((id, seq));
            }
        }
        pairs.sort_unstable();
        stream_room.insert(s.stream, (s.room, s.epoch.as_str()));
        by_room
            .entry((s.room, s.epoch.as_str()))
            .or_default()
            .push((s.stream, pairs));
    }
    let empty = SeqSet::default();
    for m in members {
        loss.duplicated += m.duplicated;
        loss.out_of_order += m.out_of_order;
        loss.id_regressions += m.id_regressions;
        loss.early += m.early;
        loss.misrouted += m.wrong_room;
        for (stream, set) in &m.received {
            match stream_room.get(stream) {
                Some(&(room, epoch)) if room == m.room && epoch == m.epoch => {}
                Some(_) => loss.misrouted += set.len(),
                None => loss.unknown_stream += set.len(),
            }
        }
        let Some(room_streams) = by_room.get(&(m.room, m.epoch.as_str())) else {
            continue;
        };
        for (stream, pairs) in room_streams {
            let from = pairs.partition_point(|&(id, _)| id <= m.joined_after);
            let to = pairs.partition_point(|&(id, _)| id <= m.seen_through);
            if from >= to {
                continue;
            }
            let got = m.received.get(stream).unwrap_or(&empty);
            for &(id, seq) in &pairs[from..to] {
                loss.expected += 1;
                if got.contains(seq) {
                    loss.delivered += 1;
                } else {
                    loss.lost += 1;
                    push_example(
                        &mut loss.examples,
                        format!(
                            "room {} id {id} (stream {stream} seq {seq}) missing at connection {} \
                             (joined after id {}, saw through id {})",
                            m.room, m.stream, m.joined_after, m.seen_through
                        ),
                    );
                }
            }
        }
    }
    loss
}

fn push_example(examples: &mut Vec<String>, example: String) {
    if examples.len() < 10 {
        examples.push(example);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_counts_runs_duplicates_and_reordering() {
        let mut set = SeqSet::default();
        assert!(set.is_empty());
        for seq in [5, 6, 7] {
            assert_eq!(set.insert(seq), Arrival::InOrder);
        }
        assert_eq!(set.insert(9), Arrival::InOrder);
        assert_eq!(set.insert(8), Arrival::OutOfOrder);
        assert_eq!(set.runs, vec![(5, 9)], "the gap closed");
        assert_eq!(set.insert(6), Arrival::Duplicate);
        assert_eq!(set.insert(2), Arrival::OutOfOrder);
        assert_eq!(set.insert(3), Arrival::OutOfOrder);
        assert_eq!(set.runs, vec![(2, 3), (5, 9)]);
        assert_eq!(set.insert(4), Arrival::OutOfOrder);
        assert_eq!(set.runs, vec![(2, 9)]);
        assert_eq!(set.len(), 8);
        assert!(set.contains(2) && set.contains(9) && !set.contains(1) && !set.contains(10));
    }

    fn stream(stream: u32, room: u32, ids: &[u64], clean: bool) -> StreamRecord {
        StreamRecord {
            stream,
            room,
            epoch: "e".into(),
            ids: ids.to_vec(),
            clean,
        }
    }

    fn member(stream: u32, room: u32, after: u64, through: u64) -> Membership {
        Membership {
            stream,
            room,
            epoch: "e".into(),
            joined_after: after,
            seen_through: through,
            ..Membership::default()
        }
    }

    fn receive(m: &mut Membership, stream: u32, seqs: impl IntoIterator<Item = u64>) {
        let set = m.received.entry(stream).or_default();
        for seq in seqs {
            set.insert(seq);
        }
    }

    #[test]
    fn a_churner_is_held_to_what_was_published_while_it_was_there() {
        // Stream 1 sent 6 messages with ids 2, 4, 6, 8, 10, 12; stream 2
        // (the churner) joined after id 5, sent one message (id 7) and saw
        // through id 9, then left.
        let streams = [
            stream(1, 0, &[2, 4, 6, 8, 10, 12], true),
            stream(2, 0, &[7], true),
        ];
        let mut churner = member(2, 0, 5, 9);
        receive(&mut churner, 1, [2, 3]);
        receive(&mut churner, 2, [0]);
        let mut steady = member(1, 0, 0, 12);
        receive(&mut steady, 1, 0..6);
        receive(&mut steady, 2, [0]);
        let loss = reconcile(&streams, &[churner.clone(), steady.clone()]);
        assert_eq!((loss.expected, loss.delivered, loss.lost), (3 + 7, 10, 0));
        assert!(loss.is_clean());

        // The churner misses id 8 (stream 1 seq 3): exactly one loss.
        let mut lossy = member(2, 0, 5, 9);
        receive(&mut lossy, 1, [2]);
        receive(&mut lossy, 2, [0]);
        let loss = reconcile(&streams, &[lossy, steady]);
        assert_eq!(loss.lost, 1);
        assert!(loss.examples[0].contains("id 8"), "{:?}", loss.examples);
    }

    #[test]
    fn unechoed_messages_count_as_lost_only_on_clean_streams() {
        let streams = [stream(1, 0, &[1, 0], true), stream(2, 0, &[3, 0], false)];
        let loss = reconcile(&streams, &[]);
        assert_eq!((loss.unechoed, loss.unconfirmed, loss.lost), (1, 1, 1));
    }

    #[test]
    fn other_rooms_and_epochs_are_not_expected_but_misrouting_is_caught() {
        let mut other_epoch = stream(3, 0, &[1, 2], true);
        other_epoch.epoch = "f".into();
        let streams = [
            stream(1, 0, &[1], true),
            stream(2, 1, &[1], true),
            other_epoch,
        ];
        let mut m = member(1, 0, 0, 5);
        receive(&mut m, 1, [0]);
        receive(&mut m, 2, [0]);
        receive(&mut m, 9, [0]);
        let loss = reconcile(&streams, &[m]);
        assert_eq!((loss.expected, loss.lost), (1, 0));
        assert_eq!((loss.misrouted, loss.unknown_stream), (1, 1));
        assert!(!loss.is_clean());
    }
}
