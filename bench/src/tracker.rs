//! Exact accounting of one sender's messages as one member receives them.
//!
//! A sender numbers its messages 0, 1, 2, …; every member of its room must
//! see each number exactly once, in order. [`SeqTracker`] classifies each
//! arrival:
//!
//! * **duplicate**: a number already seen (every extra copy counts once);
//! * **out of order**: a number seen for the first time after a higher one;
//! * otherwise in order.
//!
//! **Lost** is decided at the end, when the sender's final count is known:
//! numbers sent minus distinct numbers received.
//!
//! Memory: a bitmap of the numbers received above the first gap. While
//! messages arrive in order it stays at one word; a gap that never fills (a
//! lost message) makes it grow by one bit per later message, which stays
//! small for any run chat-bench makes (a million messages from one sender
//! cost 128 KiB per member, only if the very first one is lost).

use std::collections::VecDeque;

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy, no higher number seen before it.
    InOrder,
    /// First copy, but a higher number arrived earlier.
    OutOfOrder,
    /// A copy of a number already received.
    Duplicate,
}

/// Tracks one (sender, member) stream of sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Every number below `base` has been received; `base` is a multiple of 64.
    base: u64,
    /// Bit `i` of word `w` is number `base + 64 w + i`.
    bits: VecDeque<u64>,
    /// One more than the highest number received (0 before any).
    next_max: u64,
    /// Distinct numbers received.
    distinct: u64,
    /// Extra copies received.
    duplicates: u64,
    /// First copies that arrived after a higher number.
    out_of_order: u64,
}

impl SeqTracker {
    /// Records the arrival of number `seq`.
    #[inline]
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq < self.base {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        let offset = seq - self.base;
        // A word index that does not fit usize cannot be stored; the
        // sequence space of a run is far below that.
        let word = usize::try_from(offset / 64).unwrap_or(usize::MAX);
        let bit = 1u64 << (offset % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let slot = &mut self.bits[word];
        if *slot & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        *slot |= bit;
        self.distinct += 1;
        let arrival = if seq + 1 < self.next_max {
            self.out_of_order += 1;
            Arrival::OutOfOrder
        } else {
            self.next_max = seq + 1;
            Arrival::InOrder
        };
        while self.bits.front() == Some(&u64::MAX) {
            self.bits.pop_front();
            self.base += 64;
        }
        arrival
    }

    /// Distinct numbers received.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Extra copies received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// First copies received after a higher number.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Numbers below `sent` that never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.distinct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_is_clean() {
        let seqs: Vec<u64> = (0..1000).collect();
        let t = run(&seqs);
        assert_eq!(
            (t.distinct(), t.duplicates(), t.out_of_order(), t.lost(1000)),
            (1000, 0, 0, 0)
        );
        assert!(t.bits.len() <= 1);
    }

    #[test]
    fn counts_loss_duplicates_and_reordering_exactly() {
        // 0..10 with 3 lost, 5 twice, 7 and 8 swapped.
        let t = run(&[0, 1, 2, 4, 5, 5, 6, 8, 7, 9]);
        assert_eq!(t.distinct(), 9);
        assert_eq!(t.lost(10), 1);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.out_of_order(), 1);
    }

    #[test]
    fn duplicates_below_base_and_late_arrivals_after_a_gap() {
        let mut seqs: Vec<u64> = (0..200).collect();
        seqs.push(10); // below base by now
        seqs.extend(201..300); // 200 is late
        seqs.push(200);
        seqs.push(200);
        let t = run(&seqs);
        assert_eq!(t.distinct(), 300);
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.out_of_order(), 1);
        assert_eq!(t.lost(300), 0);
        assert!(t.bits.len() <= 1, "bitmap shrinks once the gap fills");
    }

    #[test]
    fn classification_is_returned() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.record(0), Arrival::OutOfOrder);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(0), Arrival::Duplicate);
    }
}
