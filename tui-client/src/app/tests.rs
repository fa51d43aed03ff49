//! Key sequences and network stories through `App::update`, no I/O.

use std::time::Duration;

use chat_protocol::{
    ChatEvent, ClientMessage, ErrorCode, ErrorEvent, Mode, NickChange, Presence, RoomName,
    RoomSummary, ServerEvent, UserName, Welcome,
};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use super::*;
use crate::msg::{Effect, Msg, NetEvent};

pub(crate) fn room(name: &str) -> RoomName {
    RoomName::new(name).unwrap()
}

pub(crate) fn new_app() -> App {
    let mut app = App::new(AppOptions::new(
        "ws://127.0.0.1:8000",
        Some(UserName::new("alice").unwrap()),
    ));
    app.update(Msg::Resize {
        width: 80,
        height: 20,
    });
    app
}

pub(crate) fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(crate) fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub(crate) fn alt(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::ALT))
}

pub(crate) fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert!(app.update(key(KeyCode::Char(c))).is_empty());
    }
}

pub(crate) fn enter(app: &mut App, text: &str) -> Vec<Effect> {
    type_text(app, text);
    app.update(key(KeyCode::Enter))
}

pub(crate) fn net(name: &str, event: NetEvent) -> Msg {
    Msg::Net(room(name), event)
}

pub(crate) fn chat(name: &str, user: &str, id: u64, text: &str) -> ChatEvent {
    ChatEvent {
        message: text.into(),
        user: user.into(),
        room: room(name),
        id,
        // 2026-11-25 14:56:09 UTC plus a second per id.
        ts: 1_795_618_569_000 + id * 1000,
        emote: false,
    }
}

pub(crate) fn welcome(name: &str, me: &str, members: &[&str], history: Vec<ChatEvent>) -> Msg {
    let last_id = history.iter().map(|c| c.id).max().unwrap_or(0);
    net(
        name,
        NetEvent::Server(ServerEvent::Welcome(Welcome {
            message: format!("Welcome to {name}, {me}: {} people here", members.len()),
            room: room(name),
            user: me.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            history,
            last_id,
            missed: 0,
            epoch: "e1".into(),
            ts: 1_795_618_560_000,
            limits: None,
            topic: Some(String::new()),
        })),
    )
}

pub(crate) fn says(name: &str, user: &str, id: u64, text: &str) -> Msg {
    net(
        name,
        NetEvent::Server(ServerEvent::Chat(chat(name, user, id, text))),
    )
}

/// An app in `lobby`, connected and welcomed.
pub(crate) fn online(rooms: &[&str]) -> App {
    let mut app = new_app();
    let names: Vec<RoomName> = rooms.iter().map(|r| room(r)).collect();
    app.start(&names);
    for r in rooms {
        app.update(net(r, NetEvent::Connected { mode: Mode::Events }));
        app.update(welcome(r, "alice", &["alice", "bob"], vec![]));
    }
    app.switch_to(0);
    app
}

fn texts(app: &App, index: usize) -> Vec<String> {
    app.rooms[index]
        .lines
        .iter()
        .map(|l| l.text.clone())
        .collect()
}

fn disconnected(name: &str) -> Msg {
    net(
        name,
        NetEvent::Disconnected {
            reason: "connection lost: reset".into(),
            close_code: None,
            retry_in: Duration::from_millis(1500),
            at_ms: 0,
            attempt: 1,
        },
    )
}

#[test]
fn start_joins_rooms_or_opens_the_picker() {
    let mut app = new_app();
    assert_eq!(
        app.start(&[room("lobby"), room("dev")]),
        vec![Effect::Join(room("lobby")), Effect::Join(room("dev"))]
    );
    assert_eq!(app.active, 0);
    let mut app = new_app();
    assert_eq!(app.start(&[]), vec![Effect::FetchRooms]);
    assert!(app.picker.is_some());
}

#[test]
fn a_message_typed_offline_is_queued_then_sent_and_settled_by_the_echo() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    assert!(enter(&mut app, "hello").is_empty(), "nothing sent offline");
    assert_eq!(app.rooms[0].pending[0].state, PendingState::Queued);
    assert!(app.input.is_empty());

    assert!(
        app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }))
            .is_empty()
    );
    let effects = app.update(welcome("lobby", "alice", &["alice"], vec![]));
    assert_eq!(
        effects,
        vec![Effect::Send {
            room: room("lobby"),
            local_id: 1,
            message: ClientMessage::chat("hello")
        }]
    );
    assert_eq!(app.rooms[0].pending[0].state, PendingState::Sent);

    app.update(says("lobby", "alice", 1, "hello"));
    assert!(app.rooms[0].pending.is_empty());
    let last = app.rooms[0].lines.back().unwrap();
    assert!(matches!(last.kind, LineKind::Chat { own: true, .. }));
}

#[test]
fn online_messages_go_out_at_once() {
    let mut app = online(&["lobby"]);
    let effects = enter(&mut app, "hi bob");
    assert_eq!(
        effects,
        vec![Effect::Send {
            room: room("lobby"),
            local_id: 1,
            message: ClientMessage::chat("hi bob")
        }]
    );
    let effects = enter(&mut app, "/me waves");
    assert!(matches!(
        &effects[..],
        [Effect::Send { message: ClientMessage::Emote { message }, .. }] if message == "waves"
    ));
}

#[test]
fn reconnect_resends_only_what_did_not_arrive() {
    let mut app = online(&["lobby"]);
    app.update(says("lobby", "bob", 1, "before"));
    enter(&mut app, "arrived");
    enter(&mut app, "lost");
    app.update(disconnected("lobby"));
    assert!(matches!(app.rooms[0].conn, ConnState::Offline { .. }));
    assert!(
        texts(&app, 0).iter().any(|t| t.contains("connection lost")),
        "{:?}",
        texts(&app, 0)
    );
    // Typed while offline: queued.
    assert!(enter(&mut app, "offline").is_empty());

    app.update(net("lobby", NetEvent::Connecting { attempt: 1 }));
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    // The resumed welcome holds what was missed: bob's line, "arrived", and
    // a duplicate of id 1 that must not show twice.
    let effects = app.update(welcome(
        "lobby",
        "alice",
        &["alice", "bob"],
        vec![
            chat("lobby", "bob", 1, "before"),
            chat("lobby", "alice", 2, "arrived"),
            chat("lobby", "bob", 3, "while away"),
        ],
    ));
    let sent: Vec<&ClientMessage> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            &ClientMessage::chat("lost"),
            &ClientMessage::chat("offline")
        ]
    );
    let lines = texts(&app, 0);
    assert_eq!(lines.iter().filter(|t| *t == "before").count(), 1);
    assert!(lines.iter().any(|t| t == "while away"));
    assert!(
        lines
            .iter()
            .any(|t| t.starts_with("reconnected; 2 messages"))
    );
}

#[test]
fn missed_messages_are_reported() {
    let mut app = online(&["lobby"]);
    app.update(disconnected("lobby"));
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    let mut msg = welcome("lobby", "alice", &["alice"], vec![]);
    if let Msg::Net(_, NetEvent::Server(ServerEvent::Welcome(w))) = &mut msg {
        w.missed = 7;
    }
    app.update(msg);
    let lines = texts(&app, 0);
    assert!(
        lines
            .iter()
            .any(|t| t.contains("7 messages") && t.contains("missed")),
        "{lines:?}"
    );
}

#[test]
fn first_welcome_shows_history_above_a_divider_then_the_welcome() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    app.update(welcome(
        "lobby",
        "alice",
        &["alice", "bob"],
        vec![chat("lobby", "bob", 4, "old news")],
    ));
    let kinds: Vec<&LineKind> = app.rooms[0].lines.iter().map(|l| &l.kind).collect();
    assert!(matches!(
        kinds[..],
        [LineKind::Chat { .. }, LineKind::Divider, LineKind::Info]
    ));
    assert_eq!(app.rooms[0].last_id, 4);
    assert_eq!(app.rooms[0].unread, 0);
}

#[test]
fn commands_do_what_they_say() {
    let mut app = online(&["lobby"]);
    assert_eq!(
        enter(&mut app, "/join dev"),
        vec![Effect::Join(room("dev"))]
    );
    assert_eq!(app.active, 1);
    assert_eq!(enter(&mut app, "/join lobby"), vec![]);
    assert_eq!(app.active, 0);
    assert_eq!(
        enter(&mut app, "/leave dev"),
        vec![Effect::Leave(room("dev"))]
    );
    assert_eq!(app.rooms.len(), 1);

    let effects = enter(&mut app, "/nick Zoë");
    assert_eq!(effects[0], Effect::SetName(UserName::new("Zoë").unwrap()));
    assert!(matches!(
        &effects[1],
        Effect::Send { local_id: 0, message: ClientMessage::Nick { name }, .. } if name.as_str() == "Zoë"
    ));
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Nick(NickChange {
            message: "alice is now known as Zoë".into(),
            user: "Zoë".into(),
            old: "alice".into(),
            room: room("lobby"),
            ts: 0,
        })),
    ));
    assert_eq!(app.rooms[0].me.as_deref(), Some("Zoë"));
    assert_eq!(app.rooms[0].member_names(), vec!["bob", "Zoë"]);

    enter(&mut app, "/who");
    assert!(
        texts(&app, 0)
            .last()
            .unwrap()
            .starts_with("2 people in lobby: bob, Zoë")
    );
    enter(&mut app, "/help");
    assert!(texts(&app, 0).iter().any(|t| t.contains("/join ROOM")));
    enter(&mut app, "/clear");
    assert!(app.rooms[0].lines.is_empty());

    assert_eq!(
        enter(&mut app, "//etc"),
        vec![Effect::Send {
            room: room("lobby"),
            local_id: 1,
            message: ClientMessage::chat("/etc")
        }]
    );
    assert_eq!(enter(&mut app, "/quit"), vec![Effect::Quit]);
}

#[test]
fn an_unknown_command_gets_a_hint_and_keeps_the_line() {
    let mut app = online(&["lobby"]);
    assert!(enter(&mut app, "/jion dev").is_empty());
    assert_eq!(app.input.text(), "/jion dev");
    let last = app.rooms[0].lines.back().unwrap();
    assert_eq!(last.kind, LineKind::Error);
    assert!(last.text.contains("unknown command /jion"), "{}", last.text);
    assert!(last.text.contains("/help"));
}

#[test]
fn leaving_the_last_room_opens_the_picker() {
    let mut app = online(&["lobby"]);
    assert_eq!(
        enter(&mut app, "/leave"),
        vec![Effect::Leave(room("lobby")), Effect::FetchRooms]
    );
    assert!(app.picker.is_some());
}

#[test]
fn up_and_down_walk_the_history() {
    let mut app = online(&["lobby"]);
    enter(&mut app, "one");
    enter(&mut app, "two");
    type_text(&mut app, "draft");
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "two");
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "one");
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    assert_eq!(app.input.text(), "draft");
}

#[test]
fn editing_keys_work_through_update() {
    let mut app = online(&["lobby"]);
    type_text(&mut app, "hello big world");
    app.update(ctrl('w'));
    assert_eq!(app.input.text(), "hello big ");
    app.update(ctrl('a'));
    app.update(key(KeyCode::Right));
    app.update(ctrl('k'));
    assert_eq!(app.input.text(), "h");
    app.update(ctrl('e'));
    type_text(&mut app, "i there");
    app.update(key(KeyCode::Home));
    app.update(key(KeyCode::Delete));
    assert_eq!(app.input.text(), "i there");
    app.update(key(KeyCode::End));
    app.update(key(KeyCode::Left));
    app.update(ctrl('u'));
    assert_eq!(app.input.text(), "e");
}

#[test]
fn key_releases_are_ignored() {
    let mut app = online(&["lobby"]);
    let mut release = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    app.update(Msg::Key(release));
    assert!(app.input.is_empty());
}

#[test]
fn unread_counts_and_mentions_follow_the_active_room() {
    let mut app = online(&["lobby", "dev"]);
    app.update(says("dev", "bob", 1, "anyone?"));
    app.update(says("dev", "bob", 2, "ALICE: ping"));
    app.update(says("lobby", "bob", 1, "here"));
    assert_eq!(app.rooms[1].unread, 2);
    assert!(app.rooms[1].mentioned);
    assert_eq!(app.rooms[0].unread, 0, "the active room has no unread");
    // Joins are not unread messages.
    app.update(net(
        "dev",
        NetEvent::Server(ServerEvent::Join(Presence {
            message: "carol joined".into(),
            user: "carol".into(),
            room: room("dev"),
            ts: 0,
        })),
    ));
    assert_eq!(app.rooms[1].unread, 2);

    app.update(alt('2'));
    assert_eq!(app.active, 1);
    assert_eq!((app.rooms[1].unread, app.rooms[1].mentioned), (0, false));
    app.update(ctrl('n'));
    assert_eq!(app.active, 0);
    app.update(ctrl('p'));
    assert_eq!(app.active, 1);
    app.update(alt('9'));
    assert_eq!(app.active, 1, "no room 9: nothing happens");
}

#[test]
fn mentions_need_a_whole_word() {
    assert!(mentions("alice: hi", "alice"));
    assert!(mentions("hi @Alice!", "alice"));
    assert!(!mentions("malice", "alice"));
    assert!(!mentions("alice_b", "alice"));
    assert!(mentions("ping 山田", "山田"));
}

#[test]
fn scrollback_pages_and_marks_new_messages_below() {
    let mut app = online(&["lobby"]);
    for id in 1..=60 {
        app.update(says("lobby", "bob", id, &format!("message {id}")));
    }
    app.update(key(KeyCode::PageUp));
    let page = app.rooms[0].scroll;
    assert!(page > 5, "{page}");
    app.update(says("lobby", "bob", 61, "new one"));
    assert_eq!(app.rooms[0].new_below, 1);
    assert_eq!(app.rooms[0].scroll, page + 1, "the view stays put");
    // The first Home at the top also says the room begins there (ids
    // start at 1), a note above; the second reaches it.
    app.update(key(KeyCode::Home));
    app.update(key(KeyCode::Home));
    let top = app.rooms[0].scroll;
    assert!(top > page);
    app.update(key(KeyCode::PageUp));
    assert_eq!(app.rooms[0].scroll, top, "cannot scroll past the top");
    app.update(Msg::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 40,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(app.rooms[0].scroll, top - WHEEL_ROWS);
    app.update(key(KeyCode::End));
    assert_eq!((app.rooms[0].scroll, app.rooms[0].new_below), (0, 0));
    // Home/End move the cursor when there is text.
    type_text(&mut app, "ab");
    app.update(key(KeyCode::Home));
    assert_eq!((app.rooms[0].scroll, app.input.cursor()), (0, 0));
}

#[test]
fn clicking_a_room_switches_to_it() {
    let mut app = online(&["lobby", "dev"]);
    // Row 0 is the title line; the rooms start under it.
    app.update(Msg::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 2,
        row: 2,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(app.active, 1);
}

#[test]
fn a_small_paste_is_edited_a_big_one_asks_first() {
    let mut app = online(&["lobby"]);
    app.update(Msg::Paste("line one\r\nline two".into()));
    assert_eq!(app.input.text(), "line one\nline two");
    let effects = app.update(key(KeyCode::Enter));
    assert!(matches!(
        &effects[..],
        [Effect::Send { message: ClientMessage::Chat { message }, .. }] if message == "line one\nline two"
    ));

    let big = (1..=10)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    app.update(Msg::Paste(big.clone()));
    assert_eq!(app.paste.as_deref(), Some(big.as_str()));
    assert!(
        app.update(key(KeyCode::Char('x'))).is_empty(),
        "other keys wait"
    );
    let effects = app.update(key(KeyCode::Enter));
    assert!(matches!(
        &effects[..],
        [Effect::Send { message: ClientMessage::Chat { message }, .. }] if *message == big
    ));
    assert!(app.paste.is_none());

    app.update(Msg::Paste("x".repeat(PASTE_CONFIRM_CHARS + 1)));
    assert!(app.paste.is_some(), "one huge line asks too");
    app.update(key(KeyCode::Esc));
    assert!(app.paste.is_none() && app.input.is_empty());

    app.update(Msg::Paste(big.clone()));
    app.update(key(KeyCode::Char('e')));
    assert_eq!(app.input.text(), big);
}

#[test]
fn ctrl_c_warns_once_about_undelivered_messages() {
    let mut app = online(&["lobby"]);
    assert_eq!(app.update(ctrl('c')), vec![Effect::Quit]);
    app.update(disconnected("lobby"));
    enter(&mut app, "still queued");
    assert!(app.update(ctrl('c')).is_empty());
    assert!(
        texts(&app, 0)
            .last()
            .unwrap()
            .contains("press Ctrl+C again")
    );
    assert_eq!(app.update(ctrl('c')), vec![Effect::Quit]);
}

#[test]
fn a_refusal_stops_until_joined_again() {
    let mut app = online(&["lobby"]);
    app.update(net(
        "lobby",
        NetEvent::Stopped {
            reason: "the server refused the request with HTTP 400: bad name".into(),
            name_taken: false,
        },
    ));
    assert!(matches!(app.rooms[0].conn, ConnState::Stopped { .. }));
    assert!(texts(&app, 0).last().unwrap().contains("not reconnecting"));
    assert_eq!(
        enter(&mut app, "/join lobby"),
        vec![Effect::Leave(room("lobby")), Effect::Join(room("lobby"))]
    );
}

#[test]
fn server_errors_fail_the_message_in_flight() {
    let mut app = online(&["lobby"]);
    enter(&mut app, "spam");
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Error(ErrorEvent {
            message: "slow down".into(),
            code: ErrorCode::RateLimited,
            ts: 0,
        })),
    ));
    assert_eq!(
        app.rooms[0].pending[0].state,
        PendingState::Failed("slow down".into())
    );
    app.update(net("lobby", NetEvent::NotSent { local_id: 1 }));
    assert!(matches!(
        app.rooms[0].pending[0].state,
        PendingState::Failed(_)
    ));
}

#[test]
fn a_send_the_task_could_not_write_is_queued_again() {
    let mut app = online(&["lobby"]);
    enter(&mut app, "hi");
    app.update(net("lobby", NetEvent::NotSent { local_id: 1 }));
    assert_eq!(app.rooms[0].pending[0].state, PendingState::Queued);
}

#[test]
fn plain_mode_flushes_on_connect_and_keeps_nick_local() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    enter(&mut app, "queued");
    let effects = app.update(net("lobby", NetEvent::Connected { mode: Mode::Plain }));
    assert_eq!(effects.len(), 1);
    assert!(texts(&app, 0)[0].contains("plain mode"));
    // The plain echo has no name; it settles by text.
    app.update(says("lobby", "", 0, "queued"));
    assert!(app.rooms[0].pending.is_empty());
    let effects = enter(&mut app, "/nick bob");
    assert_eq!(
        effects,
        vec![Effect::SetName(UserName::new("bob").unwrap())]
    );
    assert!(texts(&app, 0).last().unwrap().contains("plain mode"));
}

#[test]
fn the_picker_joins_a_listed_or_typed_room() {
    let mut app = new_app();
    app.start(&[]);
    app.update(Msg::Rooms(Ok(vec![
        RoomSummary {
            name: room("lobby"),
            members: 3,
        },
        RoomSummary {
            name: room("dev"),
            members: 1,
        },
    ])));
    app.update(key(KeyCode::Down));
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        vec![Effect::Join(room("dev"))]
    );
    assert!(app.picker.is_none());

    enter(&mut app, "/join");
    app.update(Msg::Rooms(Err("cannot connect".into())));
    assert!(enter(&mut app, "bad name!").is_empty());
    let error = app.picker.as_ref().unwrap().error.clone().unwrap();
    assert!(error.contains("ASCII letters"), "{error}");
    app.update(ctrl('u'));
    assert_eq!(
        enter(&mut app, "new-room"),
        vec![Effect::Join(room("new-room"))]
    );
    enter(&mut app, "/join");
    app.update(key(KeyCode::Esc));
    assert!(app.picker.is_none(), "Esc goes back when rooms are joined");
}

#[test]
fn the_picker_takes_clicks() {
    let mut app = new_app();
    app.start(&[]);
    app.update(Msg::Rooms(Ok(vec![
        RoomSummary {
            name: room("lobby"),
            members: 3,
        },
        RoomSummary {
            name: room("dev"),
            members: 1,
        },
    ])));
    let list = crate::geometry::picker_list(app.screen());
    let effects = app.update(Msg::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 4,
        row: list.y + 1,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(effects, vec![Effect::Join(room("dev"))]);
}

#[test]
fn tab_completes_member_names() {
    let mut app = online(&["lobby"]);
    type_text(&mut app, "b");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bob: ");
    type_text(&mut app, "hi B");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bob: hi bob ");
}

#[test]
fn late_events_from_a_left_room_are_ignored() {
    let mut app = online(&["lobby", "dev"]);
    enter(&mut app, "/leave dev");
    app.update(says("dev", "bob", 9, "late"));
    assert_eq!(app.rooms.len(), 1);
}

#[test]
fn a_new_epoch_resets_ids_even_when_the_new_sequence_is_already_ahead() {
    let mut app = online(&["lobby"]);
    app.update(says("lobby", "bob", 5, "before the restart"));
    app.update(disconnected("lobby"));
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    // The restarted server has already passed id 5 in its new epoch.
    let history = vec![
        chat("lobby", "carol", 3, "new 3"),
        chat("lobby", "carol", 9, "new 9"),
    ];
    let Msg::Net(room, NetEvent::Server(ServerEvent::Welcome(mut fresh))) =
        welcome("lobby", "alice", &["alice", "carol"], history)
    else {
        unreachable!()
    };
    fresh.epoch = "e2".into();
    app.update(Msg::Net(
        room,
        NetEvent::Server(ServerEvent::Welcome(fresh)),
    ));
    let shown = texts(&app, 0);
    assert!(
        shown.iter().any(|t| t.contains("history was reset")),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|t| t == "new 3"),
        "ids of the new epoch are not duplicates: {shown:?}"
    );
    assert_eq!(app.rooms[0].epoch.as_deref(), Some("e2"));
}

#[test]
fn a_server_restarted_without_history_starts_its_ids_again() {
    let mut app = online(&["lobby"]);
    app.update(says("lobby", "bob", 41, "before the restart"));
    app.update(disconnected("lobby"));
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    app.update(welcome("lobby", "alice", &["alice"], vec![]));
    assert!(
        texts(&app, 0)
            .iter()
            .any(|t| t.contains("history was reset"))
    );
    // Issue #13 bug 4: not also "nothing was missed" (it may have been).
    assert!(
        !texts(&app, 0)
            .iter()
            .any(|t| t.contains("nothing was missed")),
        "{:?}",
        texts(&app, 0)
    );
    enter(&mut app, "after");
    app.update(says("lobby", "alice", 1, "after"));
    assert!(
        app.rooms[0].pending.is_empty(),
        "id 1 is new, not a duplicate"
    );
    assert_eq!(texts(&app, 0).last().map(String::as_str), Some("after"));
}

#[test]
fn offline_counts_down_with_ticks_only() {
    let mut app = online(&["lobby"]);
    assert!(!app.is_animating());
    app.update(net(
        "lobby",
        NetEvent::Disconnected {
            reason: "gone".into(),
            close_code: Some(1001),
            retry_in: Duration::from_millis(4_200),
            at_ms: 1_000_000,
            attempt: 1,
        },
    ));
    assert!(app.is_animating());
    assert!(matches!(
        app.rooms[0].conn,
        ConnState::Offline {
            retry_at_ms: 1_004_200,
            ..
        }
    ));
    app.dirty = false;
    app.update(Msg::Tick { now_ms: 1_002_000 });
    assert_eq!(app.now_ms, 1_002_000);
    assert!(app.dirty);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    assert!(!app.is_animating());
    app.dirty = false; // drawn
    app.update(Msg::Tick { now_ms: 1_003_000 });
    assert!(!app.dirty, "nothing to redraw once online");
}

#[test]
fn our_own_join_right_after_the_welcome_is_not_repeated() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    let join = |user: &str| {
        net(
            "lobby",
            NetEvent::Server(ServerEvent::Join(Presence {
                message: format!("{user} joined"),
                user: user.into(),
                room: room("lobby"),
                ts: 0,
            })),
        )
    };
    app.dirty = false;
    app.update(welcome("lobby", "alice", &["alice"], vec![]));
    app.update(join("alice"));
    assert!(app.dirty, "a no-op after a change keeps the batch dirty");
    app.update(join("bob"));
    // A second connection with our name later is news.
    app.update(join("alice"));
    assert_eq!(
        texts(&app, 0),
        [
            "Welcome to lobby, alice: 1 people here",
            "bob joined lobby",
            "alice joined lobby"
        ]
    );
    assert_eq!(app.rooms[0].member_names(), ["alice", "bob"]);
}
