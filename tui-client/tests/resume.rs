//! Reconnect and resume through the real room task (`net.rs`) and the real
//! `App::update`, against a real server behind a loopback proxy that the
//! test can cut: what was said while the link was down is recovered from
//! the welcome (`since`), nothing shows twice, and what was typed while
//! offline is delivered exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_protocol::{ConnectOptions, RoomName, UserName};
use chat_tui::app::{App, AppOptions, ConnState, LineKind};
use chat_tui::msg::{Effect, Msg};
use chat_tui::net::{self, RoomCommand, RoomHandle};
use common::{any_port, client, recv_chat, start_server, url};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);

/// A TCP proxy to the server that can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind(any_port()).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the link is down
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().await.push(link);
                }
            }
        });
        Self {
            addr,
            up,
            links,
            accept,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The app and one room task, pumped by hand as the runtime would.
struct Driver {
    app: App,
    rx: mpsc::Receiver<Msg>,
    room: RoomHandle,
}

impl Driver {
    fn apply(&self, effects: Vec<Effect>) {
        for effect in effects {
            if let Effect::Send {
                local_id, message, ..
            } = effect
            {
                let _ = self
                    .room
                    .commands
                    .send(RoomCommand::Send { local_id, message });
            }
        }
    }

    fn type_line(&mut self, text: &str) {
        for c in text.chars().chain(['\r']) {
            let code = if c == '\r' {
                KeyCode::Enter
            } else {
                KeyCode::Char(c)
            };
            let effects = self
                .app
                .update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
            self.apply(effects);
        }
    }

    async fn until(&mut self, what: &str, ready: impl Fn(&App) -> bool) {
        let pump = async {
            while !ready(&self.app) {
                let msg = self.rx.recv().await.expect("the room task is alive");
                let effects = self.app.update(msg);
                self.apply(effects);
            }
        };
        let timed_out = tokio::time::timeout(WAIT, pump).await.is_err();
        assert!(
            !timed_out,
            "not {what} within {WAIT:?}: {:#?}",
            self.app.rooms[0].lines
        );
    }
}

fn texts(app: &App) -> Vec<&str> {
    app.rooms[0].lines.iter().map(|l| l.text.as_str()).collect()
}

fn chat_count(app: &App, text: &str) -> usize {
    app.rooms[0]
        .lines
        .iter()
        .filter(|l| matches!(l.kind, LineKind::Chat { .. }) && l.text == text)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_with_since_and_delivers_what_was_typed_offline_once() {
    let server = start_server(any_port()).await;
    let proxy = Proxy::start(server.local_addr()).await;
    let lobby = RoomName::new("lobby").expect("room");

    let (tx, rx) = mpsc::channel(1024);
    let alice = UserName::new("alice").expect("name");
    let options = ConnectOptions::new()
        .name(alice.clone())
        .timeout(Duration::from_secs(5));
    let room = net::spawn(
        url(proxy.addr).parse().expect("url"),
        lobby.clone(),
        options,
        tx,
    );
    let mut app = App::new(AppOptions::new(url(proxy.addr), Some(alice)));
    app.start(std::slice::from_ref(&lobby));
    let mut driver = Driver { app, rx, room };
    driver
        .until("welcomed", |app| app.rooms[0].me.is_some())
        .await;

    let (bob, mut bob_events) = client(server.local_addr(), "lobby", "bob").await;
    bob.say("before").await.expect("say");
    driver
        .until("shown 'before'", |app| chat_count(app, "before") == 1)
        .await;

    proxy.cut().await;
    driver
        .until("offline", |app| {
            matches!(app.rooms[0].conn, ConnState::Offline { .. })
        })
        .await;
    driver.type_line("typed while cut off");
    bob.say("missed one").await.expect("say");
    bob.say("missed two").await.expect("say");
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();

    driver
        .until("recovered and delivered", |app| {
            chat_count(app, "missed two") == 1 && app.rooms[0].pending.is_empty()
        })
        .await;
    let app = &driver.app;
    assert_eq!(chat_count(app, "before"), 1, "{:?}", texts(app));
    assert_eq!(chat_count(app, "missed one"), 1, "{:?}", texts(app));
    assert_eq!(
        chat_count(app, "typed while cut off"),
        1,
        "{:?}",
        texts(app)
    );
    assert!(
        texts(app)
            .iter()
            .any(|t| t.starts_with("reconnected; 2 messages")),
        "{:?}",
        texts(app)
    );
    let chat = recv_chat(&mut bob_events, "typed while cut off", WAIT).await;
    assert_eq!(chat.user, "alice");
    let again = tokio::time::timeout(
        Duration::from_millis(500),
        recv_chat(&mut bob_events, "typed while cut off", WAIT),
    )
    .await;
    assert!(again.is_err(), "delivered twice: {again:?}");

    let _ = driver.room.commands.send(RoomCommand::Leave);
    let _ = tokio::time::timeout(WAIT, driver.room.task).await;
    server.shutdown().await.expect("shutdown");
}
