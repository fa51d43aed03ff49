//! Graceful shutdown: every socket is closed with 1001 and the server stops
//! within 2 seconds, from the library and from the real binary on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat_protocol::close;
use common::*;

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_promptly() {
    let server = TestServer::start().await;
    let mut plains = Vec::new();
    for _ in 0..20 {
        plains.push(server.plain("bye").await);
    }
    let (mut typed, _) = server.joined("bye", "typed").await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    for plain in &mut plains {
        assert_eq!(close_code(plain).await.0, close::GOING_AWAY);
    }
    assert_eq!(client_close_code(&mut typed).await, close::GOING_AWAY);
    within(stopping).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_binary_stops_on_sigterm_within_two_seconds() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chat-server");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("ws://{addr}/ws/chat/lobby/");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut socket = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => {
                let _ = child.kill();
                panic!("server did not come up: {err}");
            }
        }
    };
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(close_code(&mut socket).await.0, close::GOING_AWAY);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--max-message-size",
        "--history",
        "--queue",
        "--allowed-host",
        "--history-memory",
        "--queue-bytes",
        "CHAT_ADDR",
        "CHAT_QUEUE",
        "CHAT_ALLOWED_HOSTS",
        "RUST_LOG",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_bad_flag_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--addr", "nowhere"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--addr") && stderr.contains("nowhere"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--addr", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot listen") && stderr.contains("--addr"),
        "{stderr}"
    );
}
