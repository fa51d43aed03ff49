//! The real `chat-tui` binary in tmux against a real `chat-server`: type a
//! message, another client gets it, its reply appears on screen; then the
//! server stops and starts again on the same port, and the client comes
//! back by itself, delivers what was typed while it was down, and still
//! works. Round 2 (#13, #12): the bell seen by tmux, the read marker,
//! names that belong to someone (a second chat-tui and a rename refused),
//! PgUp loading older messages from a `--db` server and Ctrl+R / `/search`,
//! emoji sequences and flags with no stray cells in tmux 3.3, the window
//! title's unread count, `--log-dir`, the "more below" bar's row,
//! pipe mode from a shell (800 lines all delivered; an oversize line
//! skipped, the rest delivered, exit 5), a config file alone driving the
//! client (day lines, a highlight word, Alt+A, `/topic`), and the bytes
//! written to the terminal (`script(1)`): the OSC 777 notification and the
//! title saved and given back. Needs tmux (skips loudly without it, fails
//! under CI).

mod common;

use std::time::Duration;

use chat_protocol::{ClientMessage, ErrorCode, ServerEvent, UserName};
use common::{
    BIN, Home, Tmux, any_port, client, recv_chat, recv_event, start_server, start_server_with,
    tmux_available, url,
};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_receives_survives_a_server_restart() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let home = Home::new("e2e");
    let log = home.dir.join("chat-tui.log");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby --name alice --log-file '{}'; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr),
        log.display()
    );
    let tmux = Tmux::start("e2e", 100, 30, &command);
    tmux.wait_for("[online]", WAIT).await;

    // Alice types; bob (the protocol client) receives it.
    let (bob, mut bob_events) = client(addr, "lobby", "bob").await;
    tmux.wait_for("bob joined lobby", WAIT).await;
    tmux.type_text("hello from tmux");
    tmux.keys(&["Enter"]);
    let chat = recv_chat(&mut bob_events, "hello from tmux", WAIT).await;
    assert_eq!(chat.user, "alice");

    // Bob's reply appears on alice's screen.
    bob.say("hi alice, from bob").await.unwrap();
    tmux.wait_for("hi alice, from bob", WAIT).await;

    // The server goes away: the status bar says so at once.
    server.shutdown().await.unwrap();
    tmux.wait_for("OFFLINE", WAIT).await;
    // Typed while offline: queued, shown as such, sent after the reconnect.
    tmux.type_text("typed while the server was down");
    tmux.keys(&["Enter"]);
    tmux.wait_for("queued", WAIT).await;

    // Same port again; alice reconnects by herself.
    let server = start_server(addr).await;
    let (_bob_again, mut events_after) = client(addr, "lobby", "bob").await;
    let screen = tmux.wait_for("reconnected", WAIT).await;
    assert!(
        screen.contains("[online]") || tmux.wait_for("[online]", WAIT).await.contains("online")
    );
    let chat = recv_chat(&mut events_after, "typed while the server was down", WAIT).await;
    assert_eq!(chat.user, "alice");

    // And still delivers.
    tmux.type_text("after the restart");
    tmux.keys(&["Enter"]);
    let chat = recv_chat(&mut events_after, "after the restart", WAIT).await;
    assert_eq!(chat.user, "alice");
    // Shown as alice's message, not as a pending one: the echo came back.
    tmux.wait_until("everything echoed", WAIT, |screen| {
        screen.contains("alice │ after the restart")
            && !screen.contains("sending")
            && !screen.contains("queued")
    })
    .await;

    // /quit restores the terminal and exits 0.
    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("EXITED:0", WAIT).await;
    assert!(
        !screen.contains("[online]"),
        "the alternate screen is gone:\n{screen}"
    );
    server.shutdown().await.unwrap();
}

/// Resizing down to 20x5 and back keeps it alive and drawing; SIGTERM
/// restores the terminal and exits 143.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_tiny_terminal_and_restores_on_sigterm() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let home = Home::new("sigterm");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby --name erin; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr)
    );
    let tmux = Tmux::start("sigterm", 100, 30, &command);
    tmux.wait_for("[online]", WAIT).await;
    let (bob, _events) = client(addr, "lobby", "bob").await;
    bob.say(&"a long line that must wrap in a tiny terminal ".repeat(3))
        .await
        .unwrap();
    tmux.wait_for("a long line", WAIT).await;

    tmux.resize(20, 5);
    tmux.wait_for("[erin]", WAIT).await;
    tmux.resize(100, 30);
    tmux.wait_for("[online]", WAIT).await;

    let children = tmux.pane_children();
    assert_eq!(
        children.len(),
        1,
        "one chat-tui under the shell: {children:?}"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &children[0].to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let screen = tmux.wait_for("EXITED:143", WAIT).await;
    assert!(
        !screen.contains("[online]"),
        "the alternate screen is gone:\n{screen}"
    );
    server.shutdown().await.unwrap();
}

/// Issue #13, in the real terminal: a highlight in another room rings the
/// bell (tmux's `#{window_bell_flag}`), the read marker is drawn after
/// switching back, and a display name another person holds is refused,
/// on joining (a second chat-tui with its own key) and on renaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bell_read_marker_and_names_that_belong_to_someone() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let home = Home::new("round2");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby,dev --name alice; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr)
    );
    let tmux = Tmux::start("round2", 100, 30, &command);
    tmux.wait_for("1:lobby [online]", WAIT).await;
    tmux.keys(&["M-2"]);
    tmux.wait_for("2:dev [online]", WAIT).await;
    tmux.keys(&["M-1"]);
    tmux.wait_for("1:lobby [online]", WAIT).await;

    // A mention in dev while alice reads lobby: the bell.
    assert_eq!(tmux.format("#{window_bell_flag}"), "0", "no bell yet");
    let (bob_dev, _bob_dev_events) = client(addr, "dev", "bob").await;
    bob_dev.say("nothing for anyone").await.unwrap();
    tmux.wait_for("2:dev(1)", WAIT).await;
    assert_eq!(
        tmux.format("#{window_bell_flag}"),
        "0",
        "only highlights ring"
    );
    bob_dev.say("alice: are you there?").await.unwrap();
    tmux.wait_format("#{window_bell_flag}", "1", WAIT).await;
    tmux.wait_for("2:dev(2!)", WAIT).await;

    // The read marker: seen in lobby, away in dev, back in lobby.
    let (bob, mut bob_events) = client(addr, "lobby", "bob").await;
    bob.say("seen before leaving").await.unwrap();
    tmux.wait_for("seen before leaving", WAIT).await;
    tmux.keys(&["M-2"]);
    tmux.wait_for("alice: are you there?", WAIT).await;
    bob.say("said while you were in dev").await.unwrap();
    tmux.wait_for("1:lobby(1)", WAIT).await;
    tmux.keys(&["M-1"]);
    // dev has its own marker: wait for lobby's.
    let screen = tmux
        .wait_until("lobby's read marker", WAIT, |screen| {
            screen.contains("1:lobby [online]") && screen.contains("new since you left")
        })
        .await;
    let row = |needle: &str| {
        screen
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}"))
    };
    assert!(
        row("seen before leaving") < row("new since you left")
            && row("new since you left") < row("said while you were in dev"),
        "the marker sits between what was seen and what was not:\n{screen}"
    );

    // Someone else (another key) asking for the name alice: refused, and
    // told how to get in.
    let other = Home::new("round2-other");
    let impostor = Tmux::start(
        "round2-impostor",
        100,
        30,
        &format!(
            "{} '{BIN}' --server {} --room lobby --name alice; echo EXITED:$?; sleep 30",
            other.env_prefix(),
            url(addr)
        ),
    );
    let screen = impostor.wait_for("409", WAIT).await;
    assert!(
        screen.contains("taken") && screen.contains("/nick"),
        "{screen}"
    );
    impostor.type_text("/nick mallory");
    impostor.keys(&["Enter"]);
    impostor.wait_for("1:lobby [online]", WAIT).await;
    tmux.wait_for("mallory joined lobby", WAIT).await;

    // Renaming onto alice is refused too; bob stays bob everywhere.
    bob.send(&ClientMessage::Nick {
        name: UserName::new("alice").unwrap(),
    })
    .await
    .unwrap();
    let refused = recv_event(
        &mut bob_events,
        "bob's refusal",
        WAIT,
        |event| match event {
            ServerEvent::Error(e) => Some(e),
            _ => None,
        },
    )
    .await;
    assert_eq!(refused.code, ErrorCode::NameTaken, "{refused:?}");
    bob.say("still bob").await.unwrap();
    let screen = tmux.wait_for("bob │ still bob", WAIT).await;
    assert!(!screen.contains("known as alice"), "{screen}");

    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    tmux.wait_for("EXITED:0", WAIT).await;
    server.shutdown().await.unwrap();
}

/// Issue #12's client part, in the real terminal against a server with
/// `--db`: PgUp at the top loads what the welcome did not carry, page by
/// page, until the room's beginning is said; Ctrl+R finds an old message;
/// Esc returns to the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgup_loads_older_messages_and_ctrl_r_searches() {
    if !tmux_available() {
        return;
    }
    let store = Home::new("history-db");
    let config = chat_server::Config {
        history_len: 20,
        store: Some(chat_server::StoreConfig::new(store.dir.join("chat.db"))),
        limits: chat_server::Limits {
            rate_per_sec: 0.0,
            ..chat_server::Limits::default()
        },
        ..chat_server::Config::default()
    };
    let server = start_server_with(any_port(), config).await;
    let addr = server.local_addr();
    let (bob, mut bob_events) = client(addr, "lobby", "bob").await;
    for n in 1..=150 {
        let text = if n == 5 {
            "m005 has the needle".to_owned()
        } else {
            format!("m{n:03}")
        };
        bob.say(&text).await.unwrap();
    }
    recv_chat(&mut bob_events, "m150", WAIT).await;

    let home = Home::new("older");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby --name alice; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr)
    );
    let tmux = Tmux::start("older", 100, 16, &command);
    let screen = tmux.wait_for("m150", WAIT).await;
    assert!(
        !screen.contains("m130"),
        "the welcome carries 20:\n{screen}"
    );

    // Home goes to the top of what is held and asks for the page before
    // it; the view stays on what was being read.
    // (The status bar may say [loading…] meanwhile: compared without it.)
    let pane = |screen: &str| -> String {
        screen
            .lines()
            .filter(|l| !l.starts_with("1:lobby"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    tmux.keys(&["Home"]);
    let top = tmux.wait_for("m131", WAIT).await;
    assert!(!top.contains("m130"), "{top}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pane(&tmux.capture()),
        pane(&top),
        "the reading position stays"
    );
    // Further up: the older messages are there now.
    tmux.keys(&["PageUp"]);
    tmux.wait_for("m130", WAIT).await;
    // Page after page to the beginning, which is said.
    let deadline = std::time::Instant::now() + WAIT * 2;
    loop {
        let screen = tmux.capture();
        if screen.contains("the beginning of the room") && screen.contains("m001") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the beginning; the pane shows:\n{screen}"
        );
        tmux.keys(&["PageUp"]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Ctrl+R: a search over everything stored, Esc back to the room.
    tmux.keys(&["End"]);
    tmux.keys(&["C-r"]);
    tmux.wait_for("(search, Esc cancels)", WAIT).await;
    tmux.type_text("needle");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("1 message", WAIT).await;
    assert!(screen.contains("m005 has the needle"), "{screen}");
    assert!(!screen.contains("m150"), "only the results:\n{screen}");
    tmux.keys(&["Escape"]);
    let screen = tmux.wait_for("m150", WAIT).await;
    assert!(!screen.contains("Esc returns"), "{screen}");
    // /search is the same.
    tmux.type_text("/search m077");
    tmux.keys(&["Enter"]);
    tmux.wait_for("search \"m077\": 1 message", WAIT).await;
    server.shutdown().await.unwrap();
}

/// Issue #13 bugs 2 and 3 run from a shell in tmux, as a user would: a
/// flood of 800 lines is paced and every line delivered (exit 0), and an
/// oversize line is skipped and reported while the lines around it are
/// delivered (exit 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_flood_and_oversize_line_from_a_shell() {
    if !tmux_available() {
        return;
    }
    let config = chat_server::Config {
        limits: chat_server::Limits {
            rate_per_sec: 200.0,
            rate_burst: 100,
            ..chat_server::Limits::default()
        },
        ..chat_server::Config::default()
    };
    let server = start_server_with(any_port(), config).await;
    let addr = server.local_addr();
    let (_bob, mut flood_events) = client(addr, "flood", "bob").await;
    let (_bob_big, mut big_events) = client(addr, "big", "bob").await;
    let home = Home::new("pipe-shell");
    let env = home.env_prefix();
    let server_url = url(addr);
    let command = format!(
        "seq 800 | {env} '{BIN}' --server {server_url} --room flood --name flooder --pipe >/dev/null; \
         echo FLOOD:$?; \
         {{ echo before; head -c 70000 /dev/zero | tr '\\0' x; echo; echo after; }} \
         | {env} '{BIN}' --server {server_url} --room big --name carol --pipe >/dev/null; \
         echo BIG:$?; sleep 30"
    );
    let tmux = Tmux::start("pipe-shell", 120, 30, &command);
    let mut received = Vec::new();
    let wait = async {
        while received.len() < 800 {
            match flood_events.next().await {
                Some(Ok(ServerEvent::Chat(chat))) if chat.user == "flooder" => {
                    received.push(chat.message);
                }
                Some(Ok(_)) => {}
                other => panic!("bob's connection ended: {other:?}"),
            }
        }
    };
    let _ = tokio::time::timeout(WAIT * 2, wait).await;
    let expected: Vec<String> = (1..=800).map(|n| n.to_string()).collect();
    assert_eq!(received, expected, "all 800, in order, once");
    tmux.wait_for("FLOOD:0", WAIT).await;

    let screen = tmux.wait_for("BIG:", WAIT).await;
    assert!(screen.contains("BIG:5"), "{screen}");
    assert!(screen.contains("NOT delivered"), "{screen}");
    assert_eq!(
        recv_chat(&mut big_events, "before", WAIT).await.user,
        "carol"
    );
    assert_eq!(
        recv_chat(&mut big_events, "after", WAIT).await.user,
        "carol"
    );
    server.shutdown().await.unwrap();
}

/// The cell (column) where `needle` starts in `row`, counting wide
/// characters as two cells (as tmux lays them out).
fn cell_of(row: &str, needle: char) -> Option<usize> {
    let byte = row.rfind(needle)?;
    Some(chat_tui::wrap::width(&row[..byte]))
}

/// Issue #13 in tmux 3.3: emoji sequences and flags leave no stray cells
/// (the member list's border stays in its column on their row, and the
/// rows around them are intact); the window title carries the unread
/// count; `--log-dir` keeps a safe plain-text log; the "more below" bar
/// leaves nothing on the row under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emoji_title_logs_and_the_scrolled_bar() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let home = Home::new("emoji");
    let logs = home.dir.join("logs");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby,dev --name alice --log-dir '{}'; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr),
        logs.display()
    );
    let tmux = Tmux::start("emoji", 100, 30, &command);
    tmux.wait_for("1:lobby [online]", WAIT).await;
    let (bob, _bob_events) = client(addr, "lobby", "bob").await;
    bob.say("family 👨\u{200d}👩\u{200d}👧\u{200d}👦 flag 🇷🇺 thumb 👍🏽 end")
        .await
        .unwrap();
    bob.say("red \u{1b}[31mtext\u{1b}[0m and a bell \u{7}")
        .await
        .unwrap();
    let screen = tmux.wait_for("[RU]", WAIT).await;
    let rows: Vec<&str> = screen.lines().collect();
    let family = rows
        .iter()
        .find(|r| r.contains("family"))
        .expect("the family row");
    let welcome = rows
        .iter()
        .find(|r| r.contains("Welcome to lobby"))
        .expect("the welcome row");
    assert_eq!(
        cell_of(family, '│'),
        cell_of(welcome, '│'),
        "the member list's border stays in its column:\n{screen}"
    );
    assert!(family.contains(" end "), "{family:?}");
    assert!(
        rows.iter().any(|r| r.starts_with("1:lobby [online]")),
        "{screen}"
    );
    assert!(screen.contains("␛[31mtext␛[0m"), "{screen}");

    // The title: the unread count of the other rooms.
    let (bob_dev, _dev_events) = client(addr, "dev", "bob").await;
    bob_dev.say("alice: look at the title").await.unwrap();
    tmux.wait_format("#{pane_title}", "(1!) chat-tui: lobby", WAIT)
        .await;

    // The log: one file per room, every line made safe.
    let file = logs
        .join(format!("127.0.0.1_{}", addr.port()))
        .join("lobby.log");
    let deadline = std::time::Instant::now() + WAIT;
    let log = loop {
        let log = std::fs::read_to_string(&file).unwrap_or_default();
        if log.contains("and a bell") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} holds:\n{log}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(log.contains("\tbob\tfamily 👨👩👧👦 flag [RU]"), "{log}");
    assert!(
        log.contains("\tbob\tred ␛[31mtext␛[0m and a bell ␇"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log}");

    // Scrolled up with news below: the bar sits on the pane's last row
    // and the status bar under it is intact, also after Ctrl+L.
    for n in 1..=40 {
        bob.say(&format!("filler {n}")).await.unwrap();
    }
    tmux.wait_for("filler 40", WAIT).await;
    tmux.keys(&["PageUp"]);
    tmux.wait_for("more below - End to jump", WAIT).await;
    bob.say("news while scrolled").await.unwrap();
    for redraw in [false, true] {
        if redraw {
            tmux.keys(&["C-l"]);
        }
        let screen = tmux
            .wait_for("1 new message below - End to jump", WAIT)
            .await;
        let rows: Vec<&str> = screen.lines().collect();
        let bar = rows
            .iter()
            .position(|r| r.contains("new message below"))
            .expect("the bar");
        assert_eq!(screen.matches("End to jump").count(), 1, "{screen}");
        assert!(
            rows[bar + 1].starts_with("1:lobby [online]"),
            "the row under the bar is the status bar:\n{screen}"
        );
    }
    // Keys right after Ctrl+L are drawn at once (ratatui's clear asked the
    // terminal for the cursor and froze the loop; the old view stayed).
    tmux.keys(&["C-l", "End"]);
    tmux.wait_until("the newest lines after Ctrl+L, End", WAIT, |s| {
        s.contains("news while scrolled") && !s.contains("End to jump")
    })
    .await;
    // Ctrl+L repaints what something else wrote over the screen.
    let tty = tmux.format("#{pane_tty}");
    std::fs::write(&tty, "\x1b[5;20HSTRAY-OUTPUT-XYZ").expect("write to the pane's tty");
    tmux.wait_for("STRAY-OUTPUT-XYZ", WAIT).await;
    tmux.keys(&["C-l"]);
    tmux.wait_until("the stray text gone", WAIT, |s| {
        !s.contains("STRAY-OUTPUT-XYZ") && s.contains("news while scrolled")
    })
    .await;
    server.shutdown().await.unwrap();
}

/// Issue #12/#13: on a server without paging (the tutorial's plain
/// protocol, as a Django Channels app speaks it; `--plain` makes chat-tui
/// speak only that) PgUp at the top and Ctrl+R say they cannot, instead
/// of failing or waiting; `/reconnect` drops the connection and makes a
/// new one at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_paging_older_and_search_degrade_and_reconnect_works() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let (bob, _bob_events) = client(addr, "lobby", "bob").await;
    let home = Home::new("plain");
    let command = format!(
        "{} '{BIN}' --server {} --room lobby --name alice --plain; echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr)
    );
    let tmux = Tmux::start("plain", 100, 12, &command);
    tmux.wait_for("connected in plain mode", WAIT).await;
    for n in 1..=20 {
        bob.say(&format!("plain line {n}")).await.unwrap();
    }
    tmux.wait_for("plain line 20", WAIT).await;
    tmux.keys(&["Home"]);
    tmux.keys(&["PageUp"]);
    tmux.wait_for("does not keep older messages", WAIT).await;
    tmux.keys(&["C-r"]);
    tmux.type_text("line");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("cannot search", WAIT).await;
    assert!(screen.contains("Esc returns"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_until("the search closed", WAIT, |s| !s.contains("Esc returns"))
        .await;

    tmux.type_text("/reconnect");
    tmux.keys(&["Enter"]);
    tmux.wait_for("reconnected (plain mode)", WAIT).await;
    tmux.type_text("after reconnecting");
    tmux.keys(&["Enter"]);
    tmux.wait_until("the echo", WAIT, |s| {
        s.contains("after reconnecting") && !s.contains("sending")
    })
    .await;
    server.shutdown().await.unwrap();
}

/// Issue #13's features that the other tmux tests do not reach, driven by a
/// config file alone (no flags): the server, the name, three rooms, a
/// highlight word and a time format come from `config.toml`; a day-change
/// line sits between yesterday's and today's messages (stored with
/// `--db`, one aged in the file); a highlight word rings the bell; Alt+A
/// jumps to the room with a highlight first, then to the one with
/// activity; `/topic` sets the title line, and other members are told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_day_lines_alt_a_and_topic() {
    if !tmux_available() {
        return;
    }
    let store = Home::new("config-db");
    let db = store.dir.join("chat.db");
    let config = || chat_server::Config {
        store: Some(chat_server::StoreConfig::new(db.clone())),
        ..chat_server::Config::default()
    };
    let server = start_server_with(any_port(), config()).await;
    let (bob, mut bob_events) = client(server.local_addr(), "lobby", "bob").await;
    bob.say("said yesterday").await.unwrap();
    bob.say("said today").await.unwrap();
    recv_chat(&mut bob_events, "said today", WAIT).await;
    drop((bob, bob_events));
    server.shutdown().await.unwrap();
    {
        let conn = rusqlite::Connection::open(&db).expect("open the store");
        let aged = conn
            .execute(
                "UPDATE messages SET ts = ts - 86400000 WHERE text = 'said yesterday'",
                [],
            )
            .expect("age a message");
        assert_eq!(aged, 1);
    }
    let today = local_day_title();
    let server = start_server_with(any_port(), config()).await;
    let addr = server.local_addr();

    let home = Home::new("config");
    home.write_config(&format!(
        "server = \"{}\"\nname = \"carol\"\nrooms = [\"lobby\", \"dev\", \"ops\"]\n\
         highlights = [\"deploy\"]\ntime_format = \"%Hh%M\"\n",
        url(addr)
    ));
    let command = format!("{} '{BIN}'; echo EXITED:$?; sleep 30", home.env_prefix());
    let tmux = Tmux::start("config", 100, 24, &command);
    tmux.wait_for("1:lobby [online]", WAIT).await;
    let screen = tmux.wait_for("said today", WAIT).await;
    assert!(
        screen.contains("2.dev") && screen.contains("3.ops") && screen.contains("carol"),
        "the rooms of the config file:\n{screen}"
    );
    let row = |screen: &str, needle: &str| {
        screen
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}"))
    };
    // The day line: above today's message, below yesterday's.
    let day = today
        .iter()
        .find(|title| screen.contains(title.as_str()))
        .unwrap_or_else(|| panic!("no day line {today:?}:\n{screen}"));
    assert!(
        row(&screen, "said yesterday") < row(&screen, day)
            && row(&screen, day) < row(&screen, "said today"),
        "{screen}"
    );
    // The time format: "08h05" on each message's line.
    let line = screen
        .lines()
        .find(|l| l.contains("said today"))
        .unwrap_or_default();
    let shape: Vec<char> = line
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert!(
        shape.windows(5).any(|w| w == ['9', '9', 'h', '9', '9']),
        "the config's time format (%Hh%M) on {line:?}"
    );

    // Activity in dev, a highlight word (not the name) in ops.
    assert_eq!(tmux.format("#{window_bell_flag}"), "0", "no bell yet");
    let (dave, _dave_events) = client(addr, "dev", "dave").await;
    dave.say("plain words").await.unwrap();
    tmux.wait_for("2:dev(1)", WAIT).await;
    let (erin, mut erin_events) = client(addr, "ops", "erin").await;
    erin.say("deploy at noon").await.unwrap();
    tmux.wait_for("3:ops(1!)", WAIT).await;
    tmux.wait_format("#{window_bell_flag}", "1", WAIT).await;

    // Alt+A: the highlight first, then the other activity, then nowhere new.
    tmux.keys(&["M-a"]);
    let screen = tmux.wait_for("3:ops [online]", WAIT).await;
    assert!(screen.contains("deploy at noon"), "{screen}");
    tmux.keys(&["M-a"]);
    let screen = tmux.wait_for("2:dev [online]", WAIT).await;
    assert!(screen.contains("plain words"), "{screen}");

    // /topic in ops: the title line shows it and members are told.
    tmux.keys(&["M-3"]);
    tmux.wait_for("3:ops [online]", WAIT).await;
    tmux.type_text("/topic ship it friday");
    tmux.keys(&["Enter"]);
    let told = recv_event(
        &mut erin_events,
        "erin's topic event",
        WAIT,
        |event| match event {
            ServerEvent::Topic(topic) => Some(topic),
            _ => None,
        },
    )
    .await;
    assert_eq!(
        (told.topic.as_str(), told.user.as_str()),
        ("ship it friday", "carol")
    );
    let screen = tmux.wait_for("ship it friday", WAIT).await;
    assert!(
        row(&screen, "ship it friday") < row(&screen, "deploy at noon"),
        "the topic is on the title line, above the messages:\n{screen}"
    );

    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    tmux.wait_for("EXITED:0", WAIT).await;
    drop((dave, erin));
    server.shutdown().await.unwrap();
}

/// Today's day-line title as chat-tui writes it (`Saturday 5 December
/// 2026`), from `date` in the local time zone, and tomorrow's in case the
/// test runs across midnight.
fn local_day_title() -> Vec<String> {
    ["now", "now + 1 day"]
        .iter()
        .map(|when| {
            let out = std::process::Command::new("date")
                .args(["-d", when, "+%A %-d %B %Y"])
                .env("LC_ALL", "C")
                .output()
                .expect("run date");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect()
}

/// What the binary writes to its terminal, recorded byte for byte by
/// `script(1)` inside tmux: the window title is saved on the terminal's
/// title stack at start (`CSI 22;0t`), set with the unread count, a
/// highlight sends a desktop notification (OSC 777, `--notify osc777`)
/// with the bell, and the title is given back on the way out (`CSI
/// 23;0t`, after the last title the app set). tmux itself shows neither
/// notifications nor a title stack, so the bytes are what can be checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_highlight_notifies_the_desktop_and_the_title_is_given_back() {
    if !tmux_available() {
        return;
    }
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let home = Home::new("notify");
    let typescript = home.dir.join("typescript");
    let command = format!(
        "script -qfc \"{} '{BIN}' --server {} --room lobby --name alice --notify osc777\" '{}'; \
         echo EXITED:$?; sleep 30",
        home.env_prefix(),
        url(addr),
        typescript.display()
    );
    let tmux = Tmux::start("notify", 100, 24, &command);
    tmux.wait_for("1:lobby [online]", WAIT).await;
    let (bob, _bob_events) = client(addr, "lobby", "bob").await;
    bob.say("alice: the deploy is done").await.unwrap();
    tmux.wait_format("#{window_bell_flag}", "1", WAIT).await;
    let notification = b"\x1b]777;notify;bob in lobby;alice: the deploy is done\x1b\\";
    let deadline = std::time::Instant::now() + WAIT;
    while find(
        &std::fs::read(&typescript).unwrap_or_default(),
        notification,
    )
    .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no OSC 777 notification in what chat-tui wrote: {:?}",
            String::from_utf8_lossy(&std::fs::read(&typescript).unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    tmux.wait_for("EXITED:0", WAIT).await;

    let written = std::fs::read(&typescript).expect("script's record");
    let shown = String::from_utf8_lossy(&written);
    let push = find(&written, b"\x1b[22;0t").unwrap_or_else(|| panic!("no title push: {shown:?}"));
    let title = find(&written, b"\x1b]0;chat-tui: lobby\x07")
        .unwrap_or_else(|| panic!("no title set: {shown:?}"));
    let notified = find(&written, notification).expect("seen above");
    let bell = written[..notified].iter().rposition(|&b| b == 0x07);
    let last_title = rfind(&written, b"\x1b]0;").expect("a title was set");
    let pop = rfind(&written, b"\x1b[23;0t").unwrap_or_else(|| panic!("no title pop: {shown:?}"));
    assert!(
        push < title && title < notified && last_title < pop,
        "saved first, set, notified, given back last: push {push}, title {title}, \
         notification {notified}, last title {last_title}, pop {pop}"
    );
    assert!(bell.is_some(), "the bell rings with the notification");
    drop(bob);
    server.shutdown().await.unwrap();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}
