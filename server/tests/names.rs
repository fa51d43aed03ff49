//! Display names belong to a person, room topics, and the limits the
//! welcome announces: over real sockets against real servers, on the
//! in-memory layer and on two instances sharing a real `redis-server`.

#[macro_use]
mod common;

on_both_layers!(
    someone_elses_name_is_refused_on_join_with_409,
    renaming_to_someone_elses_name_is_refused_and_the_old_name_kept,
    topics_reach_everyone_and_greet_newcomers,
);

use chat_protocol::{
    Client, ClientError, ClientMessage, ConnectOptions, ErrorCode, RoomName, ServerEvent, UserName,
    Welcome,
};
use chat_server::{Config, Limits};
use common::{Backend, Cluster, TestServer, assert_no_chat, next_event, upgrade, within};

const ALICE_KEY: &str = "alice-0123456789abcdef";
const BOB_KEY: &str = "bob-0123456789abcdef0";

async fn connect(
    server: &TestServer,
    room: &str,
    name: &str,
    key: Option<&str>,
) -> Result<Client, ClientError> {
    let options = ConnectOptions::new()
        .name(UserName::new(name).expect("valid name"))
        .key(key.map(str::to_owned));
    within(Client::connect(
        &server.url(),
        &RoomName::new(room).expect("valid room"),
        &options,
    ))
    .await
}

async fn welcomed(client: &mut Client) -> Welcome {
    match next_event(client).await {
        ServerEvent::Welcome(welcome) => welcome,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

/// The next event that is not a join or leave notice.
async fn next_non_presence(client: &mut Client) -> ServerEvent {
    loop {
        match next_event(client).await {
            ServerEvent::Join(_) | ServerEvent::Leave(_) => {}
            other => return other,
        }
    }
}

async fn someone_elses_name_is_refused_on_join_with_409(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, Config::default()).await else {
        return;
    };
    let (server, other) = (cluster.server(0), cluster.server(1));
    let mut alice = connect(server, "lobby", "alice", Some(ALICE_KEY))
        .await
        .expect("alice joins");
    welcomed(&mut alice).await;

    for (name, key) in [
        ("alice", Some(BOB_KEY)),
        ("Alice", Some(BOB_KEY)),
        ("alice", None),
    ] {
        for instance in [server, other] {
            let err = connect(instance, "lobby", name, key)
                .await
                .expect_err("an impostor is refused");
            assert!(err.is_name_taken(), "{name} {key:?}: {err}");
            assert!(err.to_string().contains("taken"), "{err}");
        }
    }
    // Alice saw nobody come and go.
    assert_no_chat(&mut alice).await;

    // The same person (same key) in a second terminal shares the name.
    let mut second = connect(other, "lobby", "alice", Some(ALICE_KEY))
        .await
        .expect("a second tab of alice");
    let welcome = welcomed(&mut second).await;
    assert_eq!(welcome.user, "alice");
    assert_eq!(welcome.members, ["alice"]);
    // The name is free for alice's key, taken for anyone else's.
    let free = |key: &str| {
        let path = format!("/api/rooms/lobby/names/ALICE?key={key}");
        async move { common::get(other.addr(), &path).await }
    };
    let answer = free(ALICE_KEY).await;
    assert!(answer.body.contains(r#""free":true"#), "{answer:?}");
    let answer = free(BOB_KEY).await;
    assert!(answer.body.contains(r#""free":false"#), "{answer:?}");

    // Another room is another place: names are held per room.
    connect(other, "elsewhere", "alice", Some(BOB_KEY))
        .await
        .expect("names are per room");

    // Once alice is gone, the name is free.
    alice.close().await.expect("close");
    second.close().await.expect("close");
    let deadline = tokio::time::Instant::now() + common::WITHIN;
    loop {
        match connect(other, "lobby", "alice", Some(BOB_KEY)).await {
            Ok(_) => break,
            Err(err) if err.is_name_taken() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(err) => panic!("the name should be free once alice left: {err}"),
        }
    }
}

#[tokio::test]
async fn a_bad_key_is_a_400_with_the_rule() {
    let server = TestServer::start().await;
    let response = upgrade(server.addr(), "/ws/chat/lobby/?name=x&key=short").await;
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.body.contains("16 to 128"), "{}", response.body);
    let response = upgrade(
        server.addr(),
        "/ws/chat/lobby/?name=bob&key=%0A%0Dxxxxxxxxxxxxxxxxxx",
    )
    .await;
    assert_eq!(response.status, 400, "{response:?}");
}

async fn renaming_to_someone_elses_name_is_refused_and_the_old_name_kept(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, Config::default()).await else {
        return;
    };
    let mut alice = connect(cluster.server(0), "lobby", "alice", Some(ALICE_KEY))
        .await
        .expect("alice");
    welcomed(&mut alice).await;
    let mut bob = connect(cluster.server(1), "lobby", "bob", Some(BOB_KEY))
        .await
        .expect("bob");
    welcomed(&mut bob).await;

    let nick = |name: &str| ClientMessage::Nick {
        name: UserName::new(name).expect("valid"),
    };
    bob.send(&nick("ALICE")).await.expect("send");
    match next_non_presence(&mut bob).await {
        ServerEvent::Error(err) => {
            assert_eq!(err.code, ErrorCode::NameTaken, "{err:?}");
            assert!(err.message.contains("taken"), "{}", err.message);
        }
        other => panic!("expected name_taken, got {other:?}"),
    }
    // Bob still speaks as bob, and alice saw no rename.
    bob.say("I am the real alice").await.expect("send");
    loop {
        match next_non_presence(&mut alice).await {
            ServerEvent::Chat(chat) => {
                assert_eq!(chat.user, "bob", "the message is stamped with bob's name");
                break;
            }
            ServerEvent::Nick(nick) => panic!("alice saw a rename: {nick:?}"),
            _ => {}
        }
    }
    // A free name is fine.
    bob.send(&nick("robert")).await.expect("send");
    match next_non_presence(&mut alice).await {
        ServerEvent::Nick(nick) => {
            assert_eq!((nick.old.as_str(), nick.user.as_str()), ("bob", "robert"));
        }
        other => panic!("expected the rename, got {other:?}"),
    }
}

async fn topics_reach_everyone_and_greet_newcomers(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, Config::default()).await else {
        return;
    };
    let mut alice = connect(cluster.server(0), "lobby", "alice", Some(ALICE_KEY))
        .await
        .expect("alice");
    assert_eq!(welcomed(&mut alice).await.topic.as_deref(), Some(""));
    let mut bob = connect(cluster.server(1), "lobby", "bob", Some(BOB_KEY))
        .await
        .expect("bob");
    welcomed(&mut bob).await;

    alice
        .send(&ClientMessage::Topic {
            topic: "release on Friday \u{1b}[31m".into(),
        })
        .await
        .expect("send");
    for client in [&mut alice, &mut bob] {
        match next_non_presence(client).await {
            ServerEvent::Topic(topic) => {
                assert_eq!(
                    topic.topic, "release on Friday \u{1b}[31m",
                    "relayed unchanged"
                );
                assert_eq!(topic.user, "alice");
            }
            other => panic!("expected the topic, got {other:?}"),
        }
    }
    let mut carol = connect(cluster.server(1), "lobby", "carol", None)
        .await
        .expect("carol");
    assert_eq!(
        welcomed(&mut carol).await.topic.as_deref(),
        Some("release on Friday \u{1b}[31m")
    );

    // Too long: refused to its sender, nobody else hears of it.
    let long = format!(r#"{{"type":"topic","topic":"{}"}}"#, "x".repeat(501));
    carol
        .send_raw(tokio_tungstenite::tungstenite::Message::text(long))
        .await
        .expect("send");
    match next_non_presence(&mut carol).await {
        ServerEvent::Error(err) => assert_eq!(err.code, ErrorCode::InvalidTopic),
        other => panic!("expected invalid_topic, got {other:?}"),
    }
    assert_no_chat(&mut bob).await;
}

#[tokio::test]
async fn the_welcome_announces_the_limits() {
    let config = Config {
        max_message_size: 4096,
        limits: Limits {
            rate_per_sec: 20.0,
            rate_burst: 7,
            ..Limits::default()
        },
        ..Config::default()
    };
    let server = TestServer::start_with(config).await;
    let mut client = connect(&server, "lobby", "alice", None)
        .await
        .expect("connect");
    let limits = welcomed(&mut client)
        .await
        .limits
        .expect("limits announced");
    assert_eq!(limits.burst, 7);
    assert!((limits.rate - 20.0).abs() < f64::EPSILON);
    assert_eq!(limits.max_message_bytes, 4096);
}
