//! The room protocol over real sockets: fan-out, order, names, limits, bad
//! input, tutorial compatibility, slow consumers, cleanup.

mod common;

use std::time::Duration;

use chat_protocol::{ClientMessage, ErrorCode, ServerEvent, close};
use chat_server::Config;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_member_gets_every_message_and_other_rooms_get_none() {
    let server = TestServer::start().await;
    let mut members = Vec::new();
    for i in 0..50 {
        members.push(server.joined("lobby", &format!("user{i}")).await.0);
    }
    let mut outsider = server.joined("elsewhere", "outsider").await.0;
    let mut plain = server.plain("lobby").await;

    for round in 0..3 {
        let sender = round * 7 % members.len();
        members[sender]
            .say(&format!("round {round}"))
            .await
            .unwrap();
        for member in &mut members {
            let chat = next_chat(member).await;
            assert_eq!(chat.message, format!("round {round}"));
            assert_eq!(chat.user, format!("user{sender}"));
        }
        assert_eq!(
            next_text(&mut plain).await,
            format!("{{\"message\": \"round {round}\"}}")
        );
    }
    assert_no_chat(&mut outsider).await;
}

#[tokio::test]
async fn concurrent_senders_are_seen_in_one_order_with_increasing_ids() {
    let server = TestServer::start().await;
    let mut readers = Vec::new();
    for i in 0..5 {
        readers.push(server.joined("race", &format!("reader{i}")).await.0);
    }
    let per_sender = 40;
    let mut senders = Vec::new();
    for s in 0..4 {
        let client = server.joined("race", &format!("sender{s}")).await.0;
        let (tx, mut events) = client.split();
        // Keep each sender's own stream drained so it never becomes a slow consumer.
        tokio::spawn(async move { while events.next().await.is_some() {} });
        senders.push(tokio::spawn(async move {
            for n in 0..per_sender {
                tx.say(&format!("s{s}-{n}")).await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let mut orders = Vec::new();
    for reader in &mut readers {
        let mut seen = Vec::new();
        let mut last_id = 0;
        while seen.len() < 4 * per_sender {
            let chat = next_chat(reader).await;
            assert!(
                chat.id > last_id,
                "ids must strictly increase: {} after {last_id}",
                chat.id
            );
            last_id = chat.id;
            seen.push(chat.message);
        }
        orders.push(seen);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "every member sees the same order");
    }
    // Each sender's own messages keep their sending order.
    for s in 0..4 {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|m| m.starts_with(&format!("s{s}-")))
            .cloned()
            .collect();
        let expected: Vec<_> = (0..per_sender).map(|n| format!("s{s}-{n}")).collect();
        assert_eq!(mine, expected);
    }
}

/// A client whose handshake has completed is a member: a message sent to
/// the room right after it reaches it, as with Channels (the tutorial's
/// consumer joins the group before it accepts the socket). Eight rooms at
/// once, so that the server is busy while each newcomer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_a_member_as_soon_as_its_handshake_completes() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut rooms = Vec::new();
    for r in 0..8 {
        let server = server.clone();
        rooms.push(tokio::spawn(async move {
            let room = format!("race{r}");
            let mut sender = server.plain(&room).await;
            for i in 0..100 {
                let mut newcomer = server.plain(&room).await;
                let frame = format!("{{\"message\": \"m{i}\"}}");
                send_text(&mut sender, &frame).await;
                let received = tokio::time::timeout(Duration::from_secs(3), newcomer.next()).await;
                let Ok(Some(Ok(Message::Text(text)))) = received else {
                    panic!(
                        "{room}: newcomer {i} did not receive the message sent right after \
                         its handshake: {received:?}"
                    );
                };
                assert_eq!(text.as_str(), frame);
                assert_eq!(next_text(&mut sender).await, frame);
            }
        }));
    }
    for room in rooms {
        room.await.expect("room task");
    }
}

#[tokio::test]
async fn the_server_stamps_the_sender_and_ignores_claimed_names() {
    let server = TestServer::start().await;
    let (mut alice, welcome) = server.joined("names", "alice").await;
    assert_eq!(welcome.user, "alice");
    let (mut bob, _) = server.joined("names", "bob").await;
    let forged = r#"{"message": "I am bob", "user": "bob", "type": "chat"}"#;
    alice.send_raw(Message::text(forged)).await.unwrap();
    let chat = next_chat(&mut bob).await;
    assert_eq!(chat.user, "alice");
    assert_eq!(chat.message, "I am bob");
}

#[tokio::test]
async fn invalid_display_names_are_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let long = "x".repeat(33);
    for (name, needle) in [
        ("a%0Ab", "'\\n'"),
        ("%1B%5B31m", "'\\u{1b}'"),
        ("%E2%80%AEevil", "'\\u{202e}'"),
        (long.as_str(), "33 characters"),
        ("%20bob", "white space"),
    ] {
        let response = upgrade(server.addr(), &format!("/ws/chat/lobby/?name={name}")).await;
        assert_eq!(response.status, 400, "{name}");
        assert!(response.body.contains(needle), "{name}: {}", response.body);
        assert!(response.body.contains("display name"), "{}", response.body);
    }
    // A good name with HTML in it is just text.
    let (_client, welcome) = server.joined("lobby", "<b>bob</b>").await;
    assert_eq!(welcome.user, "<b>bob</b>");
}

#[tokio::test]
async fn invalid_room_names_are_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let long = "a".repeat(101);
    let cases = [
        "/ws/chat/../x/",
        "/ws/chat/a%2F..%2Fx/",
        &format!("/ws/chat/{long}/"),
        "/ws/chat/a%20b/",
        "/ws/chat/%00/",
        "/ws/chat/caf%C3%A9/",
        "/ws/chat/%3C%2Fscript%3E/",
        "/ws/chat//",
        "/ws/chat/a/b/",
    ];
    for path in cases {
        let response = upgrade(server.addr(), path).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        assert!(
            response.body.contains("room name"),
            "{path}: {}",
            response.body
        );
    }
    let script = upgrade(server.addr(), "/ws/chat/%3C%2Fscript%3E/").await;
    assert!(script.body.contains("'<'"), "{}", script.body);
    assert!(
        upgrade(server.addr(), &format!("/ws/chat/{long}/"))
            .await
            .body
            .contains("101 characters")
    );
    // Both spellings of a good room upgrade fine.
    for path in ["lobby", "lobby/"] {
        let url = format!("ws://{}/ws/chat/{path}", server.addr());
        assert!(
            tokio_tungstenite::connect_async(url).await.is_ok(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unicode_survives_byte_for_byte() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.joined("unicode", "alice").await;
    let mut plain = server.plain("unicode").await;
    let text = "héllo 日本語 🦀👩‍👩‍👧 \u{202e}rtl\u{202c} \0 \u{1b}[31m \" \\ </script> \n  trailing  ";
    alice.say(text).await.unwrap();
    assert_eq!(next_chat(&mut alice).await.message, text);
    let raw = next_text(&mut plain).await;
    assert_eq!(
        raw,
        chat_protocol::PlainMessage::encode(text),
        "exactly what Channels would send"
    );
    let decoded: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        decoded["message"].as_str().unwrap().as_bytes(),
        text.as_bytes()
    );
}

#[tokio::test]
async fn a_message_of_the_maximum_size_passes_and_one_byte_more_closes_with_1009() {
    let max = 4096;
    let server = TestServer::start_with(Config {
        max_message_size: max,
        ..Config::default()
    })
    .await;
    let (mut watcher, _) = server.joined("big", "watcher").await;
    let mut sender = server.plain("big").await;

    let overhead = r#"{"message": ""}"#.len();
    let exact = format!(r#"{{"message": "{}"}}"#, "x".repeat(max - overhead));
    assert_eq!(exact.len(), max);
    send_text(&mut sender, &exact).await;
    assert_eq!(next_chat(&mut watcher).await.message.len(), max - overhead);

    let over = format!(r#"{{"message": "{}"}}"#, "x".repeat(max - overhead + 1));
    send_text(&mut sender, &over).await;
    let (code, reason) = close_code(&mut sender).await;
    assert_eq!(code, close::MESSAGE_TOO_BIG, "{reason}");
    assert!(reason.contains("4097"), "{reason}");

    // The others carry on.
    let (mut other, _) = server.joined("big", "other").await;
    other.say("still here").await.unwrap();
    assert_eq!(next_chat(&mut watcher).await.message, "still here");
}

#[tokio::test]
async fn large_events_arrive_whole() {
    // A 60 KiB message is sent to clients as fragments; they see one message.
    let server = TestServer::start().await;
    let (mut alice, _) = server.joined("frag", "alice").await;
    let mut plain = server.plain("frag").await;
    let text: String = "é🦀x".repeat(6000);
    alice.say(&text).await.unwrap();
    assert_eq!(next_chat(&mut alice).await.message, text);
    let raw = next_text(&mut plain).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw).unwrap()["message"],
        text.as_str()
    );
    // And a newcomer's welcome carries it in history, whole.
    let (_late, welcome) = server.joined("frag", "late").await;
    assert_eq!(welcome.history.last().unwrap().message, text);
}

#[tokio::test]
async fn malformed_frames_get_error_events_for_typed_clients() {
    let server = TestServer::start().await;
    let (mut bad, _) = server.joined("bad", "bad").await;
    let (mut good, _) = server.joined("bad", "good").await;
    let cases = [
        ("not json", ErrorCode::InvalidJson),
        ("[1,2,3]", ErrorCode::NotAnObject),
        ("\"just a string\"", ErrorCode::NotAnObject),
        ("{\"text\": \"hi\"}", ErrorCode::MissingMessage),
        ("{\"message\": 42}", ErrorCode::MessageNotString),
        ("{\"message\": null}", ErrorCode::MessageNotString),
        (
            "{\"type\": \"shout\", \"message\": \"hi\"}",
            ErrorCode::UnknownType,
        ),
    ];
    for (frame, code) in cases {
        bad.send_raw(Message::text(frame)).await.unwrap();
        loop {
            match next_event(&mut bad).await {
                ServerEvent::Error(error) => {
                    assert_eq!(error.code, code, "{frame}");
                    assert!(!error.message.is_empty());
                    break;
                }
                ServerEvent::Join(_) => {}
                other => panic!("{frame}: expected an error, got {other:?}"),
            }
        }
    }
    // The connection is still usable, and nobody else saw anything.
    bad.say("").await.unwrap();
    let empty = next_chat(&mut good).await;
    assert_eq!(
        empty.message, "",
        "an empty message is relayed, as Channels does"
    );
    assert_eq!(empty.user, "bad");
    assert_eq!(next_chat(&mut bad).await.message, "");
}

#[tokio::test]
async fn malformed_frames_close_plain_clients_with_1007_and_disturb_no_one() {
    let server = TestServer::start().await;
    let (mut watcher, _) = server.joined("plainbad", "watcher").await;
    for frame in ["not json", "[1]", "{\"text\": 1}", "{\"message\": 5}"] {
        let mut plain = server.plain("plainbad").await;
        send_text(&mut plain, frame).await;
        let (code, reason) = close_code(&mut plain).await;
        assert_eq!(code, close::INVALID_PAYLOAD, "{frame}: {reason}");
        assert!(!reason.is_empty());
    }
    let mut binary = server.plain("plainbad").await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut binary).await.0, close::UNSUPPORTED_DATA);

    let (mut typed, _) = server.joined("plainbad", "typed").await;
    typed.send_raw(Message::binary(vec![0xff])).await.unwrap();
    assert_eq!(client_close_code(&mut typed).await, close::UNSUPPORTED_DATA);

    // Invalid UTF-8 in a text frame: close 1007.
    let mut raw = server.plain("plainbad").await;
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    raw.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut raw).await.0, close::INVALID_PAYLOAD);

    watcher.say("all fine").await.unwrap();
    assert_eq!(next_chat(&mut watcher).await.message, "all fine");
}

#[tokio::test]
async fn a_tutorial_client_sees_exactly_what_channels_sends() {
    let server = TestServer::start().await;
    let mut first = server.plain("tutorial").await;
    let mut second = server.plain("tutorial").await;
    let (mut typed, _) = server.joined("tutorial", "typed").await;
    // Joins and leaves of others, and errors, are not sent to plain clients.
    let (late, _) = server.joined("tutorial", "late").await;
    late.close().await.unwrap();

    send_text(&mut first, r#"{"message": "hello"}"#).await;
    assert_eq!(
        next_text(&mut first).await,
        r#"{"message": "hello"}"#,
        "the sender gets its own message"
    );
    assert_eq!(next_text(&mut second).await, r#"{"message": "hello"}"#);
    typed
        .send(&ClientMessage::Emote {
            message: "waves".into(),
        })
        .await
        .unwrap();
    assert_eq!(next_text(&mut second).await, r#"{"message": "waves"}"#);
    let chat = next_chat(&mut typed).await;
    assert_eq!(chat.message, "hello");
    assert!(
        chat.user.starts_with("guest-"),
        "plain clients get a guest name: {}",
        chat.user
    );
}

#[tokio::test]
async fn welcome_has_members_and_history_and_since_recovers_exactly_the_gap() {
    let server = TestServer::start_with(Config {
        history_len: 5,
        ..Config::default()
    })
    .await;
    let (mut alice, welcome) = server.joined("hist", "alice").await;
    assert!(welcome.history.is_empty());
    assert_eq!(welcome.members, vec!["alice"]);
    for i in 1..=8 {
        alice.say(&format!("m{i}")).await.unwrap();
        next_chat(&mut alice).await;
    }
    let (_bob, welcome) = server.joined("hist", "bob").await;
    assert_eq!(welcome.members, vec!["alice", "bob"]);
    let ids: Vec<u64> = welcome.history.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![4, 5, 6, 7, 8], "the last five, oldest first");
    assert_eq!(welcome.last_id, 8);

    let resume = |since| {
        let url = server.url();
        async move {
            let options = chat_protocol::ConnectOptions::new()
                .name("carol".parse().unwrap())
                .since(Some(since));
            let mut client =
                chat_protocol::Client::connect(&url, &"hist".parse().unwrap(), &options)
                    .await
                    .unwrap();
            match next_event(&mut client).await {
                ServerEvent::Welcome(welcome) => welcome,
                other => panic!("{other:?}"),
            }
        }
    };
    let near = resume(6).await;
    assert_eq!(
        near.history.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![7, 8]
    );
    assert_eq!(near.missed, 0);
    let far = resume(1).await;
    assert_eq!(
        far.history.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    assert_eq!(far.missed, 2, "messages 2 and 3 are gone");
}

#[tokio::test]
async fn joins_leaves_and_nick_changes_are_announced() {
    let server = TestServer::start().await;
    let (mut alice, _) = server.joined("presence", "alice").await;
    assert!(matches!(next_event(&mut alice).await, ServerEvent::Join(j) if j.user == "alice"));
    let (mut bob, _) = server.joined("presence", "bob").await;
    assert!(
        matches!(next_event(&mut alice).await, ServerEvent::Join(j) if j.user == "bob" && j.message == "bob joined")
    );
    bob.send(&ClientMessage::Nick {
        name: "robert".parse().unwrap(),
    })
    .await
    .unwrap();
    match next_event(&mut alice).await {
        ServerEvent::Nick(nick) => {
            assert_eq!((nick.old.as_str(), nick.user.as_str()), ("bob", "robert"));
        }
        other => panic!("{other:?}"),
    }
    bob.say("renamed").await.unwrap();
    assert_eq!(next_chat(&mut alice).await.user, "robert");
    bob.close().await.unwrap();
    assert!(matches!(next_event(&mut alice).await, ServerEvent::Leave(l) if l.user == "robert"));
}

#[tokio::test]
async fn rooms_are_dropped_when_their_last_member_leaves() {
    let server = TestServer::start().await;
    // 10,000 connections over 1,000 rooms, in waves that fit the fd limit.
    let waves = 5;
    let per_wave = 2_000;
    for wave in 0..waves {
        let mut sockets = Vec::with_capacity(per_wave);
        for i in 0..per_wave {
            let room = format!("room{}", (wave * per_wave + i) % 1000);
            let url = format!("ws://{}/ws/chat/{room}/", server.addr());
            sockets.push(tokio::spawn(async move {
                tokio_tungstenite::connect_async(url).await.map(|(s, _)| s)
            }));
        }
        let mut open = Vec::with_capacity(per_wave);
        for socket in sockets {
            open.push(within(socket).await.unwrap().expect("connect"));
        }
        assert!(server.handle().active_rooms() > 0);
        let mut closing = Vec::new();
        for mut socket in open {
            closing.push(tokio::spawn(async move {
                let _ = socket.close(None).await;
                while let Some(Ok(_)) = socket.next().await {}
            }));
        }
        for task in closing {
            within(task).await.unwrap();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (server.handle().active_rooms() > 0 || server.handle().open_sessions() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.handle().active_rooms(), 0, "the registry is empty");
    assert_eq!(
        server.handle().stored_rooms(),
        0,
        "rooms without history leave nothing behind"
    );
    assert_eq!(server.handle().open_sessions(), 0);
}
