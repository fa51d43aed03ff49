//! The real `chat-tui` binary in tmux against a real `chat-server`: type a
//! message, another client gets it, its reply appears on screen; then the
//! server stops and starts again on the same port, and the client comes
//! back by itself, delivers what was typed while it was down, and still
//! works. Needs tmux (skips loudly without it, fails under CI).

mod common;

use std::time::Duration;

use common::{BIN, Home, Tmux, any_port, client, recv_chat, start_server, tmux_available, url};

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
