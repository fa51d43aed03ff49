//! The HTTP side over real sockets: the tutorial's pages, assets, the room
//! list and the health check.

mod common;

use common::*;

#[tokio::test]
async fn root_redirects_to_the_picker() {
    let server = TestServer::start().await;
    let response = get(server.addr(), "/").await;
    assert!(
        matches!(response.status, 301 | 302 | 303 | 307 | 308),
        "{response:?}"
    );
    assert_eq!(response.header("location"), Some("/chat/"));
}

#[tokio::test]
async fn the_picker_has_the_tutorial_ids_and_a_strict_policy() {
    let server = TestServer::start().await;
    let page = get(server.addr(), "/chat/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.contains(r#"id="room-name-input""#)
            && page.body.contains(r#"id="room-name-submit""#)
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "nothing from outside the server"
    );
}

#[tokio::test]
async fn the_room_page_carries_the_room_and_the_tutorial_ids() {
    let server = TestServer::start().await;
    for path in ["/chat/lobby/", "/chat/lobby"] {
        let page = get(server.addr(), path).await;
        assert_eq!(page.status, 200, "{path}");
        for id in ["chat-log", "chat-message-input", "chat-message-submit"] {
            assert!(page.body.contains(&format!(r#"id="{id}""#)), "{id}");
        }
        assert!(
            page.body
                .contains(r#"<script id="room-name" type="application/json">"lobby"</script>"#)
        );
    }
}

#[tokio::test]
async fn the_room_page_refuses_bad_names_with_a_friendly_escaped_page() {
    let server = TestServer::start().await;
    let long = "a".repeat(101);
    for path in [
        "/chat/%3C%2Fscript%3E/",
        "/chat/a%20b/",
        "/chat/../x/",
        "/chat/%00/",
        "/chat/caf%C3%A9/",
        &format!("/chat/{long}/"),
    ] {
        let page = get(server.addr(), path).await;
        assert_eq!(page.status, 400, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(page.body.contains("not a valid room name"), "{path}");
        assert!(
            !page.body.contains("</script>") && !page.body.contains("<'"),
            "{path}: unescaped: {}",
            page.body
        );
    }
    let page = get(server.addr(), "/chat/%3C%2Fscript%3E/").await;
    assert!(page.body.contains("&#x27;&lt;&#x27;"), "{}", page.body);
}

#[tokio::test]
async fn assets_are_served_with_types_and_caching() {
    let server = TestServer::start().await;
    for (name, kind) in [
        ("chat.css", "text/css"),
        ("index.js", "text/javascript"),
        ("room.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let asset = get(server.addr(), &format!("/static/{name}")).await;
        assert_eq!(asset.status, 200, "{name}");
        assert!(
            asset.header("content-type").unwrap().starts_with(kind),
            "{name}"
        );
        assert!(
            asset.header("cache-control").unwrap().contains("max-age"),
            "{name}"
        );
        let etag = asset.header("etag").unwrap().to_owned();
        let again = raw_http(
            server.addr(),
            &format!("GET /static/{name} HTTP/1.1\r\nIf-None-Match: {etag}"),
        )
        .await;
        assert_eq!(again.status, 304, "{name}");
    }
    assert_eq!(get(server.addr(), "/static/nope.js").await.status, 404);
}

#[tokio::test]
async fn api_rooms_lists_active_rooms_with_member_counts() {
    let server = TestServer::start().await;
    let empty: chat_protocol::RoomList =
        serde_json::from_str(&get(server.addr(), "/api/rooms").await.body).unwrap();
    assert!(empty.rooms.is_empty());
    let _a = server.joined("busy", "a").await;
    let _b = server.joined("busy", "b").await;
    let _c = server.joined("quiet", "c").await;
    let response = get(server.addr(), "/api/rooms").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let list: chat_protocol::RoomList = serde_json::from_str(&response.body).unwrap();
    let rows: Vec<(String, u64)> = list
        .rooms
        .iter()
        .map(|r| (r.name.to_string(), r.members))
        .collect();
    assert_eq!(rows, vec![("busy".to_owned(), 2), ("quiet".to_owned(), 1)]);

    let fetched = chat_protocol::fetch_rooms(&server.url(), &chat_protocol::ConnectOptions::new())
        .await
        .unwrap();
    assert_eq!(fetched, list, "the protocol client reads the same list");
}

#[tokio::test]
async fn healthz_answers() {
    let server = TestServer::start().await;
    let response = get(server.addr(), "/healthz").await;
    assert_eq!(response.status, 200);
    assert!(response.body.contains("ok"));
}

#[tokio::test]
async fn a_plain_get_on_the_socket_url_explains_itself() {
    let server = TestServer::start().await;
    let response = get(server.addr(), "/ws/chat/lobby/").await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("WebSocket"), "{}", response.body);
}
