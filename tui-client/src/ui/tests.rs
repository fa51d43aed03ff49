//! Rendering tests on ratatui's `TestBackend`, with insta snapshots. States
//! are built through `App::update` with fixed times (UTC).

use chat_protocol::{Mode, Presence, RoomSummary, ServerEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

use crate::app::App;
use crate::app::tests::{enter, key, net, new_app, online, room, says, type_text, welcome};
use crate::msg::{Msg, NetEvent};
use crate::sanitize::{is_bidi_control, is_harmless};

fn render(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    app.update(Msg::Resize { width, height });
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| super::view(app, frame)).unwrap();
    terminal
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
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

fn assert_every_cell_harmless(terminal: &Terminal<TestBackend>) {
    let buffer = terminal.backend().buffer();
    for cell in &buffer.content {
        let symbol = cell.symbol();
        assert!(is_harmless(symbol), "cell {symbol:?} is not harmless");
        assert!(
            !symbol.chars().any(|c| c.is_control() || is_bidi_control(c)),
            "{symbol:?}"
        );
    }
}

/// A room with a conversation, as in the WeeChat reference.
fn conversation() -> App {
    let mut app = online(&["lobby", "random"]);
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Join(Presence {
            message: "carol joined".into(),
            user: "carol".into(),
            room: room("lobby"),
            ts: 1_795_618_568_000,
        })),
    ));
    app.update(says("lobby", "bob", 1, "hi alice, welcome to the lobby"));
    app.update(says("lobby", "bob", 2, "anyone tried the new build?"));
    app.update(says("lobby", "carol", 3, "alice: ping"));
    app.update(says(
        "lobby",
        "bob",
        4,
        &"a long message lorem ipsum ".repeat(8),
    ));
    app.update(says("lobby", "bob", 5, "emoji test 🎉 日本語"));
    app.update(says("random", "bob", 1, "over here too"));
    app.update(says("random", "bob", 2, "alice?"));
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Leave(Presence {
            message: "carol left".into(),
            user: "carol".into(),
            room: room("lobby"),
            ts: 1_795_618_575_000,
        })),
    ));
    type_text(&mut app, "hello bob, half-typed");
    app
}

#[test]
fn full_layout_at_100x30() {
    let mut app = conversation();
    let terminal = render(&mut app, 100, 30);
    insta::assert_snapshot!("full_100x30", terminal.backend());
}

#[test]
fn standard_80x20() {
    let mut app = conversation();
    let terminal = render(&mut app, 80, 20);
    insta::assert_snapshot!("standard_80x20", terminal.backend());
}

#[test]
fn escape_sequences_render_as_harmless_text() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    let mut welcome_msg = welcome("lobby", "alice", &["alice", "bob\x1b]2;x\x07"], vec![]);
    if let Msg::Net(_, NetEvent::Server(ServerEvent::Welcome(w))) = &mut welcome_msg {
        w.message = "\x1b[2Jwelcome \x1b[1;1H\u{202e}home".into();
    }
    app.update(welcome_msg);
    let nasty = concat!(
        "\x1b[31mred\x1b[0m ",                       // colour
        "\x1b[2J\x1b[H",                             // clear screen, cursor home
        "\x1b[10;10Hmoved ",                         // cursor movement
        "\x1b]0;pwned title\x07 ",                   // OSC window title
        "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ ", // OSC 8 hyperlink
        "\u{9b}31m C1-CSI ",                         // 8-bit CSI
        "\u{202e}desrever\u{202c} ",                 // bidi override
        "\u{2066}iso\u{2069}\u{200f}\u{061c} ",
        "bell\x07 del\x7f nul\0 bs\x08 cr\rlf\ntab\tend"
    );
    app.update(says("lobby", "mallory\x1b[5m", 1, nasty));
    let terminal = render(&mut app, 100, 16);
    assert_every_cell_harmless(&terminal);
    let text = screen_text(&terminal);
    assert!(text.contains("␛[31mred␛[0m"), "{text}");
    assert!(text.contains("␛]0;pwned title␇"), "{text}");
    assert!(text.contains("desrever"), "{text}");
    assert!(!text.contains('\u{202e}'));
    insta::assert_snapshot!("escape_sequences", terminal.backend());
}

#[test]
fn wide_characters_wrap_without_splitting() {
    let mut app = online(&["lobby"]);
    app.update(says(
        "lobby",
        "山田",
        1,
        "日本語のテキストはとても長いのでこの行は折り返されるはずです🎉🎉🎉👨‍👩‍👧 and some ascii after",
    ));
    app.update(says("lobby", "bob", 2, "after"));
    let terminal = render(&mut app, 40, 10);
    insta::assert_snapshot!("wide_40x10", terminal.backend());
    let text = screen_text(&terminal);
    assert!(text.contains("after"));
}

#[test]
fn long_message_hangs_under_the_text_column() {
    let mut app = online(&["lobby"]);
    app.update(says(
        "lobby",
        "bob",
        1,
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\nA second paragraph after a newline.",
    ));
    let terminal = render(&mut app, 60, 10);
    insta::assert_snapshot!("long_wrapped_60x10", terminal.backend());
}

#[test]
fn tiny_terminal_20x5() {
    let mut app = conversation();
    let terminal = render(&mut app, 20, 5);
    insta::assert_snapshot!("tiny_20x5", terminal.backend());
}

#[test]
fn no_size_panics() {
    let mut app = conversation();
    enter(&mut app, "/join");
    let mut picker = app.clone();
    picker.update(Msg::Rooms(Ok(vec![RoomSummary {
        name: room("lobby"),
        members: 2,
    }])));
    let mut app = conversation();
    app.update(Msg::Paste("a\nb\nc\nd\ne".into()));
    for width in 0..=45 {
        for height in 0..=12 {
            render(&mut app, width, height);
            render(&mut picker, width, height);
        }
    }
}

#[test]
fn offline_status_and_pending_messages() {
    let mut app = online(&["lobby"]);
    app.update(says("lobby", "bob", 1, "are you there?"));
    enter(&mut app, "sent but not echoed");
    app.update(net(
        "lobby",
        NetEvent::Disconnected {
            reason: "connection lost: the server went away without closing".into(),
            close_code: None,
            retry_in: std::time::Duration::from_millis(2500),
            at_ms: 0,
            attempt: 2,
        },
    ));
    enter(&mut app, "typed while offline");
    let terminal = render(&mut app, 80, 12);
    insta::assert_snapshot!("offline_80x12", terminal.backend());
}

#[test]
fn plain_mode_says_so() {
    let mut app = new_app();
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Plain }));
    app.update(says("lobby", "", 0, "hello from a tutorial server"));
    let terminal = render(&mut app, 80, 8);
    insta::assert_snapshot!("plain_80x8", terminal.backend());
}

#[test]
fn scrolled_up_shows_new_messages_below() {
    let mut app = online(&["lobby"]);
    for id in 1..=30 {
        app.update(says("lobby", "bob", id, &format!("message {id}")));
    }
    app.update(key(KeyCode::PageUp));
    app.update(says("lobby", "carol", 31, "new!"));
    app.update(says("lobby", "carol", 32, "newer!"));
    let terminal = render(&mut app, 80, 12);
    insta::assert_snapshot!("scrolled_80x12", terminal.backend());
}

#[test]
fn picker_lists_rooms() {
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
    let terminal = render(&mut app, 80, 10);
    insta::assert_snapshot!("picker_80x10", terminal.backend());
}

#[test]
fn paste_confirmation() {
    let mut app = online(&["lobby"]);
    app.update(Msg::Paste(
        (1..=12)
            .map(|i| format!("pasted line {i}"))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    let terminal = render(&mut app, 80, 16);
    insta::assert_snapshot!("paste_80x16", terminal.backend());
}

#[test]
fn cursor_follows_wide_input() {
    let mut app = online(&["lobby"]);
    type_text(&mut app, "日本x");
    app.update(key(KeyCode::Left));
    let mut terminal = render(&mut app, 40, 6);
    let position = terminal.get_cursor_position().unwrap();
    // "[alice] " is 8 cells; "日本" is 4.
    assert_eq!((position.x, position.y), (12, 5));
    // A line longer than the screen scrolls so that the cursor stays in view.
    type_text(&mut app, &"long ".repeat(20));
    let mut terminal2 = render(&mut app, 40, 6);
    let position = terminal2.get_cursor_position().unwrap();
    assert!(position.x < 40);
}

#[test]
fn nick_colours_are_stable_and_varied() {
    use super::nick_color;
    assert_eq!(nick_color("alice"), nick_color("alice"));
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let mut colours: Vec<String> = names
        .iter()
        .map(|n| format!("{:?}", nick_color(n)))
        .collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() >= 4, "{colours:?}");
}

/// A chat event at `ts` (unix ms).
fn chat_at(user: &str, id: u64, ts: u64, text: &str) -> Msg {
    let mut event = crate::app::tests::chat("lobby", user, id, text);
    event.ts = ts;
    net("lobby", NetEvent::Server(ServerEvent::Chat(event)))
}

/// 2026-12-03 23:58:00 UTC, a Thursday.
const THURSDAY_LATE: u64 = 1_796_342_280_000;

#[test]
fn day_changes_and_the_read_marker() {
    let mut app = online(&["lobby", "dev"]);
    app.update(chat_at("bob", 1, THURSDAY_LATE, "late on thursday"));
    app.update(chat_at(
        "carol",
        2,
        THURSDAY_LATE + 60_000,
        "still thursday",
    ));
    app.update(chat_at("bob", 3, THURSDAY_LATE + 180_000, "past midnight"));
    // Away in dev, and back: the marker is under what was seen.
    app.update(crate::app::tests::alt('2'));
    app.update(chat_at(
        "carol",
        4,
        THURSDAY_LATE + 240_000,
        "while you were away",
    ));
    app.update(crate::app::tests::alt('1'));
    let terminal = render(&mut app, 80, 12);
    let text = screen_text(&terminal);
    assert!(text.contains("Friday 4 December 2026"), "{text}");
    assert!(text.contains("new since you left"), "{text}");
    insta::assert_snapshot!("days_marker_80x12", terminal.backend());
}

#[test]
fn a_configured_time_format_and_the_topic_in_the_title() {
    let mut app = App::new(crate::app::AppOptions {
        time_format: crate::clock::TimeFormat::parse("%I:%M %p").unwrap(),
        ..crate::app::AppOptions::new(
            "ws://127.0.0.1:8000",
            Some(chat_protocol::UserName::new("alice").unwrap()),
        )
    });
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    app.update(welcome("lobby", "alice", &["alice", "bob"], vec![]));
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::Topic(chat_protocol::TopicEvent {
            message: "bob set the topic: release on friday \u{1b}[2J".into(),
            topic: "release on friday \u{1b}[2J".into(),
            user: "bob".into(),
            room: room("lobby"),
            ts: THURSDAY_LATE,
        })),
    ));
    app.update(chat_at("bob", 1, THURSDAY_LATE, "evening"));
    let terminal = render(&mut app, 80, 8);
    assert_every_cell_harmless(&terminal);
    let text = screen_text(&terminal);
    assert!(
        text.starts_with(" lobby · release on friday ␛[2J"),
        "{text}"
    );
    assert!(text.contains("11:58 PM"), "{text}");
    insta::assert_snapshot!("time_format_topic_80x8", terminal.backend());
}

#[test]
fn search_results_replace_the_room_until_esc() {
    let mut app = online(&["lobby"]);
    app.update(says("lobby", "bob", 20, "live line"));
    enter(&mut app, "/search deploy");
    app.update(net(
        "lobby",
        NetEvent::Server(ServerEvent::History(chat_protocol::HistoryEvent {
            message: String::new(),
            room: room("lobby"),
            messages: vec![
                crate::app::tests::chat("lobby", "bob", 3, "deploy on friday?"),
                crate::app::tests::chat("lobby", "carol", 9, "the deploy went fine"),
            ],
            more: true,
            before: None,
            after: None,
            q: Some("deploy".into()),
            reference: Some("1".into()),
            ts: 0,
        })),
    ));
    let terminal = render(&mut app, 80, 10);
    insta::assert_snapshot!("search_80x10", terminal.backend());
    app.update(key(KeyCode::Esc));
    let text = screen_text(&render(&mut app, 80, 10));
    assert!(text.contains("live line") && !text.contains("deploy on friday"));
}

#[test]
fn the_offline_bar_keeps_members_and_server_at_100_columns() {
    let mut app = online(&["lobby", "dev"]);
    app.update(says("dev", "bob", 1, "alice: ping"));
    app.update(net(
        "lobby",
        NetEvent::Disconnected {
            reason: "connection lost: the server went away without closing the connection".into(),
            close_code: None,
            retry_in: std::time::Duration::from_millis(2500),
            at_ms: 0,
            attempt: 2,
        },
    ));
    let terminal = render(&mut app, 100, 6);
    let text = screen_text(&terminal);
    let bar = text.lines().nth(4).unwrap();
    assert!(bar.contains("OFFLINE"), "{bar}");
    assert!(bar.contains("[2 members]"), "{bar}");
    assert!(bar.contains("[ws://127.0.0.1:8000]"), "{bar}");
    assert!(
        bar.contains("2:dev(1!)") || bar.contains("[Act: 1!]"),
        "{bar}"
    );
}

/// Issue #13 bug 4: in a narrow pane the pending state (`queued`) took
/// the time column and ran into the name (`queued er+`). Names stay whole.
#[test]
fn pending_labels_never_cut_names() {
    let mut app = App::new(crate::app::AppOptions::new(
        "ws://127.0.0.1:8000",
        Some(chat_protocol::UserName::new("erin").unwrap()),
    ));
    app.start(&[room("lobby")]);
    app.update(net("lobby", NetEvent::Connected { mode: Mode::Events }));
    app.update(welcome("lobby", "erin", &["erin", "bob"], vec![]));
    enter(&mut app, "in flight");
    app.update(net(
        "lobby",
        NetEvent::Disconnected {
            reason: "lost".into(),
            close_code: None,
            retry_in: std::time::Duration::from_secs(1),
            at_ms: 0,
            attempt: 1,
        },
    ));
    enter(&mut app, "typed offline");
    for width in [36, 45, 59] {
        let text = screen_text(&render(&mut app, width, 10));
        for row in text
            .lines()
            .filter(|l| l.contains("in flight") || l.contains("typed offline"))
        {
            assert!(row.contains("erin │"), "width {width}: {row:?}");
            assert!(!row.contains('+'), "width {width}: {row:?}");
        }
    }
}
