//! Abusive clients: each connection tries one abuse, sees what the server
//! does about it, and the client comes back with the next one.
//!
//! | abuse | client | sends | a correct server |
//! |---|---|---|---|
//! | `flood-typed` | typed | chat messages as fast as the socket takes | `error` events (`rate_limited`), then close 1008 |
//! | `flood-plain` | plain | the same | reads it at the rate limit (TCP pushes back), then close 1008 |
//! | `bad-json-typed` | typed | three frames that are not JSON | an `error` event (`invalid_json`) each; the connection stays open |
//! | `bad-json-plain` | plain | a frame that is not JSON | close 1007 |
//! | `binary` | either | a binary frame | close 1003 |
//! | `oversize` | either | a 100 KB text frame (the limit is 64 KiB) | close 1009 |
//! | `bad-utf8` | either | a text frame that is not UTF-8 | close 1007 |
//!
//! A flooder may also see its connection **dropped** (end of stream or
//! reset, no close frame), which counts as expected: after its close frame
//! the server reads at most 1 MiB of what the client still sends, then
//! closes with the rest unread, and the kernel answers that with a reset
//! that discards whatever the server had queued but not yet transmitted
//! (the close frame included, when the flooder's receive window was full).
//! The server's `/metrics` (`rate_limit` disconnects) says why it closed.
//!
//! Abuser `i` starts with abuse `i` of the table and goes down it, so that
//! seven abusers try every kind from the first seconds. Abusers join the
//! well-behaved rooms: what they manage to publish (text starting with
//! [`TEXT_TAG`]) reaches well-behaved members, who count it apart.

use std::sync::Arc;
use std::time::Duration;

use chat_protocol::{ErrorCode, ServerEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Conn, Ended, Incoming};
use super::{Outcome, Plan, Reconnecting, Shared, stopped};
use crate::wire::{OP_BINARY, OP_TEXT};

/// The first letter of an abuser's message text.
pub(super) const TEXT_TAG: char = 'f';

/// Size of the oversize frame: well over the server's 64 KiB default.
const OVERSIZE: usize = 100_000;

/// Malformed frames a `bad-json-typed` client sends.
const BAD_FRAMES: u64 = 3;

/// Longest the answer to a malformed frame may take.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// One kind of abuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// A typed client sending as fast as it can.
    FloodTyped,
    /// A plain client sending as fast as it can.
    FloodPlain,
    /// A typed client sending frames that are not JSON.
    BadJsonTyped,
    /// A plain client sending a frame that is not JSON.
    BadJsonPlain,
    /// A binary frame.
    Binary,
    /// A text frame over the size limit.
    Oversize,
    /// A text frame that is not UTF-8.
    BadUtf8,
}

impl Abuse {
    /// Every kind, in the order abusers go through them.
    pub const ALL: [Self; 7] = [
        Self::FloodTyped,
        Self::FloodPlain,
        Self::BadJsonTyped,
        Self::BadJsonPlain,
        Self::Binary,
        Self::Oversize,
        Self::BadUtf8,
    ];

    /// The category name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::FloodTyped => "flood-typed",
            Self::FloodPlain => "flood-plain",
            Self::BadJsonTyped => "bad-json-typed",
            Self::BadJsonPlain => "bad-json-plain",
            Self::Binary => "binary",
            Self::Oversize => "oversize",
            Self::BadUtf8 => "bad-utf8",
        }
    }

    /// Whether the client is typed, on its `cycle`th attempt (the last
    /// three kinds alternate).
    fn typed(self, cycle: u32) -> bool {
        match self {
            Self::FloodTyped | Self::BadJsonTyped => true,
            Self::FloodPlain | Self::BadJsonPlain => false,
            Self::Binary | Self::Oversize | Self::BadUtf8 => cycle % 2 == 0,
        }
    }

    /// The close code a correct server answers with (`None`: no close).
    fn expected_close(self) -> Option<u16> {
        match self {
            Self::FloodTyped | Self::FloodPlain => Some(1008),
            Self::BadJsonTyped => None,
            Self::BadJsonPlain | Self::BadUtf8 => Some(1007),
            Self::Binary => Some(1003),
            Self::Oversize => Some(1009),
        }
    }
}

/// Abusive client number `index`.
pub(super) struct Abuser {
    shared: Arc<Shared>,
    index: u32,
    /// The abuse of the current connection.
    abuse: Abuse,
}

impl Abuser {
    pub(super) fn new(shared: Arc<Shared>, index: u32) -> Self {
        Self {
            shared,
            index,
            abuse: Abuse::ALL[0],
        }
    }
}

impl Reconnecting for Abuser {
    fn name(&self) -> String {
        format!("abuse{}", self.index)
    }

    fn plan(&mut self, cycle: u32, rng: &mut fastrand::Rng) -> Plan {
        self.abuse = Abuse::ALL[((self.index + cycle) % 7) as usize];
        Plan {
            category: self.abuse.label(),
            room: rng.u32(..self.shared.config.settings.rooms),
            typed: self.abuse.typed(cycle),
            small_pipe: None,
        }
    }

    /// Sends the abuse and judges the answer.
    async fn attempt(
        &mut self,
        conn: &mut Conn,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Outcome> {
        let abuse = self.abuse;
        let abuse_timeout = self.shared.config.settings.abuse_timeout.get();
        let limit = if is_flood(abuse) {
            abuse_timeout
        } else {
            ANSWER_WAIT.min(abuse_timeout)
        };
        let deadline = Instant::now() + limit;
        let seen = tokio::select! {
            () = stopped(stop) => None,
            () = tokio::time::sleep_until(deadline) => Some(Seen::default()),
            seen = abuse_conn(conn, abuse, self.index) => Some(seen),
        };
        Some(judge(abuse, &seen?, conn.ended(), limit))
    }
}

fn is_flood(abuse: Abuse) -> bool {
    matches!(abuse, Abuse::FloodTyped | Abuse::FloodPlain)
}

/// What the server answered.
#[derive(Debug, Default)]
struct Seen {
    /// `error` events by whether their code is the expected one.
    expected_errors: u64,
    other_errors: u64,
    /// The client closed by itself after the expected answers.
    closed_by_us: bool,
}

/// Sends the abuse and reads until the connection ends (or, for
/// `bad-json-typed`, until every `error` event came and it closed itself).
async fn abuse_conn(conn: &mut Conn, abuse: Abuse, index: u32) -> Seen {
    let mut seen = Seen::default();
    let expected_code = match abuse {
        Abuse::FloodTyped => Some(ErrorCode::RateLimited),
        Abuse::BadJsonTyped => Some(ErrorCode::InvalidJson),
        _ => None,
    };
    match abuse {
        Abuse::FloodTyped | Abuse::FloodPlain => {}
        Abuse::BadJsonTyped => {
            for _ in 0..BAD_FRAMES {
                conn.queue(OP_TEXT, br#"{"message": "f unterminated"#);
            }
        }
        Abuse::BadJsonPlain => conn.queue(OP_TEXT, b"f this is not JSON"),
        Abuse::Binary => conn.queue(OP_BINARY, br#"{"message": "f binary"}"#),
        Abuse::Oversize => {
            let mut text = br#"{"message": "f"#.to_vec();
            text.resize(OVERSIZE - 2, b'x');
            text.extend_from_slice(br#""}"#);
            conn.queue(OP_TEXT, &text);
        }
        Abuse::BadUtf8 => conn.queue(OP_TEXT, b"{\"message\": \"f \xff\xfe\"}"),
    }
    let mut sent = 0u64;
    loop {
        if is_flood(abuse) {
            while conn.pending_output() < 64 * 1024 {
                let text = format!(r#"{{"message":"{TEXT_TAG}{index} flood {sent}"}}"#);
                conn.queue(OP_TEXT, text.as_bytes());
                sent += 1;
            }
        }
        conn.pump().await;
        while let Some(message) = conn.try_recv() {
            let Incoming::Text(text) = message else {
                continue;
            };
            if let Ok(ServerEvent::Error(error)) = serde_json::from_slice::<ServerEvent>(&text) {
                if Some(error.code) == expected_code {
                    seen.expected_errors += 1;
                } else {
                    seen.other_errors += 1;
                }
            }
        }
        if conn.ended().is_some() {
            return seen;
        }
        if abuse == Abuse::BadJsonTyped && seen.expected_errors >= BAD_FRAMES {
            seen.closed_by_us = true;
            conn.start_close(1000);
            let _ = conn.finish(ANSWER_WAIT).await;
            return seen;
        }
    }
}

/// Compares what was seen with what a correct server does.
fn judge(abuse: Abuse, seen: &Seen, ended: Option<&Ended>, timeout: Duration) -> Outcome {
    // Error events matter for typed clients only; a plain one gets none.
    let errors = if seen.expected_errors + seen.other_errors > 0
        || matches!(abuse, Abuse::FloodTyped | Abuse::BadJsonTyped)
    {
        format!(
            "{} expected error events, {} others",
            seen.expected_errors, seen.other_errors
        )
    } else {
        String::new()
    };
    let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_owned(),
        (true, false) => b.to_owned(),
        (false, false) => format!("{a}; {b}"),
    };
    if abuse == Abuse::BadJsonTyped && seen.closed_by_us {
        let clean = seen.other_errors == 0;
        return (
            format!("{BAD_FRAMES} error events, kept open"),
            clean,
            errors,
        );
    }
    let Some(ended) = ended else {
        return (
            "not closed".into(),
            false,
            join(&format!("within {timeout:?}"), &errors),
        );
    };
    if is_flood(abuse) && matches!(ended, Ended::Eof | Ended::Reset(_)) {
        return (
            "dropped".into(),
            true,
            join(&format!("{}, no close frame", ended.label()), &errors),
        );
    }
    let code = ended.code();
    let mut expected = code.is_some() && code == abuse.expected_close();
    if abuse == Abuse::FloodTyped {
        // Told (error events) before being closed.
        expected &= seen.expected_errors > 0;
    }
    (ended.label(), expected, join(ended.detail(), &errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16) -> Ended {
        Ended::Close {
            code: Some(code),
            reason: String::new(),
        }
    }

    #[test]
    fn judges_closes_against_the_table() {
        let told = Seen {
            expected_errors: 30,
            ..Seen::default()
        };
        let t = Duration::from_secs(1);
        assert!(judge(Abuse::FloodTyped, &told, Some(&close(1008)), t).1);
        assert!(!judge(Abuse::FloodTyped, &Seen::default(), Some(&close(1008)), t).1);
        assert!(judge(Abuse::FloodPlain, &Seen::default(), Some(&close(1008)), t).1);
        assert!(judge(Abuse::Binary, &Seen::default(), Some(&close(1003)), t).1);
        assert!(!judge(Abuse::Binary, &Seen::default(), Some(&close(1007)), t).1);
        assert!(!judge(Abuse::Oversize, &Seen::default(), Some(&Ended::Eof), t).1);
        let dropped = judge(Abuse::FloodTyped, &Seen::default(), Some(&Ended::Eof), t);
        assert_eq!((dropped.0.as_str(), dropped.1), ("dropped", true));
        assert_eq!(
            judge(Abuse::BadUtf8, &Seen::default(), None, t).0,
            "not closed"
        );
        let answered = Seen {
            expected_errors: 3,
            closed_by_us: true,
            ..Seen::default()
        };
        assert!(judge(Abuse::BadJsonTyped, &answered, None, t).1);
    }

    #[test]
    fn every_kind_has_a_label_and_an_answer() {
        for abuse in Abuse::ALL {
            assert!(!abuse.label().is_empty());
            assert_eq!(
                abuse.expected_close().is_none(),
                abuse == Abuse::BadJsonTyped
            );
        }
    }
}
