//! The soak test's short version (about 60 s), as CI runs it: the real
//! `chat-server` binary with the defaults a user gets (rate limit on), but
//! `--write-timeout 5` so that slow clients are dropped within the minute,
//! then `chat_bench::soak::run` against it.
//!
//! It asserts no loss, duplicate or reordering among well-behaved clients,
//! RSS flat once warm, at least one expected end for slow clients and for
//! every kind of abuse, no unexpected disconnect, and a server that is
//! still alive and answering `/healthz` afterwards.

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use chat_bench::soak::{self, Abuse, SoakConfig, SoakSettings};

/// How long the soak runs.
const RUN: Duration = Duration::from_secs(60);

/// Longest a build of chat-server may take when the binary is missing.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// A chat-server process, killed (by its PID) when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `binary` on a free loopback port and waits until `/healthz`
    /// answers (a few tries, in case another process takes the port first).
    fn start(binary: &Path) -> Self {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("soak-chat-server-{}.log", std::process::id()));
        for _ in 0..3 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port");
            let stderr = std::fs::File::create(&log).expect("server log file");
            let child = Command::new(binary)
                .args(["--addr", &addr.to_string(), "--write-timeout", "5"])
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = Self {
                child,
                addr,
                log: log.clone(),
            };
            if server.wait_healthy(Duration::from_secs(20)) {
                return server;
            }
            eprintln!(
                "chat-server did not come up on {addr}; its log: {}",
                log.display()
            );
        }
        panic!("chat-server did not come up on a free port in three tries");
    }

    fn wait_healthy(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if healthz(self.addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn healthz(addr: SocketAddr) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let target = common::server(addr).target;
    let answer = runtime.block_on(soak::metrics::get(
        &target,
        "/healthz",
        Duration::from_secs(2),
    ));
    matches!(answer, Ok((200, _)))
}

/// The chat-server binary of this test's profile: next to the test
/// executable (`target/<profile>/deps/soak-…` → `target/<profile>/chat-server`),
/// built with `$CARGO build -p chat-server` when it is missing or older
/// than the server's sources.
fn chat_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let binary = profile_dir.join(format!("chat-server{}", std::env::consts::EXE_SUFFIX));
    let sources_newer =
        newest_source().is_some_and(|source| modified(&binary).is_none_or(|built| source > built));
    if binary.exists() && !sources_newer {
        return binary;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    build_chat_server(if profile == "debug" { "dev" } else { profile }).unwrap_or_else(|| {
        panic!(
            "cannot find or build chat-server (looked for {})",
            binary.display()
        )
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time under the server's and the protocol's
/// `src/` and their manifests.
fn newest_source() -> Option<SystemTime> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let mut newest = None;
    let mut stack = vec![
        root.join("server/src"),
        root.join("server/assets"),
        root.join("server/Cargo.toml"),
        root.join("protocol/src"),
        root.join("protocol/Cargo.toml"),
    ];
    while let Some(path) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&path) {
            stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        } else if let Some(time) = modified(&path) {
            newest = newest.max(Some(time));
        }
    }
    newest
}

/// Builds chat-server with `$CARGO` in `profile`, within [`BUILD_LIMIT`];
/// returns the executable cargo reports.
fn build_chat_server(profile: &str) -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building chat-server ({profile} profile) for the soak test");
    let mut child = Command::new(cargo)
        .args([
            "build",
            "-p",
            "chat-server",
            "--bin",
            "chat-server",
            "--profile",
            profile,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    // Read cargo's messages on a thread, so that a full pipe cannot stall it.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + BUILD_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("building chat-server took more than {BUILD_LIMIT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let messages = reader.join().ok()?;
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "chat-server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

fn config(addr: SocketAddr, pid: u32) -> SoakConfig {
    let settings = SoakSettings {
        seconds: Some(RUN.into()),
        rooms: 10,
        members: 4,
        churn: 0.25,
        churn_every: Duration::from_secs(5).into(),
        rate_min: 1.0,
        rate_max: 5.0,
        size: 100,
        busy_rooms: 2,
        busy_size: 2048,
        slow: 3,
        slow_max_stall: Duration::from_secs(40).into(),
        abusers: 7,
        abuse_timeout: Duration::from_secs(45).into(),
        threads: 2,
        no_metrics: false,
        rss_every: Some(Duration::from_secs(5).into()),
        rss_tolerance: 10.0,
        rss_slack_mib: 2.0,
        ..SoakSettings::default()
    };
    let mut config = common::config(addr, settings, "ci");
    config.server.pid = Some(pid);
    config
}

#[test]
fn a_minute_of_churn_slow_and_abusive_clients_loses_nothing_and_leaks_nothing() {
    let binary = chat_server_binary();
    let mut server = ServerProcess::start(&binary);
    eprintln!(
        "soak: {} on {} (log {})",
        binary.display(),
        server.addr,
        server.log.display()
    );
    let report = soak::run(&config(server.addr, server.child.id())).expect("the soak runs");
    eprintln!("{}", report.to_table());

    let loss = &report.well_behaved.loss;
    assert!(
        report.well_behaved.sent > 1000 && loss.expected > 3000,
        "too little traffic to mean anything: {} sent, {} deliveries owed",
        report.well_behaved.sent,
        loss.expected
    );
    assert_eq!(
        (loss.lost, loss.duplicated, loss.out_of_order),
        (0, 0, 0),
        "well-behaved clients lost, duplicated or reordered messages: {:?}",
        loss.examples
    );
    assert!(loss.is_clean(), "{loss:?}");
    let rss = &report.server.as_ref().expect("RSS was sampled").rss;
    assert_eq!(rss.flat, Some(true), "server RSS grew once warm: {rss:?}");
    assert!(
        report.slow_dropped() > 0,
        "no slow client was dropped: {:?}",
        report.disconnects
    );
    for abuse in Abuse::ALL {
        assert!(
            report.abuse_answered(abuse.label()) > 0,
            "no {} client got the expected answer: {:?}",
            abuse.label(),
            report.disconnects
        );
    }
    let view = report.server_view.as_ref().expect("/metrics was read");
    for reason in [
        "slow_consumer",
        "rate_limit",
        "binary",
        "too_big",
        "invalid_payload",
        "invalid_utf8",
    ] {
        assert!(
            view.disconnects.get(reason).is_some_and(|&n| n > 0),
            "the server counted no '{reason}' disconnect: {view:?}"
        );
    }
    assert!(report.passed(), "failures: {:#?}", report.failures);
    assert!(server.is_running(), "chat-server exited");
    assert!(
        healthz(server.addr),
        "chat-server no longer answers /healthz"
    );
    let _ = std::fs::remove_file(&server.log);
}
