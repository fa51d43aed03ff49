//! Round-2 stories through `App::update` (#13, and #12's client part):
//! highlights and notifications, the window title, room logs, the read
//! marker, Alt+A, loading older messages, search, `/reconnect`, name
//! completion, and the screen bugs of #13 that live in the app.

use chat_protocol::{
    ChatEvent, ErrorCode, ErrorEvent, HistoryEvent, Limits, Mode, Presence, ServerEvent, UserName,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

use super::tests::{alt, chat, ctrl, enter, key, net, online, room, says, type_text, welcome};
use super::*;
use crate::msg::{Effect, Msg, NetEvent};

fn texts(app: &App, index: usize) -> Vec<String> {
    app.rooms[index]
        .lines
        .iter()
        .map(|l| l.text.clone())
        .collect()
}

/// `online(rooms)` with highlight words and logging on.
fn online_with(rooms: &[&str], highlights: &[&str], logging: bool) -> App {
    let mut app = App::new(AppOptions {
        highlights: highlights.iter().map(|w| (*w).to_owned()).collect(),
        logging,
        ..AppOptions::new("ws://127.0.0.1:8000", Some(UserName::new("alice").unwrap()))
    });
    app.update(Msg::Resize {
        width: 80,
        height: 20,
    });
    let names: Vec<_> = rooms.iter().map(|r| room(r)).collect();
    app.start(&names);
    for r in rooms {
        app.update(net(r, NetEvent::Connected { mode: Mode::Events }));
        app.update(welcome(r, "alice", &["alice", "bob"], vec![]));
    }
    app.switch_to(0);
    app
}

fn notifies(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify { from, text, .. } => Some((from.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| crate::ui::view(app, frame)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn a_highlight_notifies_and_the_title_counts_unread() {
    let mut app = online_with(&["lobby", "dev"], &["deploy"], false);
    assert_eq!(app.title(), "chat-tui: lobby");
    let effects = app.update(says("dev", "bob", 1, "alice: ping"));
    assert_eq!(
        notifies(&effects),
        vec![("bob".to_owned(), "alice: ping".to_owned())]
    );
    let effects = app.update(says("dev", "bob", 2, "the Deploy is done"));
    assert_eq!(notifies(&effects).len(), 1, "a highlight word, any case");
    assert!(notifies(&app.update(says("dev", "bob", 3, "redeployed"))).is_empty());
    assert!(notifies(&app.update(says("dev", "bob", 4, "malice"))).is_empty());
    // In the room being read, a highlight still rings (the user may be away).
    assert_eq!(
        notifies(&app.update(says("lobby", "bob", 1, "alice?"))).len(),
        1
    );
    // Our own messages never ring.
    assert!(notifies(&app.update(says("lobby", "alice", 2, "deploy alice"))).is_empty());
    assert_eq!(app.title(), "(4!) chat-tui: lobby");
    app.update(alt('2'));
    assert_eq!(app.title(), "chat-tui: dev");
    app.update(says("lobby", "bob", 3, "quiet"));
    assert_eq!(app.title(), "(1) chat-tui: dev");
}

#[test]
fn lines_become_safe_log_lines_when_logging() {
    let mut app = online_with(&["lobby"], &[], true);
    let effects = app.update(says("lobby", "bob", 1, "hi\u{1b}[31m\nthere"));
    let logs: Vec<&String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log { room: r, line } if *r == room("lobby") => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 1);
    let line = logs[0];
    assert!(line.ends_with("\tbob\thi␛[31m⏎there"), "{line:?}");
    assert!(!line.contains('\u{1b}') && !line.contains('\n'));
    let effects = app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Join(Presence {
            message: "carol joined".into(),
            user: "carol".into(),
            room: room("lobby"),
            ts: 1_795_618_569_000,
        })),
    ));
    assert!(effects.iter().any(
        |e| matches!(e, Effect::Log { line, .. } if line.contains("\t-->\tcarol joined lobby"))
    ));
    // Not logging: no Log effects at all.
    let mut quiet = online_with(&["lobby"], &[], false);
    let effects = quiet.update(says("lobby", "bob", 1, "hi"));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Log { .. })));
}

#[test]
fn the_read_marker_shows_what_came_while_away() {
    let mut app = online(&["lobby", "dev"]);
    app.update(says("lobby", "bob", 1, "read this"));
    app.update(alt('2'));
    assert_eq!(app.rooms[0].marker_index(), None, "nothing new yet");
    app.update(says("lobby", "bob", 2, "said while away"));
    app.update(alt('1'));
    let marker = app.rooms[0].marker_index().expect("a marker");
    assert_eq!(app.rooms[0].lines[marker].text, "read this");
    let shown = screen(&app, 80, 12);
    let rule = shown
        .lines()
        .position(|l| l.contains(crate::ui::messages::MARKER_LABEL))
        .expect("the marker is drawn");
    let read = shown.lines().position(|l| l.contains("read this")).unwrap();
    let new = shown
        .lines()
        .position(|l| l.contains("said while away"))
        .unwrap();
    assert!(read < rule && rule < new, "{shown}");
    // Coming back with nothing new: no marker.
    app.update(alt('2'));
    app.update(alt('1'));
    assert_eq!(app.rooms[0].marker_index(), None);
}

#[test]
fn alt_a_goes_to_highlights_first_then_activity() {
    let mut app = online(&["lobby", "dev", "ops"]);
    app.update(says("dev", "bob", 1, "something"));
    app.update(says("ops", "bob", 1, "alice: look"));
    app.update(alt('a'));
    assert_eq!(app.active, 2, "the highlight first");
    app.update(alt('a'));
    assert_eq!(app.active, 1, "then other activity");
    app.update(alt('a'));
    assert_eq!(app.active, 1, "nothing left: stays");
}

/// A welcome whose history holds ids `from..=to`.
fn welcome_with(name: &str, from: u64, to: u64) -> Msg {
    welcome(
        name,
        "alice",
        &["alice", "bob"],
        (from..=to)
            .map(|id| chat(name, "bob", id, &format!("message {id}")))
            .collect(),
    )
}

fn page(name: &str, reference: &str, ids: std::ops::RangeInclusive<u64>, more: bool) -> Msg {
    net(
        name,
        NetEvent::Server(ServerEvent::History(HistoryEvent {
            message: String::new(),
            room: room(name),
            messages: ids
                .map(|id| chat(name, "bob", id, &format!("message {id}")))
                .collect(),
            more,
            before: None,
            after: None,
            q: None,
            reference: Some(reference.to_owned()),
            ts: 0,
        })),
    )
}

/// The history request in `effects`: (before, limit, ref, search words).
fn asked(effects: &[Effect]) -> Option<(Option<u64>, String, Option<String>)> {
    effects.iter().find_map(|e| match e {
        Effect::History { request, .. } => Some((
            request.query.before_id(),
            request.reference.clone().unwrap_or_default(),
            request.query.search_words().map(|s| s.text().to_owned()),
        )),
        _ => None,
    })
}

#[test]
fn pgup_at_the_top_loads_older_messages_and_keeps_the_view() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 101, 160));
    // Scrolling up, not yet at the top: nothing asked.
    assert_eq!(asked(&app.update(key(KeyCode::PageUp))), None);
    // At the top: the page before the oldest line is asked for, once.
    let effects = app.update(key(KeyCode::Home));
    assert_eq!(asked(&effects), Some((Some(101), "1".into(), None)));
    assert_eq!(app.rooms[0].older, Older::Loading);
    assert_eq!(asked(&app.update(key(KeyCode::PageUp))), None);
    assert!(screen(&app, 80, 20).contains("[loading…]"));
    let trimmed = |screen: String| -> String {
        screen
            .replace("[loading…] ", "")
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = trimmed(screen(&app, 80, 20));
    // An answer to something else is ignored.
    app.update(page("lobby", "other", 1..=5, true));
    assert!(!texts(&app, 0).contains(&"message 1".to_owned()));
    // The page arrives: the lines go above, the view does not move.
    app.update(page("lobby", "1", 51..=100, true));
    assert_eq!(app.rooms[0].older, Older::Idle);
    assert_eq!(
        trimmed(screen(&app, 80, 20)),
        before,
        "the reading position stays"
    );
    assert!(!screen(&app, 80, 20).contains("loading"));
    assert_eq!(app.rooms[0].lines[0].text, "message 51");
    // Further up, and at the top again: the next page.
    app.update(key(KeyCode::PageUp));
    assert_ne!(trimmed(screen(&app, 80, 20)), before);
    let effects = app.update(key(KeyCode::Home));
    assert_eq!(asked(&effects), Some((Some(51), "2".into(), None)));
    app.update(page("lobby", "2", 1..=50, false));
    assert_eq!(app.rooms[0].older, Older::Exhausted);
    assert_eq!(texts(&app, 0)[0], network::BEGINNING_NOTE);
    assert_eq!(texts(&app, 0)[1], "message 1");
    // Every id once, in order.
    let ids: Vec<u64> = app.rooms[0]
        .lines
        .iter()
        .map(|l| l.id)
        .filter(|id| *id > 0)
        .collect();
    assert_eq!(ids, (1..=160).collect::<Vec<_>>());
    // Nothing more is asked.
    app.update(key(KeyCode::Home));
    assert_eq!(asked(&app.update(key(KeyCode::PageUp))), None);
    assert_eq!(
        screen(&app, 80, 20)
            .matches("the beginning of the room")
            .count(),
        1
    );
}

#[test]
fn the_wheel_at_the_top_loads_older_messages_too() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 11, 40));
    app.update(key(KeyCode::Home));
    app.update(page("lobby", "1", 5..=10, true));
    let mut effects = Vec::new();
    for _ in 0..40 {
        effects.extend(
            app.update(Msg::Mouse(ratatui::crossterm::event::MouseEvent {
                kind: ratatui::crossterm::event::MouseEventKind::ScrollUp,
                column: 40,
                row: 5,
                modifiers: ratatui::crossterm::event::KeyModifiers::NONE,
            })),
        );
    }
    assert_eq!(asked(&effects), Some((Some(5), "2".into(), None)));
}

#[test]
fn ids_from_1_need_no_request_the_beginning_is_said() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 1, 30));
    assert_eq!(asked(&app.update(key(KeyCode::Home))), None);
    assert_eq!(texts(&app, 0)[0], network::BEGINNING_NOTE);
}

#[test]
fn plain_servers_cannot_page_or_search_and_say_so() {
    let mut app = online(&["lobby"]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Plain }));
    for i in 0..30 {
        app.update(says("lobby", "", 0, &format!("plain {i}")));
    }
    assert_eq!(asked(&app.update(key(KeyCode::Home))), None);
    assert_eq!(asked(&app.update(key(KeyCode::PageUp))), None);
    let notes = texts(&app, 0)
        .iter()
        .filter(|t| t.contains("does not keep older messages"))
        .count();
    assert_eq!(notes, 1, "said once, on the second PgUp at the top");
    assert_eq!(asked(&enter(&mut app, "/search plain")), None);
    let search = app.rooms[0].search.as_ref().expect("a search view");
    assert!(matches!(&search.state, SearchState::Failed(why) if why.contains("cannot search")));
    app.update(key(KeyCode::Esc));
    assert!(app.rooms[0].search.is_none());
}

#[test]
fn a_server_without_history_requests_is_told_apart() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 101, 130));
    assert!(asked(&app.update(key(KeyCode::Home))).is_some());
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Error(ErrorEvent {
            message: "unknown message type".into(),
            code: ErrorCode::UnknownType,
            ts: 0,
        })),
    ));
    assert_eq!(app.rooms[0].older, Older::Unsupported);
    assert!(app.rooms[0].pending.is_empty(), "no message was failed");
    assert_eq!(asked(&enter(&mut app, "/search anything")), None);
    assert!(matches!(
        &app.rooms[0].search.as_ref().unwrap().state,
        SearchState::Failed(_)
    ));
}

#[test]
fn ctrl_r_searches_the_room_and_esc_returns() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 101, 110));
    app.update(ctrl('r'));
    assert!(app.searching);
    type_text(&mut app, "deploy friday");
    let effects = app.update(key(KeyCode::Enter));
    assert_eq!(
        asked(&effects),
        Some((None, "1".into(), Some("deploy friday".into())))
    );
    assert!(!app.searching && app.input.is_empty());
    assert_eq!(
        app.rooms[0].search.as_ref().unwrap().state,
        SearchState::Searching
    );
    let answer = ServerEvent::History(HistoryEvent {
        message: String::new(),
        room: room("lobby"),
        messages: vec![
            chat("lobby", "bob", 7, "deploy on friday?"),
            chat("lobby", "carol", 9, "Friday deploy is fine"),
        ],
        more: false,
        before: None,
        after: None,
        q: Some("deploy friday".into()),
        reference: Some("1".into()),
        ts: 0,
    });
    app.update(net("lobby", NetEvent::Server(answer)));
    let search = app.rooms[0].search.as_ref().unwrap();
    assert_eq!(search.state, SearchState::Done);
    assert_eq!(search.results.len(), 2);
    let shown = screen(&app, 80, 12);
    assert!(shown.contains("2 messages"), "{shown}");
    assert!(shown.contains("deploy on friday?") && !shown.contains("message 110"));
    // Live lines keep coming into the room meanwhile.
    app.update(says("lobby", "bob", 111, "live meanwhile"));
    assert!(!screen(&app, 80, 12).contains("live meanwhile"));
    app.update(key(KeyCode::Esc));
    assert!(app.rooms[0].search.is_none());
    let shown = screen(&app, 80, 12);
    assert!(shown.contains("live meanwhile") && !shown.contains("deploy on friday?"));
    // Esc on the search prompt cancels it without searching.
    app.update(ctrl('r'));
    type_text(&mut app, "abc");
    assert!(app.update(key(KeyCode::Esc)).is_empty());
    assert!(!app.searching && app.input.is_empty() && app.rooms[0].search.is_none());
    // /search is the same, and /s its alias.
    assert_eq!(
        asked(&enter(&mut app, "/s release")),
        Some((None, "2".into(), Some("release".into())))
    );
}

#[test]
fn a_refused_search_says_why() {
    let mut app = online(&["lobby"]);
    enter(&mut app, "/search x");
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Error(ErrorEvent {
            message: "q: at most 10 words".into(),
            code: ErrorCode::InvalidQuery,
            ts: 0,
        })),
    ));
    assert_eq!(
        app.rooms[0].search.as_ref().unwrap().state,
        SearchState::Failed("q: at most 10 words".into())
    );
    // The connection dropping while searching also ends it visibly.
    enter(&mut app, "/search y");
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    assert!(matches!(
        &app.rooms[0].search.as_ref().unwrap().state,
        SearchState::Failed(why) if why.contains("connection was lost")
    ));
}

#[test]
fn reconnect_now_or_restart_a_stopped_room() {
    let mut app = online(&["lobby"]);
    assert_eq!(
        enter(&mut app, "/reconnect"),
        vec![Effect::Reconnect(room("lobby"))]
    );
    app.update(net(
        "lobby",
        NetEvent::Stopped {
            reason: "refused".into(),
            name_taken: false,
        },
    ));
    assert!(texts(&app, 0).last().unwrap().contains("/reconnect"));
    assert_eq!(
        enter(&mut app, "/reconnect"),
        vec![Effect::Leave(room("lobby")), Effect::Join(room("lobby"))]
    );
}

#[test]
fn a_taken_name_stops_the_room_and_nick_joins_again() {
    let mut app = online(&["lobby", "dev"]);
    app.update(net(
        "lobby",
        NetEvent::Stopped {
            reason: "the server refused the request with HTTP 409: name_taken".into(),
            name_taken: true,
        },
    ));
    assert!(texts(&app, 0).last().unwrap().contains("/nick"));
    let effects = enter(&mut app, "/nick alice2");
    assert!(effects.contains(&Effect::SetName(UserName::new("alice2").unwrap())));
    assert!(effects.contains(&Effect::Leave(room("lobby"))));
    assert!(effects.contains(&Effect::Join(room("lobby"))));
    assert!(
        !effects.contains(&Effect::Join(room("dev"))),
        "a room that is online is renamed, not rejoined"
    );
}

#[test]
fn tab_cycles_through_every_matching_name() {
    let mut app = online(&["lobby"]);
    app.update(welcome(
        "lobby",
        "alice",
        &["alice", "bob", "bobby", "carol"],
        vec![],
    ));
    type_text(&mut app, "bo");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bob: ");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bobby: ");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bob: ");
    // In the middle of a line: no colon.
    app.input.take();
    type_text(&mut app, "hi b");
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "hi bobby ");
    // Typing ends the cycle: Tab then completes the new word.
    type_text(&mut app, "c");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "hi bobby carol ");
}

#[test]
fn blank_lines_are_not_sent_and_leave_names_the_room() {
    let mut app = online(&["lobby"]);
    assert!(enter(&mut app, "   ").is_empty());
    assert!(app.rooms[0].pending.is_empty());
    app.input.take();
    assert!(enter(&mut app, "/leave nosuch").is_empty());
    assert_eq!(texts(&app, 0).last().unwrap(), "you are not in nosuch");
}

#[test]
fn a_line_too_long_for_the_server_is_refused_before_sending() {
    let mut app = online(&["lobby"]);
    let Msg::Net(_, NetEvent::Server(ServerEvent::Welcome(mut hello))) =
        welcome("lobby", "alice", &["alice"], vec![])
    else {
        unreachable!("welcome() makes a welcome")
    };
    hello.limits = Some(Limits {
        rate: 10.0,
        burst: 10,
        max_message_bytes: 100,
    });
    app.update(net("lobby", NetEvent::Server(ServerEvent::Welcome(hello))));
    let long = "x".repeat(150);
    assert!(enter(&mut app, &long).is_empty(), "nothing sent");
    assert_eq!(app.input.text(), long, "kept to shorten");
    let note = texts(&app, 0).last().unwrap().clone();
    assert!(
        note.contains("too long") && note.contains("at most 100"),
        "{note}"
    );
    app.input.take();
    assert_eq!(enter(&mut app, "short").len(), 1);
}

#[test]
fn a_search_result_highlights_like_a_live_line() {
    let mut app = online_with(&["lobby"], &["deploy"], false);
    enter(&mut app, "/search deploy");
    let found: Vec<ChatEvent> = vec![chat("lobby", "bob", 3, "deploy now")];
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::History(HistoryEvent {
            message: String::new(),
            room: room("lobby"),
            messages: found,
            more: true,
            before: None,
            after: None,
            q: None,
            reference: Some("1".into()),
            ts: 0,
        })),
    ));
    let search = app.rooms[0].search.as_ref().unwrap();
    assert!(search.more);
    assert!(matches!(
        search.results[0].kind,
        LineKind::Chat { mention: true, .. }
    ));
}

#[test]
fn a_history_request_nobody_answers_is_given_up_and_said() {
    let mut app = online(&["lobby"]);
    app.update(welcome_with("lobby", 101, 160));
    assert!(!app.is_animating());
    assert!(asked(&app.update(key(KeyCode::Home))).is_some());
    assert!(app.is_animating(), "ticks come while an answer is awaited");
    // Timed from the first tick after asking (the app has no clock).
    app.update(Msg::Tick { now_ms: 50_000 });
    app.update(Msg::Tick { now_ms: 59_999 });
    assert_eq!(app.rooms[0].older, Older::Loading);
    app.update(Msg::Tick { now_ms: 60_000 });
    assert_eq!(app.rooms[0].older, Older::Idle);
    assert!(texts(&app, 0)[0].contains("did not come"));
    assert!(!app.is_animating());
    // A late answer is ignored; PgUp at the top asks again.
    app.update(page("lobby", "1", 51..=100, true));
    assert!(!texts(&app, 0).contains(&"message 51".to_owned()));
    assert_eq!(
        asked(&app.update(key(KeyCode::Home))).map(|a| a.1),
        Some("2".to_owned())
    );
    // A search too.
    let mut app = online(&["lobby"]);
    enter(&mut app, "/search words");
    app.update(Msg::Tick { now_ms: 1_000 });
    app.update(Msg::Tick { now_ms: 11_000 });
    assert!(matches!(
        &app.rooms[0].search.as_ref().unwrap().state,
        SearchState::Failed(why) if why.contains("did not answer")
    ));
}
