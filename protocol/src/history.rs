//! Paging and search through a room's stored messages: the query a client
//! sends (typed frame `{"type": "history", ...}` or the HTTP API
//! `GET /api/rooms/<room>/messages?...`), the rules every server applies
//! to it, and the word matching used by servers that scan what they hold.
//!
//! | field | meaning |
//! |---|---|
//! | `before` | only messages with an id below this one (walking back) |
//! | `after` | only messages with an id above this one (walking forward) |
//! | `limit` | at most this many messages, 1 to [`HISTORY_LIMIT_MAX`] (larger values are capped); default [`HISTORY_LIMIT_DEFAULT`] |
//! | `q` | only messages containing every word of `q` (see [`SearchWords`]) |
//!
//! The answer holds messages oldest first and `more`: whether the server
//! holds further matching messages beyond the page in the direction walked.
//! Without `after` the page is the newest `limit` matches (below `before`
//! when given); with `after` it is the oldest `limit` matches above it
//! (and below `before` when both are given).

use serde::{Deserialize, Serialize};

use crate::{ChatEvent, RoomName};

/// The most messages one page holds; larger `limit`s are capped to it.
pub const HISTORY_LIMIT_MAX: u32 = 500;

/// The page size when a query gives no `limit`.
pub const HISTORY_LIMIT_DEFAULT: u32 = 50;

/// The longest search text accepted, in bytes.
pub const SEARCH_MAX_BYTES: usize = 200;

/// The most words a search may have.
pub const SEARCH_MAX_WORDS: usize = 8;

/// The longest `ref` a client may attach to a request, in bytes.
pub const REF_MAX_BYTES: usize = 64;

/// Why a history query was refused. The message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryQueryError {
    /// `before`, `after` or `limit` is not a whole number of the right range.
    #[error("{field} must be a whole number from {min} to {max}")]
    NotANumber {
        /// The parameter.
        field: &'static str,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// `q` has no letter or digit to search for.
    #[error("q has no word to search for (words are letters and digits)")]
    NoWords,
    /// `q` is longer than [`SEARCH_MAX_BYTES`].
    #[error("q is too long: at most {SEARCH_MAX_BYTES} bytes")]
    SearchTooLong,
    /// `q` has more than [`SEARCH_MAX_WORDS`] words.
    #[error("q has too many words: at most {SEARCH_MAX_WORDS}")]
    TooManyWords,
    /// `q` is not a string.
    #[error("q must be a string of words")]
    SearchNotString,
    /// `ref` is not a string of at most [`REF_MAX_BYTES`] bytes.
    #[error("ref must be a string of at most {REF_MAX_BYTES} bytes")]
    BadRef,
    /// A window that cannot hold any message (`after` ≥ `before` - 1).
    #[error("after ({after}) must be below before ({before}) minus one")]
    EmptyWindow {
        /// The `after` given.
        after: u64,
        /// The `before` given.
        before: u64,
    },
}

/// A validated history query. Build it with [`HistoryQuery::new`] or from
/// HTTP parameters with [`HistoryQuery::from_params`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: u32,
    search: Option<SearchWords>,
}

impl HistoryQuery {
    /// The newest [`HISTORY_LIMIT_DEFAULT`] messages.
    pub fn new() -> Self {
        Self {
            limit: HISTORY_LIMIT_DEFAULT,
            ..Self::default()
        }
    }

    /// Only messages with an id below `id`.
    #[must_use]
    pub fn before(mut self, id: u64) -> Self {
        self.before = Some(id);
        self
    }

    /// Only messages with an id above `id`.
    #[must_use]
    pub fn after(mut self, id: u64) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit` messages (capped to 1..=[`HISTORY_LIMIT_MAX`]).
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit.clamp(1, HISTORY_LIMIT_MAX);
        self
    }

    /// Only messages with every word of `search`.
    #[must_use]
    pub fn search(mut self, search: SearchWords) -> Self {
        self.search = Some(search);
        self
    }

    /// Parses the HTTP API's query parameters (each as sent, `None` when
    /// absent; an empty value counts as absent).
    ///
    /// ```
    /// use chat_protocol::HistoryQuery;
    ///
    /// let query = HistoryQuery::from_params(Some("120"), None, Some("100000"), Some("hello"))?;
    /// assert_eq!((query.before_id(), query.page_size()), (Some(120), 500));
    /// assert!(HistoryQuery::from_params(Some("abc"), None, None, None).is_err());
    /// # Ok::<(), chat_protocol::HistoryQueryError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`HistoryQueryError`] naming the bad parameter.
    pub fn from_params(
        before: Option<&str>,
        after: Option<&str>,
        limit: Option<&str>,
        q: Option<&str>,
    ) -> Result<Self, HistoryQueryError> {
        fn present(value: Option<&str>) -> Option<&str> {
            value.filter(|v| !v.is_empty())
        }
        let mut query = Self::new();
        if let Some(before) = present(before) {
            query.before = Some(parse_number(before, "before", 1)?);
        }
        if let Some(after) = present(after) {
            query.after = Some(parse_number(after, "after", 0)?);
        }
        if let Some(limit) = present(limit) {
            let limit = parse_number(limit, "limit", 1)?;
            query = query.limit(u32::try_from(limit).unwrap_or(u32::MAX));
        }
        if let Some(q) = present(q) {
            query.search = Some(SearchWords::parse(q)?);
        }
        query.check()
    }

    /// Checks that the window can hold a message.
    pub(crate) fn check(self) -> Result<Self, HistoryQueryError> {
        if let (Some(after), Some(before)) = (self.after, self.before) {
            if after.saturating_add(1) >= before {
                return Err(HistoryQueryError::EmptyWindow { after, before });
            }
        }
        Ok(self)
    }

    /// `before`, if given.
    pub fn before_id(&self) -> Option<u64> {
        self.before
    }

    /// `after`, if given.
    pub fn after_id(&self) -> Option<u64> {
        self.after
    }

    /// The page size: 1 to [`HISTORY_LIMIT_MAX`].
    pub fn page_size(&self) -> u32 {
        self.limit.max(1)
    }

    /// The search, if any.
    pub fn search_words(&self) -> Option<&SearchWords> {
        self.search.as_ref()
    }

    /// Whether the page walks forward (from `after`) rather than back.
    pub fn is_forward(&self) -> bool {
        self.after.is_some()
    }

    /// Whether message `id` lies in the query's window.
    pub fn in_window(&self, id: u64) -> bool {
        self.before.is_none_or(|before| id < before) && self.after.is_none_or(|after| id > after)
    }

    /// Picks the page from `messages` (oldest first, ids increasing, as a
    /// server holds them): the window, the search, the limit, and whether
    /// more matches lie beyond. Servers that keep messages in memory
    /// answer with this; it is also the reference the others agree with.
    pub fn select<'a>(
        &self,
        messages: impl DoubleEndedIterator<Item = &'a ChatEvent>,
    ) -> MessagePage {
        let limit = self.page_size() as usize;
        let wanted = |e: &&ChatEvent| {
            self.in_window(e.id) && self.search.as_ref().is_none_or(|s| s.matches(&e.message))
        };
        let mut picked: Vec<ChatEvent> = Vec::new();
        let mut more = false;
        if self.is_forward() {
            for event in messages.filter(wanted) {
                if picked.len() == limit {
                    more = true;
                    break;
                }
                picked.push(event.clone());
            }
        } else {
            for event in messages.rev().filter(wanted) {
                if picked.len() == limit {
                    more = true;
                    break;
                }
                picked.push(event.clone());
            }
            picked.reverse();
        }
        MessagePage {
            messages: picked,
            more,
        }
    }

    /// The query's fields as they appear in a history frame.
    fn to_frame(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut frame = serde_json::Map::new();
        frame.insert("type".into(), "history".into());
        if let Some(before) = self.before {
            frame.insert("before".into(), before.into());
        }
        if let Some(after) = self.after {
            frame.insert("after".into(), after.into());
        }
        frame.insert("limit".into(), self.page_size().into());
        if let Some(search) = &self.search {
            frame.insert("q".into(), search.text().into());
        }
        frame
    }
}

fn parse_number(text: &str, field: &'static str, min: u64) -> Result<u64, HistoryQueryError> {
    let max = if field == "limit" {
        u64::from(u32::MAX)
    } else {
        i64::MAX as u64
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or(HistoryQueryError::NotANumber { field, min, max })
}

/// Reads a JSON number field of a history frame.
pub(crate) fn number_field(
    value: Option<serde_json::Value>,
    field: &'static str,
    min: u64,
) -> Result<Option<u64>, HistoryQueryError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(|n| parse_number(&n.to_string(), field, min))
            .transpose()?
            .map(Some)
            .ok_or(HistoryQueryError::NotANumber {
                field,
                min,
                max: i64::MAX as u64,
            }),
        Some(_) => Err(HistoryQueryError::NotANumber {
            field,
            min,
            max: i64::MAX as u64,
        }),
    }
}

/// A client's history request: the query, and an optional `ref` the server
/// echoes in its answer (or in the error refusing it), so that a client
/// with several requests out can tell the answers apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRequest {
    /// What to fetch.
    pub query: HistoryQuery,
    /// Echoed back as is; at most [`REF_MAX_BYTES`] bytes.
    pub reference: Option<String>,
}

impl HistoryRequest {
    /// The frame a server expects: `{"type": "history", "before": .., "after": .., "limit": .., "q": .., "ref": ..}`.
    pub fn to_json(&self) -> String {
        let mut frame = self.query.to_frame();
        if let Some(reference) = &self.reference {
            frame.insert("ref".into(), reference.clone().into());
        }
        serde_json::Value::Object(frame).to_string()
    }
}

/// The words of a search: letters and digits, lowercased. A message
/// matches when every word starts one of its words ("hel" finds "Hello,").
/// Everything else in the text (quotes, `*`, `NEAR(`, punctuation) only
/// separates words: it is never interpreted as search syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchWords {
    text: String,
    words: Vec<String>,
}

impl SearchWords {
    /// Parses `q`.
    ///
    /// ```
    /// use chat_protocol::SearchWords;
    ///
    /// let search = SearchWords::parse("\"NEAR(hel* wor")?;
    /// assert_eq!(search.words(), ["near", "hel", "wor"]);
    /// assert!(SearchWords::parse("hello").unwrap().matches("Hello, world"));
    /// # Ok::<(), chat_protocol::HistoryQueryError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`HistoryQueryError`] when `q` is too long, has too many words, or none.
    pub fn parse(q: &str) -> Result<Self, HistoryQueryError> {
        if q.len() > SEARCH_MAX_BYTES {
            return Err(HistoryQueryError::SearchTooLong);
        }
        let mut words: Vec<String> = Vec::new();
        for word in tokens(q) {
            if !words.contains(&word) {
                words.push(word);
            }
        }
        if words.is_empty() {
            return Err(HistoryQueryError::NoWords);
        }
        if words.len() > SEARCH_MAX_WORDS {
            return Err(HistoryQueryError::TooManyWords);
        }
        Ok(Self {
            text: q.to_owned(),
            words,
        })
    }

    /// The search as the client wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The words searched for, lowercased, each only letters and digits.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether `text` has, for every search word, a word starting with it.
    pub fn matches(&self, text: &str) -> bool {
        let tokens: Vec<String> = tokens(text).collect();
        self.words
            .iter()
            .all(|word| tokens.iter().any(|token| token.starts_with(word.as_str())))
    }
}

/// The words of `text`: runs of letters and digits, lowercased.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// The answer to a history request on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// A readable summary, e.g. "50 earlier messages".
    pub message: String,
    /// The room.
    pub room: RoomName,
    /// The messages, oldest first.
    #[serde(default)]
    pub messages: Vec<ChatEvent>,
    /// Whether the server holds more matching messages beyond this page
    /// (older ones when walking back, newer ones when walking forward).
    #[serde(default)]
    pub more: bool,
    /// The request's `before`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// The request's `after`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The request's `q`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// The request's `ref`, echoed.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

impl HistoryEvent {
    /// The answer to `request` in `room`.
    pub fn answer(room: RoomName, request: &HistoryRequest, page: MessagePage) -> Self {
        let query = &request.query;
        let count = page.messages.len();
        let noun = if count == 1 { "message" } else { "messages" };
        let message = match query.search_words() {
            Some(search) => format!("{count} {noun} matching {:?}", search.text()),
            None if query.is_forward() => format!("{count} later {noun}"),
            None => format!("{count} earlier {noun}"),
        };
        Self {
            message,
            room,
            messages: page.messages,
            more: page.more,
            before: query.before_id(),
            after: query.after_id(),
            q: query.search_words().map(|s| s.text().to_owned()),
            reference: request.reference.clone(),
            ts: crate::unix_millis(),
        }
    }
}

/// The body of `GET /api/rooms/<room>/messages`: one page of messages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<ChatEvent>,
    /// Whether the server holds more matching messages beyond this page.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: u64, text: &str) -> ChatEvent {
        ChatEvent {
            message: text.into(),
            user: "u".into(),
            room: RoomName::new("r").unwrap(),
            id,
            ts: 0,
            emote: false,
        }
    }

    fn ids(page: &MessagePage) -> Vec<u64> {
        page.messages.iter().map(|e| e.id).collect()
    }

    #[test]
    fn pages_walk_back_and_forward() {
        let held: Vec<ChatEvent> = (1..=10).map(|id| chat(id, "x")).collect();
        let page = HistoryQuery::new().limit(3).select(held.iter());
        assert_eq!((ids(&page), page.more), (vec![8, 9, 10], true));
        let page = HistoryQuery::new().before(4).limit(3).select(held.iter());
        assert_eq!((ids(&page), page.more), (vec![1, 2, 3], false));
        let page = HistoryQuery::new().after(2).limit(3).select(held.iter());
        assert_eq!((ids(&page), page.more), (vec![3, 4, 5], true));
        let page = HistoryQuery::new()
            .after(2)
            .before(5)
            .limit(3)
            .select(held.iter());
        assert_eq!((ids(&page), page.more), (vec![3, 4], false));
    }

    #[test]
    fn search_matches_word_prefixes_and_ignores_syntax() {
        let search = SearchWords::parse("Wor* \"hel\" NEAR(").unwrap();
        assert_eq!(search.words(), ["wor", "hel", "near"]);
        assert!(search.matches("hello, near world"));
        assert!(!search.matches("hello world"));
        assert!(
            !search.matches("shell world near"),
            "words match at their start only"
        );
        assert_eq!(
            SearchWords::parse("*** \"\""),
            Err(HistoryQueryError::NoWords)
        );
        assert_eq!(
            SearchWords::parse(&"a ".repeat(150)),
            Err(HistoryQueryError::SearchTooLong)
        );
        assert_eq!(
            SearchWords::parse("a b c d e f g h i"),
            Err(HistoryQueryError::TooManyWords)
        );
        assert!(SearchWords::parse("Zoë").unwrap().matches("ZOË!"));
    }

    #[test]
    fn http_parameters_are_checked() {
        let bad = |b, a, l, q| {
            HistoryQuery::from_params(b, a, l, q)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(Some("abc"), None, None, None).contains("before"));
        assert!(bad(Some("-1"), None, None, None).contains("before"));
        assert!(bad(Some("0"), None, None, None).contains("before"));
        assert!(bad(None, Some("1.5"), None, None).contains("after"));
        assert!(bad(None, None, Some("0"), None).contains("limit"));
        assert!(bad(None, None, Some("99999999999999999999"), None).contains("limit"));
        assert!(bad(Some("5"), Some("4"), None, None).contains("below"));
        assert!(bad(None, None, None, Some("\"*")).contains("no word"));
        let query = HistoryQuery::from_params(Some(""), None, Some("100000"), None).unwrap();
        assert_eq!(
            (query.before_id(), query.page_size()),
            (None, HISTORY_LIMIT_MAX)
        );
    }

    #[test]
    fn answers_round_trip() {
        let request = HistoryRequest {
            query: HistoryQuery::new().before(9).limit(2),
            reference: Some("r1".into()),
        };
        let page = MessagePage {
            messages: vec![chat(7, "a"), chat(8, "b")],
            more: true,
        };
        let answer = HistoryEvent::answer(RoomName::new("r").unwrap(), &request, page);
        assert_eq!(answer.message, "2 earlier messages");
        let json = crate::ServerEvent::History(answer.clone()).to_json();
        assert!(
            json.starts_with(
                r#"{"type":"history","message":"2 earlier messages","room":"r","messages":[{"#
            ),
            "{json}"
        );
        assert!(
            json.contains(r#""more":true,"before":9,"ref":"r1""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<crate::ServerEvent>(&json).unwrap(),
            crate::ServerEvent::History(answer)
        );
        assert_eq!(
            request.to_json(),
            r#"{"before":9,"limit":2,"ref":"r1","type":"history"}"#
        );
    }
}
