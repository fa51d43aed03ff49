//! The HTTP side: the tutorial's two pages (`/chat/` and `/chat/<room>/`),
//! their static assets, `/api/rooms`, `/api/rooms/<room>/names/<name>`
//! and `/healthz`.
//!
//! Pages are compiled into the binary (`include_str!`) so the server needs
//! no files and no internet. Scripts live in their own files, so the pages
//! can carry a Content-Security-Policy that forbids inline script.

use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chat_protocol::RoomList;

use crate::AppState;
use crate::access;
use crate::rejection::parse_room_path;

/// Only our own origin, no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// A static asset compiled into the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/chat.css"),
    },
    Asset {
        name: "index.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/index.js"),
    },
    Asset {
        name: "room.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/room.js"),
    },
    Asset {
        name: "token.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/token.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/favicon.svg"),
    },
];

const INDEX_HTML: &str = include_str!("../assets/index.html");
const ROOM_HTML: &str = include_str!("../assets/room.html");
const ERROR_HTML: &str = include_str!("../assets/error.html");
const TOKEN_HTML: &str = include_str!("../assets/token.html");

/// A fingerprint of every asset, put into asset URLs (`?v=...`) so that
/// assets can be cached for a year and still change with each release.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: tiny, stable across builds, plenty to tell releases apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for asset in ASSETS {
        for byte in asset.body.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
});

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    // Pages, the room list and the metrics need the token when the server
    // has one; assets (no secrets in them) and the health check do not.
    let protected = Router::new()
        .route("/chat/", get(index_page))
        .route("/chat/{*room}", get(room_page))
        .route("/api/rooms", get(api_rooms))
        .route(
            "/api/rooms/{room}/messages",
            get(crate::history::api_messages),
        )
        .route("/api/rooms/{room}/names/{name}", get(api_name))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/chat/") }))
        .route("/chat", get(|| async { Redirect::permanent("/chat/") }))
        .route("/static/{name}", get(static_asset))
        .merge(protected)
}

/// The routes that answer whatever `Host` a request names: the health
/// check (load balancers probe by address).
pub(crate) fn health_routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// Refuses requests without a valid token (401), when tokens are set.
async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.config().access.requires_token() {
        return next.run(request).await;
    }
    let Err(rejection) = access::check_request_token(&state, request.headers(), request.uri())
    else {
        return next.run(request).await;
    };
    if !request.uri().path().starts_with("/chat") {
        return rejection.respond(&state);
    }
    // A page gets a page, which brings the tab's token back on a reload
    // (the pages take it out of the address bar).
    state.metrics().refused(rejection.label());
    let body = render(TOKEN_HTML, &[("reason", &escape_html(rejection.reason()))]);
    let mut page = html_page(StatusCode::UNAUTHORIZED, body);
    page.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    page
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    metrics
        .rooms
        .set(i64::try_from(state.registry().len()).unwrap_or(i64::MAX));
    metrics.redis_up.set(i64::from(state.layer().health().ok));
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        metrics.render(),
    )
        .into_response()
}

async fn index_page() -> Response {
    html_page(StatusCode::OK, render(INDEX_HTML, &[]))
}

async fn room_page(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let room = match path
        .map_err(|err| err.body_text())
        .and_then(|Path(raw)| parse_room_path(&raw).map_err(|err| err.to_string()))
    {
        Ok(room) => room,
        Err(reason) => {
            let body = render(ERROR_HTML, &[("reason", &escape_html(&reason))]);
            return html_page(StatusCode::BAD_REQUEST, body);
        }
    };
    let body = render(
        ROOM_HTML,
        &[
            ("room_name", &escape_html(room.as_str())),
            ("room_name_json", &json_script(room.as_str())),
        ],
    );
    html_page(StatusCode::OK, body)
}

async fn static_asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let etag = format!("\"{}\"", *ASSET_VERSION);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, asset.content_type.to_owned()),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_owned(),
            ),
            (header::ETAG, etag),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        asset.body,
    )
        .into_response()
}

async fn api_rooms(State(state): State<AppState>) -> Response {
    match state.layer().rooms().await {
        Ok(rooms) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(RoomList { rooms }),
        )
            .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

/// The `key` of `GET /api/rooms/<room>/names/<name>?key=`.
#[derive(Debug, serde::Deserialize)]
struct NameQuery {
    key: Option<String>,
}

/// `GET /api/rooms/<room>/names/<name>?key=`: whether `name` is free in
/// `room` for the holder of `key` (see `names`). The page asks when its
/// socket is refused before opening, since a browser cannot read the
/// refusal's status (409).
async fn api_name(
    State(state): State<AppState>,
    Path((room, name)): Path<(String, String)>,
    query: axum::extract::Query<NameQuery>,
) -> Response {
    let bad = |reason: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": reason })),
        )
            .into_response()
    };
    let room = match parse_room_path(&room) {
        Ok(room) => room,
        Err(err) => return bad(err.to_string()),
    };
    let name = match chat_protocol::UserName::new(name) {
        Ok(name) => name,
        Err(err) => return bad(err.to_string()),
    };
    let identity = match query.key.as_deref() {
        None | Some("") => crate::names::Identity::anonymous(),
        Some(key) => match crate::names::Identity::from_key(key) {
            Ok(identity) => identity,
            Err(err) => return bad(err.to_string()),
        },
    };
    match state
        .layer()
        .name_free(&room, name.as_str(), &identity)
        .await
    {
        Ok(free) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "room": room, "name": name.as_str(), "free": free })),
        )
            .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

/// 200 when the server can deliver; 503 with the reason when its layer
/// (Redis) is down, so a load balancer can route around it.
async fn healthz(State(state): State<AppState>) -> Response {
    let health = state.layer().health();
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if health.ok { "ok" } else { "degraded" },
        "layer": health.layer,
        "detail": health.detail,
    });
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Fills `{{name}}` placeholders (and `{{v}}`, the asset version).
fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut page = template.replace("{{v}}", &ASSET_VERSION);
    for (name, value) in values {
        page = page.replace(&format!("{{{{{name}}}}}"), value);
    }
    page
}

fn html_page(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string safe inside `<script type="application/json">`, escaping
/// `<`, `>` and `&` as Django's `json_script` does.
fn json_script(text: &str) -> String {
    serde_json::Value::from(text)
        .to_string()
        .replace('<', "\\u003C")
        .replace('>', "\\u003E")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_for_html_and_script_data() {
        assert_eq!(
            escape_html("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#x27;"
        );
        assert_eq!(
            json_script("</script><!--&"),
            "\"\\u003C/script\\u003E\\u003C!--\\u0026\""
        );
    }

    #[test]
    fn render_fills_every_placeholder() {
        let page = render("{{a}} {{b}} {{a}} {{v}}", &[("a", "1"), ("b", "2")]);
        assert_eq!(page, format!("1 2 1 {}", *ASSET_VERSION));
    }

    #[test]
    fn templates_have_the_tutorial_ids_and_no_inline_script() {
        assert!(
            INDEX_HTML.contains("id=\"room-name-input\"")
                && INDEX_HTML.contains("id=\"room-name-submit\"")
        );
        for id in [
            "chat-log",
            "chat-message-input",
            "chat-message-submit",
            "room-name",
        ] {
            assert!(ROOM_HTML.contains(&format!("id=\"{id}\"")), "{id}");
        }
        for page in [INDEX_HTML, ROOM_HTML, ERROR_HTML, TOKEN_HTML] {
            for script in page.split("<script").skip(1) {
                let tag = &script[..script.find('>').unwrap()];
                assert!(
                    tag.contains("src=") || tag.contains("application/json"),
                    "inline script: {tag}"
                );
            }
        }
    }
}
