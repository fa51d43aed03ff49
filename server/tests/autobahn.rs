//! WebSocket conformance: the Autobahn test cases, run by `kosoku` (a
//! Python 3 runner of Autobahn's own case files), against `/ws/echo`, which
//! echoes every message over the same WebSocket codec and close handling as
//! a chat session (`session::echo`, `session::ending`, the `ws` module).
//!
//! * `autobahn_full_suite`: every case, with a 16 MiB message limit so that
//!   the 9.x performance cases (up to 16 MiB messages) fit. Every case must
//!   pass (OK, NON-STRICT or INFORMATIONAL, as Autobahn defines them) except
//!   the [`EXCLUSIONS`], which must fail exactly as documented there.
//! * `messages_over_the_limit_are_refused_with_1009`: the 9.1 and 9.2 cases
//!   at the default 64 KiB limit; what fits is echoed, what does not is
//!   refused with close code 1009.
//!
//! kosoku is found through `$KOSOKU` (a path), then `.ci/venv/bin/kosoku`
//! (what `.ci/run` installs), then `PATH`. Without it each test says so
//! loudly and skips; with `CI` set it fails instead. Install it with
//! `python3 -m venv .ci/venv && .ci/venv/bin/pip install kosoku==0.1.0`.
//!
//! `AUTOBAHN_CASES=6.4.*,7.1.6` runs only those cases (ids or globs, comma
//! separated; the exclusions still apply). `AUTOBAHN_REPORTS=DIR` keeps the
//! reports (`DIR/index.html`); otherwise they are kept only when a test fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_server::{Config, Limits};
use serde_json::Value;

/// The kosoku release the exclusions were checked against; `.ci/run`
/// installs the same one.
const KOSOKU_VERSION: &str = "0.1.0";

/// A bound on one kosoku run, whatever hangs. The full suite takes about 15
/// seconds; some 9.x cases wait up to 1000 s for an echo that never comes.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The message limit of the full-suite server: the largest 9.x message is
/// 16 MiB (9.1.6, 9.2.6), and the limit is inclusive.
const FULL_SUITE_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A documented limit: cases that may not pass, and the verdict they must
/// have instead (so that an exclusion that no longer holds is noticed).
struct Exclusion {
    /// Case id prefix, e.g. `"12."` for the whole group 12.
    prefix: &'static str,
    /// The `behavior` verdict the cases must have.
    behavior: &'static str,
    /// The `behaviorClose` verdict the cases must have.
    behavior_close: &'static str,
    reason: &'static str,
}

const EXCLUSIONS: &[Exclusion] = &[
    Exclusion {
        prefix: "12.",
        behavior: "UNIMPLEMENTED",
        behavior_close: "OK",
        reason: "permessage-deflate (RFC 7692) is not supported: the server declines \
                 the extension offer (no Sec-WebSocket-Extensions in the 101), so the \
                 compression cases cannot run; the connection still closes cleanly",
    },
    Exclusion {
        prefix: "13.",
        behavior: "UNIMPLEMENTED",
        behavior_close: "OK",
        reason: "permessage-deflate (RFC 7692) is not supported (as for 12.x, with \
                 other deflate parameters)",
    },
];

/// Every case group of the full suite (Autobahn has no 8 or 11).
const GROUPS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_full_suite() {
    let Some(kosoku) = Kosoku::find() else {
        return;
    };
    let config = Config {
        max_message_size: FULL_SUITE_MAX_MESSAGE,
        ..echo_config()
    };
    let selection: Vec<String> = std::env::var("AUTOBAHN_CASES")
        .map(|cases| cases.split(',').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    let run = kosoku.run(config, &selection).await;

    let mut problems = Vec::new();
    for (id, case) in &run.cases {
        let verdict = (case.behavior.as_str(), case.behavior_close.as_str());
        match EXCLUSIONS.iter().find(|e| id.starts_with(e.prefix)) {
            Some(exclusion) if verdict != (exclusion.behavior, exclusion.behavior_close) => {
                problems.push(format!(
                    "{id}: excluded ({}), so expected {}/{} but got {}/{}: \
                     update the exclusion",
                    exclusion.reason,
                    exclusion.behavior,
                    exclusion.behavior_close,
                    verdict.0,
                    verdict.1
                ));
            }
            None if !case.passed() => problems.push(run.explain(id, case)),
            _ => {}
        }
    }
    if selection.is_empty() {
        for group in GROUPS {
            if !run
                .cases
                .keys()
                .any(|id| id.split('.').next() == Some(*group))
            {
                problems.push(format!("no case of group {group} ran"));
            }
        }
    }
    run.finish(&problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_limit_are_refused_with_1009() {
    let Some(kosoku) = Kosoku::find() else {
        return;
    };
    let config = echo_config();
    assert_eq!(config.max_message_size, 64 * 1024, "the default limit");
    let selection = ["9.1.*".to_owned(), "9.2.*".to_owned()];
    let run = kosoku.run(config, &selection).await;

    // 9.1.1 and 9.2.1 send 64 KiB; the others 256 KiB to 16 MiB.
    let fits = ["9.1.1", "9.2.1"];
    let mut problems = Vec::new();
    for (id, case) in &run.cases {
        if fits.contains(&id.as_str()) {
            if !case.passed() {
                problems.push(run.explain(id, case));
            }
        } else if case.remote_close_code != Some(1009) {
            problems.push(format!(
                "{id}: over the limit, so expected close 1009 from the server, got {:?} ({})",
                case.remote_close_code,
                run.explain(id, case)
            ));
        }
    }
    if run.cases.len() != 12 {
        problems.push(format!("expected 12 cases, {} ran", run.cases.len()));
    }
    run.finish(&problems);
}

/// The echo endpoint with the rate limit off (the suite sends quickly).
fn echo_config() -> Config {
    Config {
        echo_endpoint: true,
        limits: Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// The kosoku executable.
struct Kosoku {
    path: PathBuf,
}

impl Kosoku {
    /// Finds kosoku, or says loudly that it is missing and returns `None`
    /// (a failure under `CI`).
    fn find() -> Option<Self> {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin/kosoku");
        let path = if let Some(path) = std::env::var_os("KOSOKU") {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "KOSOKU={} is not a file", path.display());
            Some(path)
        } else if venv.is_file() {
            Some(venv)
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("kosoku"))
                    .find(|path| path.is_file())
            })
        };
        let Some(path) = path else {
            let install = format!(
                "python3 -m venv .ci/venv && .ci/venv/bin/pip install kosoku=={KOSOKU_VERSION} \
                 (or set KOSOKU to its path)"
            );
            assert!(
                std::env::var_os("CI").is_none(),
                "kosoku is required under CI but was not found; install it: {install}"
            );
            eprintln!("\n*** SKIPPED: kosoku is not installed; to run this test: {install} ***\n");
            return None;
        };
        let kosoku = Self { path };
        kosoku.check_version();
        Some(kosoku)
    }

    /// The exclusions were checked against [`KOSOKU_VERSION`]; another
    /// release may run other cases or judge them differently.
    fn check_version(&self) {
        match self.version() {
            Some(version) if version == KOSOKU_VERSION => {}
            found => {
                let found = found.unwrap_or_else(|| "of unknown version".to_owned());
                let message = format!(
                    "{}: kosoku {found}, not {KOSOKU_VERSION}: re-check the exclusions in \
                     server/tests/autobahn.rs, then update the version there and in .ci/run",
                    self.path.display()
                );
                assert!(std::env::var_os("CI").is_none(), "{message}");
                eprintln!("\n*** WARNING: {message} ***\n");
            }
        }
    }

    /// The installed version, asked of the interpreter on the script's
    /// `#!` line (a pip-installed console script).
    fn version(&self) -> Option<String> {
        let script = std::fs::read(&self.path).ok()?;
        let first = script.split(|&b| b == b'\n').next()?;
        let interpreter = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
        let mut words = interpreter.split_whitespace();
        let output = Command::new(words.next()?)
            .args(words)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('kosoku'))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Starts a server with `config`, runs the `selection` of cases (all when
    /// empty) against its `/ws/echo`, and reads the results.
    async fn run(&self, config: Config, selection: &[String]) -> Run {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = chat_server::spawn(listener, config)
            .await
            .expect("start the server");
        let url = format!("ws://{}/ws/echo", server.local_addr());

        let reports = match std::env::var_os("AUTOBAHN_REPORTS") {
            Some(dir) => Reports::Kept(PathBuf::from(dir)),
            None => Reports::Temporary(tempfile::tempdir().expect("a temporary directory")),
        };
        let dir = reports.path().to_owned();
        std::fs::create_dir_all(&dir).expect("create the report directory");
        let mut command = Command::new(&self.path);
        command.arg(&url).arg("-o").arg(&dir);
        for case in selection {
            command.arg("-i").arg(case);
        }
        command
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("kosoku.stdout")).expect("create kosoku.stdout"))
            .stderr(File::create(dir.join("kosoku.stderr")).expect("create kosoku.stderr"));

        let started = Instant::now();
        let mut child = KillOnDrop(command.spawn().expect("start kosoku"));
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait for kosoku") {
                break status;
            }
            assert!(
                started.elapsed() < RUN_LIMIT,
                "kosoku did not finish within {RUN_LIMIT:?} (killed); its output is in {}",
                reports.keep().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let elapsed = started.elapsed();
        drop(child);
        server.shutdown().await.expect("stop the server");

        // kosoku exits 1 when any case did not pass (excluded ones included)
        // and writes the reports either way; anything else is a crash.
        let index = std::fs::read_to_string(dir.join("index.json"));
        let Ok(index) = index
            .map_err(|err| err.to_string())
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|err| err.to_string()))
        else {
            let stderr = std::fs::read_to_string(dir.join("kosoku.stderr")).unwrap_or_default();
            panic!(
                "kosoku ({status}) wrote no readable index.json in {}:\n{stderr}",
                reports.keep().display()
            );
        };
        assert!(
            status.code().is_some_and(|code| code <= 1),
            "kosoku failed ({status}); see {}",
            reports.keep().display()
        );
        Run {
            cases: parse_index(&index),
            elapsed,
            reports,
        }
    }
}

/// Kills kosoku if the test ends (or panics) while it runs.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Where the reports are written.
enum Reports {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Reports {
    fn path(&self) -> &Path {
        match self {
            Self::Kept(path) => path,
            Self::Temporary(dir) => dir.path(),
        }
    }

    /// Keeps the reports (for a failure to point at) and returns where.
    fn keep(self) -> PathBuf {
        match self {
            Self::Kept(path) => path,
            Self::Temporary(dir) => dir.keep(),
        }
    }
}

/// One case's verdicts, from `index.json`.
#[derive(Debug)]
struct Case {
    behavior: String,
    behavior_close: String,
    remote_close_code: Option<u64>,
    reportfile: String,
}

impl Case {
    /// Autobahn's pass: OK, or a verdict it calls acceptable.
    fn passed(&self) -> bool {
        matches!(
            self.behavior.as_str(),
            "OK" | "NON-STRICT" | "INFORMATIONAL"
        ) && matches!(self.behavior_close.as_str(), "OK" | "INFORMATIONAL")
    }
}

/// `{agent: {case id: {behavior, behaviorClose, remoteCloseCode, reportfile, ..}}}`,
/// with one agent (the server), in case order.
fn parse_index(index: &Value) -> BTreeMap<CaseId, Case> {
    let agents = index.as_object().expect("index.json: an object of agents");
    assert_eq!(agents.len(), 1, "index.json: one agent, the server");
    let cases = agents
        .values()
        .next()
        .and_then(Value::as_object)
        .expect("index.json: an object of cases");
    let text = |case: &Value, key: &str| {
        case[key]
            .as_str()
            .unwrap_or_else(|| panic!("index.json: {key} is not a string in {case}"))
            .to_owned()
    };
    cases
        .iter()
        .map(|(id, case)| {
            let parsed = Case {
                behavior: text(case, "behavior"),
                behavior_close: text(case, "behaviorClose"),
                remote_close_code: case["remoteCloseCode"].as_u64(),
                reportfile: text(case, "reportfile"),
            };
            (CaseId::new(id), parsed)
        })
        .collect()
}

/// A case id that sorts numerically (1.2.10 after 1.2.9).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CaseId {
    parts: Vec<u32>,
    id: String,
}

impl CaseId {
    fn new(id: &str) -> Self {
        Self {
            parts: id
                .split('.')
                .map(|p| p.parse().unwrap_or(u32::MAX))
                .collect(),
            id: id.to_owned(),
        }
    }

    fn starts_with(&self, prefix: &str) -> bool {
        self.id.starts_with(prefix)
    }

    fn split(&self, separator: char) -> std::str::Split<'_, char> {
        self.id.split(separator)
    }

    fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// The results of one kosoku run.
struct Run {
    cases: BTreeMap<CaseId, Case>,
    elapsed: Duration,
    reports: Reports,
}

impl Run {
    /// A failed case, with kosoku's explanation from its report.
    fn explain(&self, id: &CaseId, case: &Case) -> String {
        let report = std::fs::read_to_string(self.reports.path().join(&case.reportfile))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .unwrap_or_default();
        format!(
            "{id}: {}/{}, close code {:?}: {} {} {}",
            case.behavior,
            case.behavior_close,
            case.remote_close_code,
            report["result"].as_str().unwrap_or(""),
            report["resultClose"].as_str().unwrap_or(""),
            report["wasNotCleanReason"].as_str().unwrap_or(""),
        )
    }

    /// Prints the summary, then fails with `problems` if there are any.
    fn finish(self, problems: &[String]) {
        let mut groups: BTreeMap<u32, BTreeMap<(&str, &str), usize>> = BTreeMap::new();
        for (id, case) in &self.cases {
            let verdict = (case.behavior.as_str(), case.behavior_close.as_str());
            *groups
                .entry(id.parts[0])
                .or_default()
                .entry(verdict)
                .or_default() += 1;
        }
        let mut summary = format!(
            "autobahn: {} cases in {:.1} s\n",
            self.cases.len(),
            self.elapsed.as_secs_f64()
        );
        for (group, verdicts) in &groups {
            let _ = write!(summary, "  group {group}:");
            for ((behavior, close), count) in verdicts {
                let _ = write!(summary, " {count} {behavior}/{close}");
            }
            summary.push('\n');
        }
        eprint!("{summary}");
        if problems.is_empty() {
            if let Reports::Kept(dir) = &self.reports {
                eprintln!("reports: {}", dir.join("index.html").display());
            }
            return;
        }
        let reports = self.reports.keep();
        panic!(
            "{} Autobahn problem(s):\n{}\nreports: {}",
            problems.len(),
            problems.join("\n"),
            reports.join("index.html").display()
        );
    }
}
