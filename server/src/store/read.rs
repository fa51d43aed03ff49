//! Reading the store: a page of a room's messages, walked back or forward,
//! optionally searched with FTS5.
//!
//! Search words reach FTS5 only as quoted strings of letters and digits
//! (`"word"*`, a word-prefix match), built from [`chat_protocol::SearchWords`],
//! so nothing a user types is ever read as FTS5 syntax.

use chat_protocol::{ChatEvent, HistoryQuery, MessagePage, RoomName, SearchWords};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn event(room: &RoomName, row: &Row<'_>) -> rusqlite::Result<ChatEvent> {
    Ok(ChatEvent {
        id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
        user: row.get(1)?,
        message: row.get(2)?,
        emote: row.get(3)?,
        ts: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        room: room.clone(),
    })
}

/// The FTS5 query for `search`: every word as a quoted prefix, all required.
pub(super) fn fts_query(search: &SearchWords) -> String {
    search
        .words()
        .iter()
        .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of a `*_through` key of `meta`: messages up to this seq are
/// in that index.
pub(super) fn through(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
        [key],
        |row| row.get(0),
    )
}

/// A room's messages through `message_ids` (parameters: rid, after,
/// before, limit, through, and with `search` the FTS5 query), in id
/// `order` ("ASC" or "DESC").
pub(super) fn indexed_sql(search: bool, order: &str) -> String {
    let matching = if search {
        "AND i.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?6) "
    } else {
        ""
    };
    format!(
        "SELECT m.id, m.user, m.text, m.emote, m.ts FROM message_ids i \
         JOIN messages m ON m.seq = i.seq \
         WHERE i.room = ?1 AND i.id > ?2 AND i.id < ?3 AND i.seq <= ?5 {matching}\
         ORDER BY i.id {order} LIMIT ?4"
    )
}

/// A room's messages stored past `through` (parameters: rid, after,
/// before, through): a rowid range.
pub(super) const TAIL_SQL: &str = "SELECT id, user, text, emote, ts FROM messages \
     WHERE seq > ?4 AND room = ?1 AND id > ?2 AND id < ?3";

/// Which of a room's messages a read wants: ids in `after..before`
/// (both excluded), the first `limit` in id order (from the oldest when
/// `forward`, else from the newest), optionally only those containing
/// every search word.
struct Span<'a> {
    rid: i64,
    after: i64,
    before: i64,
    limit: usize,
    forward: bool,
    search: Option<&'a SearchWords>,
}

impl Span<'_> {
    /// Orders `found` as asked, drops repeats and keeps the first `limit`.
    fn finish(&self, mut found: Vec<ChatEvent>) -> Vec<ChatEvent> {
        if self.forward {
            found.sort_by_key(|e| e.id);
        } else {
            found.sort_by_key(|e| std::cmp::Reverse(e.id));
        }
        found.dedup_by_key(|e| e.id);
        found.truncate(self.limit);
        found
    }
}

/// The messages `span` asks for, in its order. Must run inside one read
/// transaction (or on the writer's connection), so that `ids_through` and
/// the rows agree.
///
/// Two parts: what `message_ids` covers (seq up to `ids_through`, and for
/// a search up to `fts_through` too) through the indexes, and the rows
/// stored since, scanned by seq (a rowid range: the writer keeps it
/// short, see `writer.rs`). A room's ids grow with seq, so the scanned
/// part holds its newest messages.
fn select(conn: &Connection, room: &RoomName, span: &Span<'_>) -> rusqlite::Result<Vec<ChatEvent>> {
    if span.limit == 0 {
        return Ok(Vec::new());
    }
    let order = if span.forward { "ASC" } else { "DESC" };
    let limit = i64::try_from(span.limit).unwrap_or(i64::MAX);
    let mut indexed = through(conn, "ids_through")?;
    let mut found: Vec<ChatEvent> = if let Some(search) = span.search {
        indexed = indexed.min(through(conn, "fts_through")?);
        let mut statement = conn.prepare_cached(&indexed_sql(true, order))?;
        statement
            .query_map(
                params![
                    span.rid,
                    span.after,
                    span.before,
                    limit,
                    indexed,
                    fts_query(search)
                ],
                |row| event(room, row),
            )?
            .collect::<rusqlite::Result<_>>()?
    } else {
        let mut statement = conn.prepare_cached(&indexed_sql(false, order))?;
        statement
            .query_map(
                params![span.rid, span.after, span.before, limit, indexed],
                |row| event(room, row),
            )?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut statement = conn.prepare_cached(TAIL_SQL)?;
    let mut rows = statement.query(params![span.rid, span.after, span.before, indexed])?;
    while let Some(row) = rows.next()? {
        let message = event(room, row)?;
        if span
            .search
            .is_none_or(|search| search.matches(&message.message))
        {
            found.push(message);
        }
    }
    Ok(span.finish(found))
}

/// The newest `limit` messages of room `rid`, newest first.
pub(super) fn newest(
    conn: &Connection,
    rid: i64,
    room: &RoomName,
    limit: usize,
) -> rusqlite::Result<Vec<ChatEvent>> {
    let span = Span {
        rid,
        after: 0,
        before: i64::MAX,
        limit,
        forward: false,
        search: None,
    };
    select(conn, room, &span)
}

/// A page of `room` as `query` asks, oldest first.
pub(super) fn page(
    conn: &Connection,
    room: &RoomName,
    query: &HistoryQuery,
) -> rusqlite::Result<MessagePage> {
    // One snapshot for the `*_through` marks and the rows they describe.
    let tx = conn.unchecked_transaction()?;
    let rid: Option<i64> = tx
        .query_row(
            "SELECT rid FROM rooms WHERE name = ?1",
            [room.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let Some(rid) = rid else {
        return Ok(MessagePage::default());
    };
    let span = Span {
        rid,
        after: query
            .after_id()
            .map_or(0, |id| i64::try_from(id).unwrap_or(i64::MAX)),
        before: query
            .before_id()
            .map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX)),
        limit: query.page_size() as usize + 1,
        forward: query.is_forward(),
        search: query.search_words(),
    };
    let mut messages = select(&tx, room, &span)?;
    tx.finish()?;
    let more = messages.len() > query.page_size() as usize;
    messages.truncate(query.page_size() as usize);
    if !query.is_forward() {
        messages.reverse();
    }
    Ok(MessagePage { messages, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_become_quoted_prefixes() {
        let search = SearchWords::parse("\"NEAR(hel* OR wor\"").unwrap();
        assert_eq!(fts_query(&search), "\"near\"* \"hel\"* \"or\"* \"wor\"*");
    }
}
