//! This instance's place in a room's id sequence, and the publishes from
//! here that wait to see their message come back.
//!
//! A publish that Redis ran is answered only once the pump has delivered
//! its id here, or has told the room that the id is lost (a `gap`). So a
//! message that Redis accepted and then lost before sending it to this
//! instance (it crashed in between and came back without its data) is
//! reported to its sender instead of vanishing, and its id is never given
//! to another message.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use tokio::sync::oneshot;

/// What became of a published message on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Delivered to the room's members here.
    Delivered,
    /// Skipped: Redis no longer had it when this instance read the room.
    Lost,
}

/// Where this instance stands in one room.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The last id delivered here (or reported lost).
    delivered: u64,
    /// The highest id a publish from here was given.
    published: u64,
    /// Publishes waiting for their id to be delivered or reported lost: at
    /// most one per local member, since a session publishes one message at
    /// a time.
    waiting: BTreeMap<u64, oneshot::Sender<Fate>>,
    /// The ids the pump last reported lost (a `gap`), for a publish whose
    /// reply is read only after its id was skipped.
    last_lost: Option<RangeInclusive<u64>>,
    /// Whether the pump has opened the room (its feed has a start), or
    /// delivers in it (a room it kept open while its last member left and
    /// a new one came).
    open: bool,
    /// The lowest id a member's welcome left off at before the room was
    /// open (a join that could not wait for the subscription): the feed
    /// must start there, not where the room stands when it opens.
    welcomed: Option<u64>,
}

impl Progress {
    /// The lowest id the next message may take: ids published or
    /// delivered here are never given again, even when Redis lost them.
    pub(super) fn floor(&self) -> u64 {
        self.delivered.max(self.published)
    }

    /// A publish from here was given `id`: `None` when the pump has
    /// already delivered it, or the receiver of its fate.
    pub(super) fn published(&mut self, id: u64) -> Option<oneshot::Receiver<Fate>> {
        self.published = self.published.max(id);
        let (tell, fate) = oneshot::channel();
        if id <= self.delivered {
            if !self
                .last_lost
                .as_ref()
                .is_some_and(|lost| lost.contains(&id))
            {
                return None;
            }
            let _ = tell.send(Fate::Lost);
        } else {
            self.waiting.insert(id, tell);
        }
        Some(fate)
    }

    /// The publisher of `id` stopped waiting.
    pub(super) fn forget(&mut self, id: u64) {
        self.waiting.remove(&id);
    }

    /// The pump delivered `id`. Ids are delivered in order, and a skipped
    /// one is reported lost first, so a publish still waiting below `id`
    /// cannot be delivered any more: it is told so.
    pub(super) fn delivered(&mut self, id: u64) {
        self.delivered = self.delivered.max(id);
        self.open = true;
        self.settle_through(id, |waited| {
            if waited == id {
                Fate::Delivered
            } else {
                Fate::Lost
            }
        });
    }

    /// The pump told the room that the ids in `lost` are lost (and
    /// delivered everything before them it could).
    pub(super) fn lost(&mut self, lost: RangeInclusive<u64>) {
        let through = *lost.end();
        self.delivered = self.delivered.max(through);
        self.open = true;
        self.settle_through(through, |_| Fate::Lost);
        self.last_lost = Some(lost);
    }

    /// A member was welcomed with the room's messages through `id`. Before
    /// the room is open, the feed must start no later than that.
    pub(super) fn welcomed_at(&mut self, id: u64) {
        if !self.open {
            self.welcomed = Some(self.welcomed.map_or(id, |lowest| lowest.min(id)));
        }
    }

    /// Whether the pump has opened the room.
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// Where the feed of a room being opened starts, the room standing at
    /// `seq`: after `seq`, or earlier when a member was welcomed before it
    /// (a join that could not wait for the subscription) or a publish from
    /// here that ran before the subscription waits below it. What lies in
    /// between is then read from history, so that the members here get it.
    pub(super) fn opening_point(&self, seq: u64) -> u64 {
        let first_waiting = self
            .waiting
            .keys()
            .next()
            .map_or(seq, |first| first.saturating_sub(1));
        seq.min(first_waiting).min(self.welcomed.unwrap_or(seq))
    }

    /// Opening: the feed starts after `id`.
    pub(super) fn opened_after(&mut self, id: u64) {
        self.delivered = self.delivered.max(id);
        self.open = true;
        self.welcomed = None;
    }

    /// Tells every publish waiting for an id up to `id` its fate. Runs for
    /// every delivered message: in the usual case it finds nothing, or
    /// the one publish waiting for `id`, and allocates nothing.
    fn settle_through(&mut self, id: u64, fate: impl Fn(u64) -> Fate) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > id {
                break;
            }
            let (waited, tell) = entry.remove_entry();
            let _ = tell.send(fate(waited));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fate(receiver: &mut oneshot::Receiver<Fate>) -> Option<Fate> {
        receiver.try_recv().ok()
    }

    #[test]
    fn a_publish_learns_its_message_was_delivered() {
        let mut progress = Progress::default();
        let mut first = progress.published(1).expect("waits");
        let mut second = progress.published(2).expect("waits");
        progress.delivered(1);
        assert_eq!(fate(&mut first), Some(Fate::Delivered));
        assert_eq!(fate(&mut second), None, "2 still on its way");
        progress.delivered(2);
        assert_eq!(fate(&mut second), Some(Fate::Delivered));
        assert!(progress.published(2).is_none(), "already delivered");
    }

    #[test]
    fn a_publish_learns_its_message_was_lost() {
        let mut progress = Progress::default();
        progress.delivered(4);
        let mut lost = progress.published(5).expect("waits");
        let mut next = progress.published(6).expect("waits");
        progress.lost(5..=5);
        assert_eq!(fate(&mut lost), Some(Fate::Lost));
        assert_eq!(fate(&mut next), None);
        progress.delivered(7);
        assert_eq!(fate(&mut next), Some(Fate::Lost), "skipped without a gap");
    }

    #[test]
    fn a_publish_whose_id_was_skipped_before_its_reply_came_learns_it_was_lost() {
        let mut progress = Progress::default();
        progress.delivered(2);
        progress.lost(3..=4);
        progress.delivered(5);
        let mut late = progress.published(4).expect("told");
        assert_eq!(fate(&mut late), Some(Fate::Lost));
        assert!(progress.published(5).is_none(), "5 was delivered");
        assert!(progress.published(2).is_none(), "2 was delivered");
    }

    #[test]
    fn ids_published_here_are_never_given_again() {
        let mut progress = Progress::default();
        progress.delivered(3);
        assert_eq!(progress.floor(), 3);
        let _waiting = progress.published(9);
        assert_eq!(progress.floor(), 9, "9 ran in Redis, even if Redis lost it");
    }

    #[test]
    fn a_room_opens_before_a_publish_from_here_that_it_has_not_delivered() {
        let mut progress = Progress::default();
        assert_eq!(progress.opening_point(10), 10);
        let _waiting = progress.published(8);
        assert_eq!(progress.opening_point(10), 7);
        assert_eq!(progress.opening_point(5), 5);
        progress.forget(8);
        assert_eq!(progress.opening_point(10), 10);
    }

    #[test]
    fn a_room_opens_where_its_earliest_member_was_welcomed() {
        let mut progress = Progress::default();
        progress.welcomed_at(6);
        progress.welcomed_at(4);
        assert_eq!(progress.opening_point(9), 4);
        progress.opened_after(4);
        progress.welcomed_at(2);
        assert_eq!(
            progress.opening_point(9),
            9,
            "once open, a welcome no longer moves the start"
        );
        let mut delivering = Progress::default();
        delivering.delivered(5);
        assert!(delivering.is_open(), "a room the pump delivers in is open");
    }
}
