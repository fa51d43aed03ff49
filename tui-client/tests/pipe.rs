//! The scripting modes of the real binary against a real server: `--pipe`
//! (stdin lines in, JSON lines out), `--once`, and the documented exit codes.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::{BIN, any_port, client, recv_chat, start_server, url};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(15);

async fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("CHAT_ROOM")
        .env_remove("CHAT_SERVER")
        .env_remove("CHAT_NAME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chat-tui");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("chat-tui exits in time")
        .expect("chat-tui runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_mode_sends_lines_and_prints_events_as_json() {
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let (_bob, mut bob_events) = client(addr, "lobby", "bob").await;
    // No --pipe: stdin and stdout are not terminals, so pipe mode is chosen.
    let output = run(
        &["--server", &url(addr), "--room", "lobby", "--name", "carol"],
        "first line\nsecond \x1b[31mline\n",
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    recv_chat(&mut bob_events, "first line", WAIT).await;
    recv_chat(&mut bob_events, "second \x1b[31mline", WAIT).await;

    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(events[0]["type"], "welcome", "{stdout}");
    let chats: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "chat" && e["user"] == "carol")
        .map(|e| e["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(chats, ["first line", "second \x1b[31mline"], "{stdout}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_zero_when_echoed() {
    let server = start_server(any_port()).await;
    let addr = server.local_addr();
    let (_bob, mut bob_events) = client(addr, "lobby", "bob").await;
    let output = run(
        &[
            "--server",
            &url(addr),
            "--room",
            "lobby",
            "--name",
            "dave",
            "--once",
            "deploy finished",
        ],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let chat = recv_chat(&mut bob_events, "deploy finished", WAIT).await;
    assert_eq!(chat.user, "dave");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_gives_a_clear_message_and_exit_2() {
    // Bind and drop: a loopback port with nothing listening.
    let addr = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    for args in [
        vec!["--server", &url(addr), "--room", "lobby", "--once", "hi"],
        vec!["--server", &url(addr), "--room", "lobby", "--pipe"],
    ] {
        let output = run(&args, "hello\n").await;
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot connect"), "{err}");
        assert!(err.contains("is the server running"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_1_with_the_rule() {
    let output = run(&["--room", "no/slashes", "--pipe"], "").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("ASCII letters"),
        "{}",
        stderr(&output)
    );

    let output = run(&["--pipe"], "").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--room"), "{}", stderr(&output));

    let output = run(&["--frobnicate"], "").await;
    assert_eq!(output.status.code(), Some(1));

    let output = run(&["--help"], "").await;
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("Exit codes") && help.contains("CHAT_SERVER"),
        "{help}"
    );
}
