//! Helpers for the integration tests: a real `chat-server` on a loopback
//! port, a protocol client, bounded waits, and a private tmux server.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use chat_protocol::{
    ChatEvent, Client, ClientEvents, ClientSender, ConnectOptions, RoomName, ServerEvent,
    ServerUrl, UserName,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chat-tui");

/// Starts a server on `addr` (port 0 for a fresh one), retrying the bind
/// for a moment when the port is still held by a server just stopped.
pub async fn start_server(addr: SocketAddr) -> chat_server::ServerHandle {
    start_server_with(addr, chat_server::Config::default()).await
}

/// [`start_server`] with `config`.
pub async fn start_server_with(
    addr: SocketAddr,
    config: chat_server::Config,
) -> chat_server::ServerHandle {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                return chat_server::spawn(listener, config)
                    .await
                    .expect("spawn the server");
            }
            Err(err) if Instant::now() < deadline => {
                eprintln!("bind {addr}: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot bind {addr}: {err}"),
        }
    }
}

/// A fresh directory for one run of the binary: its config home, its state
/// home (where its key goes) and its logs, so that no test reads or writes
/// the developer's own files. Removed on drop.
pub struct Home {
    pub dir: std::path::PathBuf,
}

impl Home {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "chat-tui-test-{name}-{}-{}",
            std::process::id(),
            fastrand_ish()
        ));
        std::fs::create_dir_all(dir.join("config").join("chat-tui")).expect("make the test home");
        std::fs::create_dir_all(dir.join("state")).expect("make the test home");
        Self { dir }
    }

    /// The environment the binary runs with.
    pub fn vars(&self) -> Vec<(&'static str, std::path::PathBuf)> {
        vec![
            ("XDG_CONFIG_HOME", self.dir.join("config")),
            ("XDG_STATE_HOME", self.dir.join("state")),
            ("HOME", self.dir.clone()),
        ]
    }

    /// The same, as `env -u CHAT_... K=V ...` for a shell command line.
    pub fn env_prefix(&self) -> String {
        let unset: Vec<String> = CHAT_VARS.iter().map(|v| format!("-u {v}")).collect();
        let vars: Vec<String> = self
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.display()))
            .collect();
        format!("env {} {}", unset.join(" "), vars.join(" "))
    }

    /// Writes the config file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(
            self.dir.join("config").join("chat-tui").join("config.toml"),
            text,
        )
        .expect("write the config file");
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fastrand_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Every `CHAT_*` variable that would change what the binary does.
pub const CHAT_VARS: &[&str] = &[
    "CHAT_ROOM",
    "CHAT_SERVER",
    "CHAT_NAME",
    "CHAT_PIPE",
    "CHAT_NO_PIPE",
    "CHAT_ONCE",
    "CHAT_TIMEOUT",
    "CHAT_PLAIN",
    "CHAT_NO_MOUSE",
    "CHAT_LOG_FILE",
    "CHAT_TOKEN",
    "CHAT_CA_FILE",
    "CHAT_CONFIG",
    "CHAT_HIGHLIGHT",
    "CHAT_NO_BELL",
    "CHAT_NOTIFY",
    "CHAT_TIME_FORMAT",
    "CHAT_LOG_DIR",
    "CHAT_FORMAT",
    "CHAT_KEY_FILE",
];

/// The loopback address for a fresh server.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The `ws://` address of a server.
pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

/// Connects a protocol client as `name` to `room` (with a key of its own).
pub async fn client(addr: SocketAddr, room: &str, name: &str) -> (ClientSender, ClientEvents) {
    let server: ServerUrl = url(addr).parse().expect("a server url");
    let options = ConnectOptions::new()
        .name(UserName::new(name).expect("a valid name"))
        .key(Some(format!("test-key-of-{name}-0123456789")));
    let client = Client::connect(
        &server,
        &RoomName::new(room).expect("a valid room"),
        &options,
    )
    .await
    .expect("protocol client connects");
    client.split()
}

/// Waits (bounded) for a chat message whose text is `text`, returning it;
/// also looks into a welcome's history.
pub async fn recv_chat(events: &mut ClientEvents, text: &str, within: Duration) -> ChatEvent {
    let wait = async {
        loop {
            match events.next().await {
                Some(Ok(ServerEvent::Chat(chat))) if chat.message == text => return chat,
                Some(Ok(ServerEvent::Welcome(w))) => {
                    if let Some(chat) = w.history.into_iter().find(|c| c.message == text) {
                        return chat;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the connection ended while waiting for {text:?}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("no chat message {text:?} within {within:?}"))
}

/// Waits (bounded) for the first event `pick` takes, skipping the others.
pub async fn recv_event<T>(
    events: &mut ClientEvents,
    what: &str,
    within: Duration,
    mut pick: impl FnMut(ServerEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                other => panic!("the connection ended while waiting for {what}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
}

/// Whether tmux can be used; when not, says so loudly, and fails under CI.
pub fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let msg = "tmux is not installed: the end-to-end terminal test cannot run \
                   (apt-get install tmux)";
        assert!(std::env::var_os("CI").is_none(), "{msg}, and CI is set");
        eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    }
    found
}

/// A private tmux server (its own socket) with one session. Dropping it
/// kills that server, and so only what this test started.
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Starts `command` in a detached session of `width` x `height`.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let unique = format!("chat-tui-{name}-{}", std::process::id());
        let tmux = Self {
            socket: unique.clone(),
            session: unique,
        };
        let status = tmux
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", &tmux.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Presses keys by tmux name (`Enter`, `C-c`, `PageUp`).
    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        let status = self
            .cmd()
            .args(["resize-window", "-t", &self.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .status()
            .expect("tmux resize-window");
        assert!(status.success());
    }

    /// The process ids of the children of the pane's shell.
    pub fn pane_children(&self) -> Vec<u32> {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", &self.session, "#{pane_pid}"])
            .output()
            .expect("tmux display-message");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// A format variable of the session's window, e.g.
    /// `#{window_bell_flag}`.
    pub fn format(&self, variable: &str) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", &self.session, variable])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls a format variable until it is `value`; fails with it shown.
    pub async fn wait_format(&self, variable: &str, value: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.format(variable);
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{variable} is {now:?}, not {value:?}, after {within:?}; the pane shows:\n{}",
                self.capture()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible pane as text.
    pub fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the pane until it shows `needle`; fails with the pane shown.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.wait_until(&format!("{needle:?}"), within, |screen| {
            screen.contains(needle)
        })
        .await
    }

    /// Polls the pane until `ready` holds; fails with the pane shown.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the pane did not show {what} within {within:?}; it shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Tmux {
    /// Every process below the pane's shell, children first found first.
    fn pane_descendants(&self) -> Vec<u32> {
        let mut found = self.pane_children();
        let mut next = 0;
        while let Some(&pid) = found.get(next) {
            next += 1;
            found.extend(
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        found
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // What runs in the pane (chat-tui, or script(1) around it) can
        // outlive the hang-up of a killed tmux when a test fails half-way:
        // end it by PID first, so no test leaves a client running.
        let pids: Vec<String> = self
            .pane_descendants()
            .iter()
            .map(ToString::to_string)
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.cmd().arg("kill-server").status();
    }
}
