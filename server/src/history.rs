//! Paging and search through a room's stored messages, for every client:
//! `GET /api/rooms/<room>/messages?before=&after=&limit=&q=` (scripts, the
//! page) and the typed `history` frame (answered by the session).
//!
//! Both go through [`page`]: the layer picks the messages (memory: what it
//! holds; `--db`: the store), then the page is cut to [`PAGE_MAX_BYTES`] so
//! that one answer stays small whatever the messages' sizes.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_protocol::{HistoryQuery, MessagePage, RoomName};

use crate::AppState;
use crate::layer::LayerError;

/// The most message text (and names) one page carries, in bytes; a page
/// cut short says `more`, and the client asks again from where it ends.
pub(crate) const PAGE_MAX_BYTES: usize = 256 * 1024;

/// A page of `room`'s messages as `query` asks, at most [`PAGE_MAX_BYTES`].
pub(crate) async fn page(
    state: &AppState,
    room: &RoomName,
    query: &HistoryQuery,
) -> Result<MessagePage, LayerError> {
    let mut page = state.layer().history(room, query).await?;
    cap_bytes(&mut page, query.is_forward());
    Ok(page)
}

/// Cuts `page` to [`PAGE_MAX_BYTES`], keeping the messages nearest to where
/// the walk started (the newest when walking back), and at least one.
pub(crate) fn cap_bytes(page: &mut MessagePage, forward: bool) {
    let size = |e: &chat_protocol::ChatEvent| e.message.len() + e.user.len() + 64;
    let mut total = 0;
    let mut keep = 0;
    let order: Box<dyn Iterator<Item = &chat_protocol::ChatEvent>> = if forward {
        Box::new(page.messages.iter())
    } else {
        Box::new(page.messages.iter().rev())
    };
    for event in order {
        total += size(event);
        if total > PAGE_MAX_BYTES && keep > 0 {
            break;
        }
        keep += 1;
    }
    if keep < page.messages.len() {
        if forward {
            page.messages.truncate(keep);
        } else {
            page.messages.drain(..page.messages.len() - keep);
        }
        page.more = true;
    }
}

/// `GET /api/rooms/<room>/messages`: `{"messages": [...oldest first],
/// "more": bool}`; a bad room or parameter is a 400 with the reason, an
/// unavailable layer a 503.
pub(crate) async fn api_messages(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let room = match path {
        Ok(Path(name)) => match RoomName::new(name) {
            Ok(room) => room,
            Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.to_string()),
        },
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.body_text()),
    };
    let (mut before, mut after, mut limit, mut q) = (None, None, None, None);
    for (key, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "before" => &mut before,
            "after" => &mut after,
            "limit" => &mut limit,
            "q" => &mut q,
            // `token` and anything else: not ours.
            _ => continue,
        };
        if slot.is_some() {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("{key} is given more than once"),
            );
        }
        *slot = Some(value.into_owned());
    }
    let query = match HistoryQuery::from_params(
        before.as_deref(),
        after.as_deref(),
        limit.as_deref(),
        q.as_deref(),
    ) {
        Ok(query) => query,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    match page(&state, &room, &query).await {
        Ok(page) => ([(header::CACHE_CONTROL, "no-store")], Json(page)).into_response(),
        Err(err) => refuse(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "error": reason })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use chat_protocol::ChatEvent;

    use super::*;

    fn page_of(sizes: &[usize]) -> MessagePage {
        let messages = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| ChatEvent {
                message: "x".repeat(size),
                user: String::new(),
                room: RoomName::new("r").unwrap(),
                id: i as u64 + 1,
                ts: 0,
                emote: false,
            })
            .collect();
        MessagePage {
            messages,
            more: false,
        }
    }

    #[test]
    fn pages_are_cut_to_the_byte_cap_from_the_far_end() {
        let big = PAGE_MAX_BYTES / 2;
        let mut back = page_of(&[big, big, big]);
        cap_bytes(&mut back, false);
        assert_eq!(back.messages.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
        assert!(back.more);
        let mut forward = page_of(&[big, big, big]);
        cap_bytes(&mut forward, true);
        assert_eq!(
            forward.messages.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1]
        );
        let mut huge = page_of(&[PAGE_MAX_BYTES * 2]);
        cap_bytes(&mut huge, false);
        assert_eq!(huge.messages.len(), 1, "one message always fits");
        assert!(!huge.more);
        let mut small = page_of(&[10, 10]);
        cap_bytes(&mut small, false);
        assert_eq!((small.messages.len(), small.more), (2, false));
    }
}
