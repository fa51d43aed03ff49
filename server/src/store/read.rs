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

/// The newest `limit` messages of room `rid`, newest first.
pub(super) fn newest(
    conn: &Connection,
    rid: i64,
    room: &RoomName,
    limit: usize,
) -> rusqlite::Result<Vec<ChatEvent>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(
        "SELECT id, user, text, emote, ts FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    statement
        .query_map(
            params![rid, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| event(room, row),
        )?
        .collect()
}

/// A page of `room` as `query` asks, oldest first.
pub(super) fn page(
    conn: &Connection,
    room: &RoomName,
    query: &HistoryQuery,
) -> rusqlite::Result<MessagePage> {
    let rid: Option<i64> = conn
        .query_row(
            "SELECT rid FROM rooms WHERE name = ?1",
            [room.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let Some(rid) = rid else {
        return Ok(MessagePage::default());
    };
    let after = query
        .after_id()
        .map_or(0, |id| i64::try_from(id).unwrap_or(i64::MAX));
    let before = query
        .before_id()
        .map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX));
    let limit = i64::from(query.page_size());
    let order = if query.is_forward() { "ASC" } else { "DESC" };
    let mut messages: Vec<ChatEvent> = match query.search_words() {
        None => {
            let sql = format!(
                "SELECT id, user, text, emote, ts FROM messages \
                 WHERE room = ?1 AND id > ?2 AND id < ?3 ORDER BY id {order} LIMIT ?4"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            statement
                .query_map(params![rid, after, before, limit + 1], |row| {
                    event(room, row)
                })?
                .collect::<rusqlite::Result<_>>()?
        }
        Some(search) => {
            // The index covers messages up to `through`; the few stored
            // since (the writer indexes when it has time) are scanned.
            let through: i64 = conn.query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_through'",
                [],
                |row| row.get(0),
            )?;
            let sql = format!(
                "SELECT id, user, text, emote, ts FROM messages \
                 WHERE room = ?1 AND id > ?2 AND id < ?3 AND seq <= ?6 \
                 AND seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?5) \
                 ORDER BY id {order} LIMIT ?4"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let mut found: Vec<ChatEvent> = statement
                .query_map(
                    params![rid, after, before, limit + 1, fts_query(search), through],
                    |row| event(room, row),
                )?
                .collect::<rusqlite::Result<_>>()?;
            let sql = format!(
                "SELECT id, user, text, emote, ts FROM messages \
                 WHERE room = ?1 AND id > ?2 AND id < ?3 AND seq > ?4 ORDER BY id {order}"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(params![rid, after, before, through])?;
            let mut tail = Vec::new();
            while let Some(row) = rows.next()? {
                let message = event(room, row)?;
                if search.matches(&message.message) {
                    tail.push(message);
                    if tail.len() > query.page_size() as usize {
                        break;
                    }
                }
            }
            found.extend(tail);
            if query.is_forward() {
                found.sort_by_key(|e| e.id);
            } else {
                found.sort_by_key(|e| std::cmp::Reverse(e.id));
            }
            found.dedup_by_key(|e| e.id);
            found
        }
    };
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
