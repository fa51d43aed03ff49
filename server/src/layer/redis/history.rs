//! Paging and search over a room's history in Redis (`Layer::history`):
//! the room's stream, read whole (it is bounded by `--history` entries and
//! `--redis-history-bytes`), walked and searched by the same rules as
//! every other layer (`HistoryQuery::select`).

use chat_protocol::{HistoryQuery, MessagePage, RoomName};

use super::RedisLayer;
use super::keys::{Entry, entry, parse_entry};
use crate::layer::LayerError;

impl RedisLayer {
    /// A page of `room`'s history, as `query` says.
    pub(in crate::layer) async fn history(
        &self,
        room: &RoomName,
        query: &HistoryQuery,
    ) -> Result<MessagePage, LayerError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(inner.keys.room(room).log)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .map_err(|err| self.failed("read history", &err))?;
        let events: Vec<_> = entries
            .iter()
            .filter_map(|raw| entry(raw).and_then(|(_, json)| parse_entry(json)))
            .collect();
        Ok(query.select(events.iter()))
    }
}
