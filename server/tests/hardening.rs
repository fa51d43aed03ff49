//! Each defence of "Limits and security", over real sockets: origin check,
//! rate limits, caps, keepalive and handshake timeouts, tokens, TLS, the
//! drain on shutdown, and the metrics.

// Helpers outside #[test] functions unwrap as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use chat_protocol::{
    ClientError, ConnectOptions, ErrorCode, Origin, RoomName, ServerEvent, ServerUrl, TlsOptions,
    UserName, close,
};
use chat_server::{Access, Config, Limits, TlsFiles};
use common::*;

fn with_limits(limits: Limits) -> Config {
    Config {
        limits,
        ..Config::default()
    }
}

async fn connect(
    server: &TestServer,
    room: &str,
    options: ConnectOptions,
) -> Result<chat_protocol::Client, ClientError> {
    chat_protocol::Client::connect(&server.url(), &RoomName::new(room).unwrap(), &options).await
}

fn refused_status(result: Result<chat_protocol::Client, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, reason }) => (status, reason),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn a_page_of_another_site_cannot_open_a_socket() {
    let server = TestServer::start().await;
    let evil = ConnectOptions::new().origin(Origin::Custom("http://evil.example".into()));
    let (status, reason) = refused_status(connect(&server, "lobby", evil).await);
    assert_eq!(status, 403);
    assert!(reason.contains("evil.example"), "{reason}");
    // The server's own pages, and clients that send no Origin, are fine.
    assert!(
        connect(&server, "lobby", ConnectOptions::new())
            .await
            .is_ok()
    );
    assert!(
        connect(&server, "lobby", ConnectOptions::new().origin(Origin::Omit))
            .await
            .is_ok()
    );

    let allowed = Access {
        allowed_origins: vec!["http://app.example".into()],
        ..Access::new()
    };
    let server = TestServer::start_with(Config {
        access: allowed,
        ..Config::default()
    })
    .await;
    let app = ConnectOptions::new().origin(Origin::Custom("http://app.example".into()));
    assert!(
        connect(&server, "lobby", app).await.is_ok(),
        "--allowed-origin"
    );
}

#[tokio::test]
async fn a_typed_flood_is_refused_then_closed_and_others_are_unaffected() {
    let limits = Limits {
        rate_per_sec: 5.0,
        rate_burst: 5,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let (mut watcher, _) = server.joined("flood", "watcher").await;
    let (flooder, _) = server.joined("flood", "flooder").await;
    let (tx, mut events) = flooder.split();
    let sending = tokio::spawn(async move {
        for n in 0..100 {
            if tx.say(&format!("flood {n}")).await.is_err() {
                break;
            }
        }
    });
    let (mut refused, mut closed) = (0, None);
    while let Some(event) = within(events.next()).await {
        match event {
            Ok(ServerEvent::Error(error)) => {
                assert_eq!(error.code, ErrorCode::RateLimited);
                assert!(error.message.contains("NOT delivered"), "{}", error.message);
                refused += 1;
            }
            Err(ClientError::Closed { code, reason }) => {
                closed = Some((code, reason));
                break;
            }
            _ => {}
        }
    }
    sending.await.unwrap();
    assert!(refused >= 1, "the flooder is told first");
    let (code, reason) = closed.expect("then closed");
    assert_eq!(code, Some(close::POLICY_VIOLATION));
    assert!(reason.contains("rate limit"), "{reason}");
    // The watcher saw the burst that was allowed, and the room still works.
    let mut seen = 0;
    loop {
        let chat = next_chat(&mut watcher).await;
        if chat.user == "watcher" {
            break;
        }
        seen += 1;
        if seen == 5 {
            watcher.say("still fine").await.unwrap();
        }
    }
    assert_eq!(seen, 5, "exactly the burst got through");
}

#[tokio::test]
async fn a_plain_flood_is_slowed_down_losing_nothing_then_closed_if_it_keeps_on() {
    // Slowed down, nothing lost. The flood-close is set far beyond what
    // this part could take on any machine: a busy one reads the flooder
    // late, which must not turn "slowed down" into "closed".
    let limits = Limits {
        rate_per_sec: 20.0,
        rate_burst: 10,
        flood_close_after: WITHIN * 6,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let (mut watcher, _) = server.joined("throttle", "watcher").await;
    // Before the connection: its bucket fills no earlier than this.
    let started = Instant::now();
    let mut plain = server.plain("throttle").await;
    for n in 0..30 {
        send_text(&mut plain, &format!(r#"{{"message": "m{n}"}}"#)).await;
    }
    for n in 0..30 {
        assert_eq!(
            next_chat(&mut watcher).await.message,
            format!("m{n}"),
            "nothing lost, in order"
        );
    }
    // A lower bound only, which the limits set: the bucket holds 10 and
    // gains 20 a second from the connection on, so the 30th message goes
    // out a second after it at the earliest, however fast the machine
    // (less the rounding of the limit's millisecond clock).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(990),
        "20 over the burst at 20/s take a second: {took:?}"
    );

    // A plain client that floods on and on is closed once it has been
    // slowed down for `flood_close_after` without a pause.
    let flood_close_after = Duration::from_millis(500);
    let limits = Limits {
        rate_per_sec: 20.0,
        rate_burst: 10,
        flood_close_after,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let (mut watcher, _) = server.joined("throttle", "watcher").await;
    let (tx, mut rx) = futures_util::StreamExt::split(server.plain("throttle").await);
    // The flooder reads as a real client does: it stops at the close.
    let closed = tokio::spawn(async move {
        loop {
            match futures_util::StreamExt::next(&mut rx).await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), Instant::now());
                }
                Some(Ok(_)) => {}
                other => panic!("the flooder's connection ended without a close frame: {other:?}"),
            }
        }
    });
    let flooding = tokio::spawn(async move {
        let mut tx = tx;
        let mut sent = 0u32;
        while futures_util::SinkExt::send(
            &mut tx,
            tokio_tungstenite::tungstenite::Message::text(format!(r#"{{"message": "f{sent}"}}"#)),
        )
        .await
        .is_ok()
        {
            sent += 1;
        }
        sent
    });
    let flood_started = Instant::now();
    // Fails rather than hangs; the bound is not a timing claim.
    let (code, closed_at) = tokio::time::timeout(WITHIN * 3, closed)
        .await
        .expect("the flooder was never closed")
        .unwrap();
    assert_eq!(code, close::POLICY_VIOLATION);
    assert!(
        closed_at - flood_started >= flood_close_after,
        "closed after {:?}, before flooding for {flood_close_after:?}",
        closed_at - flood_started
    );
    flooding.abort();
    // What the server took before the close reached the room, in order:
    // the burst at least (each waited for as long as any event may take),
    // then whatever else until the room falls silent.
    let mut expected = 0;
    loop {
        let wait = if expected < 10 { WITHIN } else { SILENCE };
        match tokio::time::timeout(wait, watcher.next()).await {
            Ok(Some(Ok(ServerEvent::Chat(chat)))) => {
                assert_eq!(chat.message, format!("f{expected}"), "in order, none lost");
                expected += 1;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the watcher lost its connection: {other:?}"),
            Err(_) => break,
        }
    }
    assert!(
        expected >= 10,
        "at least the burst went through: {expected}"
    );
}

#[tokio::test]
async fn rate_limit_zero_turns_it_off() {
    let server = TestServer::start_with(with_limits(Limits {
        rate_per_sec: 0.0,
        rate_burst: 1,
        ..Limits::default()
    }))
    .await;
    let (mut client, _) = server.joined("fast", "fast").await;
    for n in 0..600 {
        client.say(&n.to_string()).await.unwrap();
    }
    for n in 0..600 {
        assert_eq!(next_chat(&mut client).await.message, n.to_string());
    }
}

#[tokio::test]
async fn caps_refuse_with_a_reason_before_the_upgrade() {
    let limits = Limits {
        max_connections: 3,
        max_connections_per_ip: 2,
        max_rooms: 2,
        max_members_per_room: 0,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let _a = connect(&server, "one", ConnectOptions::new())
        .await
        .unwrap();
    let _b = connect(&server, "two", ConnectOptions::new())
        .await
        .unwrap();
    let (status, reason) = refused_status(connect(&server, "three", ConnectOptions::new()).await);
    assert_eq!(status, 503, "max rooms");
    assert!(reason.contains("too many rooms"), "{reason}");
    let (status, reason) = refused_status(connect(&server, "one", ConnectOptions::new()).await);
    assert_eq!(status, 429, "per address");
    assert!(reason.contains("your address"), "{reason}");

    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let _a = connect(&server, "r", ConnectOptions::new()).await.unwrap();
    let b = connect(&server, "r", ConnectOptions::new()).await.unwrap();
    let (status, reason) = refused_status(connect(&server, "r", ConnectOptions::new()).await);
    assert_eq!(status, 503, "server full");
    assert!(reason.contains("server is full"), "{reason}");
    b.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.handle().open_sessions() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        connect(&server, "r", ConnectOptions::new()).await.is_ok(),
        "a freed place is reused"
    );

    let limits = Limits {
        max_members_per_room: 1,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let _a = connect(&server, "small", ConnectOptions::new())
        .await
        .unwrap();
    let (status, reason) = refused_status(connect(&server, "small", ConnectOptions::new()).await);
    assert_eq!(status, 503);
    assert!(reason.contains("room is full"), "{reason}");
}

#[tokio::test]
async fn new_connections_per_address_are_limited_when_asked() {
    let limits = Limits {
        new_connections_per_ip_per_sec: 2.0,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(match connect(&server, "r", ConnectOptions::new()).await {
            Ok(_) => 101,
            Err(ClientError::Refused { status, .. }) => status,
            Err(other) => panic!("{other}"),
        });
    }
    assert_eq!(statuses, [101, 101, 429, 429]);
}

#[tokio::test]
async fn a_silent_connection_is_pinged_then_dropped() {
    let limits = Limits {
        ping_interval: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    // A live client answers pings (tungstenite does, while it reads) and stays.
    let (alive, _) = server.joined("ka", "alive").await;
    let (alive_tx, mut alive_events) = alive.split();
    let reader = tokio::spawn(async move {
        loop {
            match alive_events.next().await {
                Some(Ok(ServerEvent::Chat(chat))) if chat.message == "still here" => return true,
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    });
    // A half-open peer: completes the handshake, then never reads or answers.
    let addr = server.addr();
    let dead = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.write_all(
            format!(
                "GET /ws/chat/ka/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let started = Instant::now();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Read (without answering) until the server hangs up.
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    });
    let dropped_after = within(dead).await.unwrap();
    assert!(
        dropped_after < Duration::from_secs(3),
        "dropped after {dropped_after:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    alive_tx.say("still here").await.unwrap();
    assert!(within(reader).await.unwrap(), "an answering client stays");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let addr = server.addr();
    let outcome = tokio::task::spawn_blocking(move || {
        let silent = {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 256];
            let _ = tcp.read(&mut buf);
            started.elapsed()
        };
        let slowloris = {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let started = Instant::now();
            let mut closed = None;
            for byte in b"GET /chat/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
                .iter()
                .cycle()
                .take(200)
            {
                if tcp.write_all(&[*byte]).is_err() {
                    closed = Some(started.elapsed());
                    break;
                }
                let mut buf = [0u8; 256];
                if let Ok(0) = tcp.read(&mut buf) {
                    closed = Some(started.elapsed());
                    break;
                }
            }
            closed
        };
        (silent, slowloris)
    });
    let (silent, slowloris) = within(outcome).await.unwrap();
    assert!(
        silent < Duration::from_secs(2),
        "a silent client was kept {silent:?}"
    );
    let slowloris = slowloris.expect("a trickling client is dropped");
    assert!(
        slowloris < Duration::from_secs(3),
        "a trickling client was kept {slowloris:?}"
    );
}

#[tokio::test]
async fn a_token_guards_the_socket_the_pages_and_the_api() {
    let access = Access {
        tokens: vec!["s3cret-token".into()],
        ..Access::new()
    };
    let server = TestServer::start_with(Config {
        access,
        ..Config::default()
    })
    .await;
    let (status, reason) = refused_status(connect(&server, "r", ConnectOptions::new()).await);
    assert_eq!(status, 401);
    assert!(
        reason.contains("requires a token") && !reason.contains("s3cret"),
        "{reason}"
    );
    let wrong = ConnectOptions::new().token(Some("guess".into()));
    assert_eq!(refused_status(connect(&server, "r", wrong).await).0, 401);
    let right = ConnectOptions::new().token(Some("s3cret-token".into()));
    assert!(connect(&server, "r", right).await.is_ok());
    let query = format!("ws://{}/ws/chat/r/?token=s3cret-token", server.addr());
    assert!(
        tokio_tungstenite::connect_async(query).await.is_ok(),
        "browsers pass it in the query"
    );

    let url = server.url();
    assert!(matches!(
        chat_protocol::fetch_rooms(&url, &ConnectOptions::new()).await,
        Err(ClientError::Refused { status: 401, .. })
    ));
    let with_token = ConnectOptions::new().token(Some("s3cret-token".into()));
    assert!(
        chat_protocol::fetch_rooms(&url, &with_token).await.is_ok(),
        "the room picker passes the token"
    );
    for path in ["/chat/", "/chat/r/", "/api/rooms", "/metrics"] {
        assert_eq!(get(server.addr(), path).await.status, 401, "{path}");
        assert_eq!(
            get(server.addr(), &format!("{path}?token=s3cret-token"))
                .await
                .status,
            200,
            "{path}"
        );
        let bearer = raw_http(
            server.addr(),
            &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer s3cret-token"),
        )
        .await;
        assert_eq!(bearer.status, 200, "{path}");
    }
    assert_eq!(
        get(server.addr(), "/healthz").await.status,
        200,
        "the health check stays open"
    );
    assert_eq!(
        get(server.addr(), "/static/room.js").await.status,
        200,
        "assets hold no secrets"
    );
}

/// A private CA and a certificate for localhost signed by it.
fn private_ca(dir: &std::path::Path) -> (TlsFiles, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "chat test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (files, ca_file)
}

#[tokio::test]
async fn tls_serves_wss_and_https_and_clients_trust_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (files, ca_file) = private_ca(dir.path());
    let server = TestServer::start_with(Config {
        tls: Some(files),
        ..Config::default()
    })
    .await;
    let url = ServerUrl::parse(&format!("wss://localhost:{}", server.addr().port())).unwrap();
    let tls = TlsOptions {
        ca_file: Some(ca_file),
    };
    let options = ConnectOptions::new()
        .name(UserName::new("secure").unwrap())
        .tls(tls.clone());
    let mut client = chat_protocol::Client::connect(&url, &RoomName::new("tls").unwrap(), &options)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut client).await,
        ServerEvent::Welcome(_)
    ));
    client.say("over TLS").await.unwrap();
    assert_eq!(next_chat(&mut client).await.message, "over TLS");
    let rooms = chat_protocol::fetch_rooms(&url, &ConnectOptions::new().tls(tls.clone()))
        .await
        .unwrap();
    assert_eq!(rooms.rooms.len(), 1, "https works too");
    // Without the private CA the certificate is not trusted.
    let untrusting = ConnectOptions::new();
    match chat_protocol::Client::connect(&url, &RoomName::new("tls").unwrap(), &untrusting).await {
        Err(ClientError::Tls { reason, .. }) => assert!(
            reason.contains("certificate") || reason.contains("handshake"),
            "{reason}"
        ),
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("an untrusted certificate was accepted"),
    }
    // A bad key file is a clear error at start.
    let bad = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("missing.pem"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = chat_server::spawn(
        listener,
        Config {
            tls: Some(bad),
            ..Config::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn shutdown_spreads_closes_over_the_drain_window() {
    let config = Config {
        drain_window: Duration::from_millis(800),
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let mut sockets = Vec::new();
    for _ in 0..30 {
        sockets.push(server.plain("drain").await);
    }
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    let mut at = Vec::new();
    for socket in &mut sockets {
        let (code, _) = close_code(socket).await;
        assert_eq!(code, close::GOING_AWAY);
        at.push(started.elapsed());
    }
    within(stopping).await.unwrap();
    let (first, last) = (at.iter().min().unwrap(), at.iter().max().unwrap());
    assert!(
        last.saturating_sub(*first) >= Duration::from_millis(500),
        "closes spread from {first:?} to {last:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn metrics_count_connections_messages_and_disconnects() {
    let limits = Limits {
        rate_per_sec: 1.0,
        rate_burst: 1,
        ..Limits::default()
    };
    let server = TestServer::start_with(with_limits(limits)).await;
    let (mut a, _) = server.joined("m", "a").await;
    a.say("one").await.unwrap();
    next_chat(&mut a).await;
    let mut plain = server.plain("m").await;
    send_text(&mut plain, "not json").await;
    close_code(&mut plain).await;
    let _ = get(server.addr(), "/ws/chat/%3C/").await;
    let response = get(server.addr(), "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.body;
    for needle in [
        "chat_connections 1",
        "chat_connections_opened_total 2",
        "chat_messages_in_total 1",
        "chat_rooms 1",
        "chat_disconnects_total{reason=\"invalid_payload\"} 1",
        "chat_refusals_total{reason=\"bad_room\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(text.contains("chat_messages_out_total"), "{text}");
}

#[tokio::test]
async fn a_client_reset_is_counted_as_such_not_as_a_protocol_error() {
    let server = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /ws/chat/reset/ HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr()
    );
    let mut tcp = tcp;
    tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // A reset: close with a zero linger.
    tcp.set_zero_linger().unwrap();
    drop(tcp);
    let mut plain = server.plain("reset").await;
    futures_util::SinkExt::close(&mut plain).await.unwrap();
    let deadline = Instant::now() + WITHIN;
    let text = loop {
        let text = get(server.addr(), "/metrics").await.body;
        let reset = metric(&text, "chat_client_disconnects_total{reason=\"reset\"}");
        let closed = metric(&text, "chat_client_disconnects_total{reason=\"closed\"}");
        if reset == Some(1.0) && closed == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "not counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!text.contains("protocol_error"), "{text}");
}

#[tokio::test]
async fn connections_coming_and_going_write_no_info_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = ServerProcess::start_logging(&[], "info", Some(&log)).await;
    let url = ServerUrl::parse(&format!("ws://{}", server.addr())).unwrap();
    for n in 0..50 {
        let options = ConnectOptions::new().name(UserName::new(format!("u{n}")).unwrap());
        let client =
            chat_protocol::Client::connect(&url, &RoomName::new("churn").unwrap(), &options)
                .await
                .unwrap();
        client.close().await.unwrap();
    }
    let deadline = Instant::now() + WITHIN;
    while server.metric("chat_connections").await > 0.0 {
        assert!(Instant::now() < deadline, "the connections did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = server.metric("chat_connections_opened_total").await;
    assert!((opened - 50.0).abs() < f64::EPSILON, "{opened}");
    let lines = std::fs::read_to_string(&log).unwrap();
    let count = lines.lines().count();
    assert!(
        count < 10,
        "50 connections wrote {count} log lines at info:\n{lines}"
    );
}

/// A WebSocket handshake's head for `path`, with `extra` header lines.
fn handshake(path: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}{extra}"
    )
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn requests_for_another_host_are_refused_everywhere_but_the_health_check() {
    let server = TestServer::start().await;
    let (_member, _) = server.joined("private", "alice").await;
    let addr = server.addr();
    let port = addr.port();
    // What a page of evil.example sends once its name resolves to this server.
    let evil = format!("evil.example:{port}");
    for path in ["/chat/", "/chat/private/", "/api/rooms", "/metrics", "/"] {
        let response = raw_http_for(addr, &evil, &format!("GET {path} HTTP/1.1")).await;
        assert_eq!(response.status, 400, "{path}");
        assert!(
            response.body.contains("--allowed-host evil.example"),
            "{path}: {}",
            response.body
        );
    }
    let socket = raw_http_for(
        addr,
        &evil,
        &handshake(
            "/ws/chat/private/",
            KEY,
            &format!("\r\nOrigin: http://evil.example:{port}"),
        ),
    )
    .await;
    assert_eq!(socket.status, 400, "the socket too");
    // The server's own names work, and the health check answers any name.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let response = raw_http_for(addr, &host, "GET /api/rooms HTTP/1.1").await;
        assert_eq!(response.status, 200, "{host}");
    }
    assert_eq!(
        raw_http_for(addr, &evil, "GET /healthz HTTP/1.1")
            .await
            .status,
        200
    );
    // No Host, two Hosts, an absolute target for another name.
    assert_eq!(
        raw_http_for(
            addr,
            &format!("127.0.0.1:{port}\r\nHost: {evil}"),
            "GET /chat/ HTTP/1.1"
        )
        .await
        .status,
        400
    );
    let absolute = format!("GET http://{evil}/api/rooms HTTP/1.1");
    assert_eq!(
        raw_http_for(addr, &format!("127.0.0.1:{port}"), &absolute)
            .await
            .status,
        400
    );

    // --allowed-host replaces the defaults.
    let server = TestServer::start_with(Config {
        access: Access {
            allowed_hosts: vec!["chat.example".into()],
            ..Access::new()
        },
        ..Config::default()
    })
    .await;
    let addr = server.addr();
    assert_eq!(
        raw_http_for(addr, "chat.example", "GET /chat/ HTTP/1.1")
            .await
            .status,
        200
    );
    assert_eq!(get(addr, "/chat/").await.status, 400);
}

#[tokio::test]
async fn the_origin_must_be_this_server_exactly_and_only_once() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let port = addr.port();
    let upgrade_from = |origins: Vec<String>| async move {
        let extra: String = origins
            .iter()
            .flat_map(|o| ["\r\nOrigin: ", o.as_str()])
            .collect();
        status_of(addr, &handshake("/ws/chat/o/", KEY, &extra)).await
    };
    assert_eq!(
        upgrade_from(vec![format!("http://127.0.0.1:{port}")]).await,
        101
    );
    for other in [
        format!("https://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{port}"),
        format!("evil://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        "http://127.0.0.1".to_owned(),
        "null".to_owned(),
    ] {
        assert_eq!(upgrade_from(vec![other.clone()]).await, 403, "{other}");
    }
    assert_eq!(
        upgrade_from(vec![
            format!("http://127.0.0.1:{port}"),
            "http://evil.example".to_owned()
        ])
        .await,
        403,
        "two Origin headers"
    );
    // Behind a TLS proxy that says so, the page's origin is https.
    let proxied = status_of(
        addr,
        &handshake(
            "/ws/chat/o/",
            KEY,
            &format!("\r\nOrigin: https://127.0.0.1:{port}\r\nX-Forwarded-Proto: https"),
        ),
    )
    .await;
    assert_eq!(proxied, 101);
}

#[tokio::test]
async fn handshakes_with_a_bad_key_or_an_undecodable_name_are_refused() {
    let server = TestServer::start().await;
    let addr = server.addr();
    for key in [
        "",
        "not base64!",
        &"A".repeat(5000),
        "dGhlIHNhbXBsZSBub25jZQ",
    ] {
        let response = raw_http(addr, &handshake("/ws/chat/k/", key, "")).await;
        assert_eq!(response.status, 400, "{key:?}");
        assert!(
            response.body.contains("Sec-WebSocket-Key"),
            "{}",
            response.body
        );
    }
    let two_keys = raw_http(
        addr,
        &handshake("/ws/chat/k/", KEY, &format!("\r\nSec-WebSocket-Key: {KEY}")),
    )
    .await;
    assert_eq!(two_keys.status, 400);
    let name = raw_http(addr, &handshake("/ws/chat/k/?name=%ff", KEY, "")).await;
    assert_eq!(name.status, 400);
    assert!(name.body.contains("UTF-8"), "{}", name.body);
    let fine = status_of(addr, &handshake("/ws/chat/k/?name=%C3%A9lodie", KEY, "")).await;
    assert_eq!(fine, 101);
}

#[tokio::test]
async fn a_missing_token_is_said_before_anything_else() {
    let server = TestServer::start_with(Config {
        access: Access {
            tokens: vec!["s3cret".into()],
            ..Access::new()
        },
        ..Config::default()
    })
    .await;
    let addr = server.addr();
    for path in [
        "/ws/chat/%3Cbad%3E/",
        "/ws/chat/ok/?name=%ff",
        "/ws/chat/ok/?since=x",
    ] {
        let response = raw_http(addr, &handshake(path, "bad key", "")).await;
        assert_eq!(response.status, 401, "{path}");
    }
    let with_token = raw_http(
        addr,
        &handshake("/ws/chat/%3Cbad%3E/?token=s3cret", KEY, ""),
    )
    .await;
    assert_eq!(with_token.status, 400, "then the room");
}

#[tokio::test]
async fn healthz_turns_503_when_a_publish_fails_and_200_when_one_works() {
    let Some(mut redis) = redis::RedisServer::start() else {
        return;
    };
    let server = TestServer::start_with(Config {
        redis: Some(Cluster::redis_config(&redis, "health")),
        ..Config::default()
    })
    .await;
    let (mut alice, _) = server.joined("health", "alice").await;
    assert_eq!(get(server.addr(), "/healthz").await.status, 200);
    redis.kill();
    alice.say("lost?").await.unwrap();
    loop {
        match next_event(&mut alice).await {
            ServerEvent::Error(error) => {
                assert_eq!(error.code, ErrorCode::Unavailable);
                break;
            }
            ServerEvent::Chat(chat) => panic!("published without Redis: {chat:?}"),
            _ => {}
        }
    }
    // As soon as the sender is told, the health check says so too.
    let health = get(server.addr(), "/healthz").await;
    assert_eq!(health.status, 503, "{}", health.body);
    redis.restart();
    let deadline = Instant::now() + WITHIN;
    loop {
        alice.say("back?").await.unwrap();
        match next_event(&mut alice).await {
            ServerEvent::Chat(chat) if chat.message == "back?" => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "publishing never worked again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(server.addr(), "/healthz").await.status, 200);
}
