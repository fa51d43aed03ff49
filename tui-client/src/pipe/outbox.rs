//! Which lines are waiting, which are on their way, and what became of
//! each: the bookkeeping that lets pipe mode promise "delivered, or told".
//!
//! The server answers every chat frame exactly once: the echo of the
//! message (delivered to everyone) or an `error` event (not delivered). An
//! error does not say which message it refuses, so after a refusal nothing
//! new is sent until the echoes have settled: once the messages still on
//! their way are as many as the refusals, those are the refused ones, and
//! they are sent again (at most [`MAX_ATTEMPTS`] times each).

use std::collections::VecDeque;

/// How many times one line is sent before it counts as not delivered.
pub const MAX_ATTEMPTS: u32 = 5;

/// A line of input on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Its line number in the input (1-based).
    pub number: usize,
    /// The text.
    pub text: String,
    /// How many times it was sent.
    pub attempts: u32,
}

/// The lines between stdin and the server.
#[derive(Debug, Default)]
pub struct Outbox {
    /// To send, in order (lines sent again come first).
    queue: VecDeque<Outgoing>,
    /// Sent, neither echoed nor known refused yet, in the order sent.
    in_flight: VecDeque<Outgoing>,
    /// Refusals not yet matched to a line.
    refusals: usize,
    /// Echoed.
    delivered: usize,
    /// Refused [`MAX_ATTEMPTS`] times.
    refused: Vec<Outgoing>,
}

impl Outbox {
    /// A line read from stdin.
    pub fn push(&mut self, number: usize, text: String) {
        self.queue.push_back(Outgoing {
            number,
            text,
            attempts: 0,
        });
    }

    /// The line to send next, unless a refusal is being settled.
    pub fn next(&self) -> Option<&Outgoing> {
        if self.refusals > 0 {
            return None;
        }
        self.queue.front()
    }

    /// The line [`Outbox::next`] gave was sent.
    pub fn sent(&mut self) {
        if let Some(mut line) = self.queue.pop_front() {
            line.attempts += 1;
            self.in_flight.push_back(line);
        }
    }

    /// A message with `text` came back from us: the oldest line in flight
    /// with that text is delivered. Returns whether one was.
    pub fn echoed(&mut self, text: &str) -> bool {
        let Some(at) = self.in_flight.iter().position(|l| l.text == text) else {
            return false;
        };
        self.in_flight.remove(at);
        self.delivered += 1;
        self.settle();
        true
    }

    /// The server refused one of the lines in flight (rate, or
    /// unavailable): it is sent again once it is known which.
    pub fn refused(&mut self) {
        if self.in_flight.len() > self.refusals {
            self.refusals += 1;
        }
        self.settle();
    }

    fn settle(&mut self) {
        if self.refusals == 0 || self.in_flight.len() > self.refusals {
            return;
        }
        // Every line still in flight was refused: send them again, first.
        self.refusals = 0;
        for line in std::mem::take(&mut self.in_flight).into_iter().rev() {
            if line.attempts >= MAX_ATTEMPTS {
                self.refused.push(line);
            } else {
                self.queue.push_front(line);
            }
        }
    }

    /// Whether room is left for more input (bounds what is held).
    pub fn wants_input(&self, limit: usize) -> bool {
        self.refusals == 0 && self.queue.len() < limit
    }

    /// Whether lines are on their way.
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Whether every line was delivered or given up.
    pub fn is_done(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// How many lines were echoed.
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    /// Gives up on everything not delivered: the lines never echoed (in
    /// flight), then the ones never sent.
    pub fn give_up(&mut self) -> (Vec<Outgoing>, Vec<Outgoing>) {
        self.refusals = 0;
        (
            self.in_flight.drain(..).collect(),
            self.queue.drain(..).collect(),
        )
    }

    /// The lines refused [`MAX_ATTEMPTS`] times.
    pub fn refused_lines(&self) -> &[Outgoing] {
        &self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(lines: &[&str]) -> Outbox {
        let mut outbox = Outbox::default();
        for (i, text) in lines.iter().enumerate() {
            outbox.push(i + 1, (*text).to_owned());
        }
        outbox
    }

    fn send_all(outbox: &mut Outbox) -> Vec<String> {
        let mut sent = Vec::new();
        while let Some(line) = outbox.next() {
            sent.push(line.text.clone());
            outbox.sent();
        }
        sent
    }

    #[test]
    fn echoes_deliver_in_any_order() {
        let mut out = outbox(&["a", "b", "c"]);
        assert_eq!(send_all(&mut out), ["a", "b", "c"]);
        assert!(out.echoed("b"));
        assert!(!out.echoed("zzz"), "someone else's message");
        assert!(out.echoed("a") && out.echoed("c"));
        assert!(out.is_done());
        assert_eq!(out.delivered(), 3);
    }

    #[test]
    fn a_refusal_holds_sending_until_it_is_known_which_then_resends_it() {
        let mut out = outbox(&["a", "b", "c", "d"]);
        out.next();
        out.sent();
        out.next();
        out.sent();
        out.next();
        out.sent(); // a, b, c in flight
        out.refused(); // one of them
        assert!(out.next().is_none(), "hold while unsettled");
        assert!(!out.wants_input(100));
        assert!(out.echoed("a"));
        assert!(out.next().is_none(), "b and c still unknown");
        assert!(out.echoed("c"));
        // Only b is left in flight with one refusal: b was refused.
        assert_eq!(
            out.next().map(|l| l.text.as_str()),
            Some("b"),
            "b again, first"
        );
        assert_eq!(send_all(&mut out), ["b", "d"]);
        assert!(out.echoed("b") && out.echoed("d"));
        assert!(out.is_done());
        assert_eq!(out.delivered(), 4);
        assert!(out.refused_lines().is_empty());
    }

    #[test]
    fn a_line_refused_every_time_is_given_up() {
        let mut out = outbox(&["x"]);
        for _ in 0..MAX_ATTEMPTS {
            assert_eq!(send_all(&mut out), ["x"]);
            out.refused();
        }
        assert!(out.is_done());
        assert_eq!(out.refused_lines().len(), 1);
        assert_eq!(out.delivered(), 0);
    }

    #[test]
    fn giving_up_lists_what_was_not_delivered() {
        let mut out = outbox(&["a", "b", "c"]);
        out.next();
        out.sent();
        let (in_flight, unsent) = out.give_up();
        assert_eq!(in_flight.len(), 1);
        assert_eq!(unsent.len(), 2);
        assert!(out.is_done());
    }
}
