//! Chromium over WebDriver for the browser tests: finds Debian's
//! `chromium` and `chromedriver`, runs one chromedriver for the tests that
//! are running, and opens headless Chromium sessions that are always closed,
//! even when a test panics.
//!
//! Cleanup matters here: killing chromedriver does not stop the Chromium it
//! started, so every session is deleted through chromedriver (which quits
//! Chromium) before chromedriver is stopped, and a session that a panic
//! left open is deleted from `Drop` with a blocking request.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a page condition may take to come true.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Chromium flags: headless, and nothing that reaches for the network (on a
/// closed network Chromium's background connections are refused and slow it
/// down), no first-run UI, no crash reporter.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--font-render-hinting=none",
];

/// Where the browser binaries are.
#[derive(Debug, Clone)]
pub struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Tools {
    /// Finds Chromium and chromedriver (`$CHROMIUM` and `$CHROMEDRIVER`
    /// override the Debian paths). Where they are missing, says so loudly
    /// and returns `None` so that the test can skip, except under CI (the
    /// `CI` variable set), where a missing browser fails the test.
    pub fn find(test: &str) -> Option<Self> {
        let chromium = locate("CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = locate("CHROMEDRIVER", &["chromedriver"]);
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Some(Self {
                chromium,
                chromedriver,
            }),
            (chromium, chromedriver) => {
                let missing: Vec<&str> = [
                    chromium.is_none().then_some("chromium"),
                    chromedriver.is_none().then_some("chromedriver"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let message = format!(
                    "{test}: {} not found (Debian: apt-get install chromium chromium-driver; \
                     or set CHROMIUM and CHROMEDRIVER)",
                    missing.join(" and ")
                );
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{message}; CI must run the browser tests"
                );
                // Straight to stderr: the test harness captures eprintln!,
                // and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED browser test {message} ***\n"
                );
                None
            }
        }
    }
}

fn locate(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::iter::once(PathBuf::from("/usr/bin"))
            .chain(std::env::split_paths(&dirs))
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// A running chromedriver, shared by the tests running at the same time and
/// stopped when the last of them lets go of it.
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    port: u16,
}

static SHARED_DRIVER: Mutex<Weak<Chromedriver>> = Mutex::new(Weak::new());

impl Chromedriver {
    /// The running chromedriver, or a new one on a free loopback port.
    pub fn shared(tools: &Tools) -> Arc<Self> {
        let mut shared = SHARED_DRIVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(driver) = shared.upgrade() {
            return driver;
        }
        let driver = Arc::new(Self::start(tools));
        *shared = Arc::downgrade(&driver);
        driver
    }

    /// Starts chromedriver on a port it picks itself (`--port=0`, read back
    /// from its log), so no other process can take the port in between.
    /// Without `--allowed-ips` it listens on loopback only.
    fn start(tools: &Tools) -> Self {
        let log = tempfile::tempfile().expect("a chromedriver log file");
        let mut child = Command::new(&tools.chromedriver)
            .arg("--port=0")
            .arg("--log-level=SEVERE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log.try_clone().expect("log file handle"))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", tools.chromedriver.display()));
        let deadline = Instant::now() + WAIT;
        loop {
            let text = read_log(&log);
            if let Some(port) = text
                .lines()
                .find_map(|line| {
                    line.strip_prefix("ChromeDriver was started successfully on port ")
                })
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                .filter(|&port| http_status_ok(port))
            {
                return Self { child, port };
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cannot start chromedriver ({exited:?}): {text}");
            }
            std::thread::sleep(POLL);
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(mut log: &std::fs::File) -> String {
    use std::io::Seek;
    let mut text = String::new();
    let _ = log.rewind();
    let _ = log.read_to_string(&mut text);
    text
}

/// Whether chromedriver answers `GET /status`.
fn http_status_ok(port: u16) -> bool {
    blocking_request(port, "GET", "/status").is_some_and(|head| head.contains(" 200 "))
}

/// A small blocking HTTP/1.1 request to chromedriver; the status line, or
/// `None` if it could not be made. Used where no async runtime can be
/// relied on: at start-up and in `Drop`.
fn blocking_request(port: u16, method: &str, path: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream.set_write_timeout(Some(WAIT)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    // chromedriver may keep the connection open: read the status line only.
    let mut response = Vec::new();
    let mut chunk = [0u8; 512];
    while !response.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    text.lines().next().map(str::to_owned)
}

/// How a browser window is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewport {
    /// A laptop window, 1280x800.
    Desktop,
    /// A phone: 390x844 CSS pixels at 2x, with touch and the mobile viewport.
    Phone,
}

/// Options for a new browser.
#[derive(Debug, Clone, Copy)]
pub struct BrowserOptions {
    pub viewport: Viewport,
    /// Ask pages for their dark colour scheme (`prefers-color-scheme: dark`).
    pub dark: bool,
    /// Chromium's `--host-resolver-rules` (e.g. `MAP rebound.example
    /// 127.0.0.1`: a name resolving to the server, as DNS rebinding makes).
    pub host_resolver_rules: Option<&'static str>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            viewport: Viewport::Desktop,
            dark: false,
            host_resolver_rules: None,
        }
    }
}

/// One headless Chromium with its own fresh profile, pointed at one server.
///
/// Close it with [`Browser::close`]; if a test panics first, `Drop` deletes
/// the session (which quits Chromium) with a blocking request.
#[derive(Debug)]
pub struct Browser {
    client: Option<Client>,
    session_id: String,
    base: String,
    driver: Arc<Chromedriver>,
    /// The profile directory, removed after Chromium has quit.
    profile: Option<tempfile::TempDir>,
}

impl Browser {
    /// Starts a browser whose relative URLs resolve against `base`
    /// (`http://127.0.0.1:PORT`).
    pub async fn open(tools: &Tools, base: &str, options: BrowserOptions) -> Self {
        let driver = Chromedriver::shared(tools);
        let profile = tempfile::Builder::new()
            .prefix("chat-browser-test-")
            .tempdir()
            .expect("a temporary profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&f| f.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push("--lang=en-GB".to_owned());
        if let Some(rules) = options.host_resolver_rules {
            args.push(format!("--host-resolver-rules={rules}"));
        }
        let mut chrome_options = json!({
            "binary": tools.chromium,
            "args": args,
        });
        match options.viewport {
            Viewport::Desktop => {
                args_push(&mut chrome_options, "--window-size=1280,800");
            }
            Viewport::Phone => {
                chrome_options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "mobile": true, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
                });
            }
        }
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".to_owned(), chrome_options);
        // Report a JavaScript alert() as an error on the next command
        // instead of silently dismissing it (the XSS test relies on this).
        capabilities.insert("unhandledPromptBehavior".to_owned(), json!("ignore"));
        // Keep the console, so tests can check that pages log no errors
        // (a Content-Security-Policy violation, a script exception, a 404).
        capabilities.insert("goog:loggingPrefs".to_owned(), json!({ "browser": "ALL" }));
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&driver.url()),
        )
        .await
        .expect("Chromium started within a minute")
        .expect("a WebDriver session");
        let session_id = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let browser = Self {
            client: Some(client),
            session_id,
            base: base.trim_end_matches('/').to_owned(),
            driver,
            profile: Some(profile),
        };
        if options.dark {
            browser
                .cdp(
                    "Emulation.setEmulatedMedia",
                    json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
                )
                .await;
        }
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser open")
    }

    /// Points later relative URLs at another server (after a restart on a
    /// new port, or through a proxy).
    pub fn set_base(&mut self, base: &str) {
        base.trim_end_matches('/').clone_into(&mut self.base);
    }

    /// Loads `path` (relative to the server) and waits for the load event.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client()
            .goto(&url)
            .await
            .unwrap_or_else(|err| panic!("load {url}: {err}"));
    }

    /// The current URL's path.
    pub async fn path(&self) -> String {
        self.client()
            .current_url()
            .await
            .expect("current url")
            .path()
            .to_owned()
    }

    /// Runs `script` (a function body: use `return`, and `arguments[i]`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Runs `script`, or `None` when it fails (e.g. while the page is
    /// navigating away).
    pub async fn try_js(&self, script: &str, args: Vec<Value>) -> Option<Value> {
        self.client().execute(script, args).await.ok()
    }

    /// Runs `script` and reads its result as a string.
    pub async fn js_string(&self, script: &str) -> String {
        match self.js(script, vec![]).await {
            Value::String(text) => text,
            other => panic!("expected a string from {script}, got {other}"),
        }
    }

    /// Waits until `script` returns a truthy value; returns that value.
    /// On timeout, fails with `what` and a look at the page.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.js(script, vec![]).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.describe().await;
                panic!("timed out waiting for {what}\n{page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What a failing test should know about the page.
    pub async fn describe(&self) -> String {
        let script = r##"
            const log = document.querySelector("#chat-log");
            const status = document.querySelector("#connection-status");
            return "url: " + location.href
              + "\nactive element: #" + (document.activeElement && document.activeElement.id)
              + (status ? "\nstatus: " + status.className + " / " + status.textContent.trim() : "")
              + (log ? "\nlog text:\n" + log.innerText : "\nbody:\n" + document.body.innerText);
        "##;
        match self.client().execute(script, vec![]).await {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(err) => format!("(cannot read the page: {err})"),
        }
    }

    /// The element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("find {css}: {err}"))
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    /// Types into the element matching `css` (WebDriver focuses it first).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// Presses keys on whatever has focus, as Selenium's
    /// `ActionChains(driver).send_keys(...)` does in the tutorial's tests:
    /// nothing is clicked or focused first.
    pub async fn press_keys(&self, text: &str) {
        let mut keys = KeyActions::new("keyboard".to_owned());
        for c in text.chars() {
            keys = keys
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client()
            .perform_actions(keys)
            .await
            .unwrap_or_else(|err| panic!("press keys {text:?}: {err}"));
    }

    /// `document.activeElement.id`: the `id` of the focused element.
    pub async fn active_id(&self) -> String {
        self.js_string("return document.activeElement ? document.activeElement.id : ''")
            .await
    }

    /// `#chat-log`'s `value` property, read as the tutorial's Selenium tests
    /// read it (WebDriver's Get Element Property).
    pub async fn chat_log_value(&self) -> String {
        self.find("#chat-log")
            .await
            .prop("value")
            .await
            .expect("read #chat-log.value")
            .unwrap_or_default()
    }

    /// Waits until `#chat-log`'s value contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.chat_log_value().await.contains(text) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.describe().await;
                panic!("timed out waiting for {text:?} in #chat-log\n{page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of an open JavaScript dialog (alert), if one is open.
    pub async fn open_alert(&self) -> Option<String> {
        self.client().get_alert_text().await.ok()
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client()
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|err| panic!("CDP {cmd}: {err}"))
    }

    /// The console messages logged since the last call, as
    /// `(level, message)` pairs.
    pub async fn console(&self) -> Vec<(String, String)> {
        let entries = self
            .client()
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|err| panic!("read the browser console: {err}"));
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| {
                        (
                            entry["level"].as_str().unwrap_or_default().to_owned(),
                            entry["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails if the page logged an error or a warning to the console.
    pub async fn assert_clean_console(&self) {
        let problems: Vec<_> = self
            .console()
            .await
            .into_iter()
            .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
            .collect();
        assert!(
            problems.is_empty(),
            "the console has problems: {problems:#?}"
        );
    }

    /// Quits Chromium and removes its profile.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(WAIT, client.close()).await;
        }
        // Chromium may still be writing to its profile as it exits.
        if let Some(profile) = self.profile.take() {
            let path = profile.path().to_owned();
            if profile.close().is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

fn args_push(chrome_options: &mut Value, arg: &str) {
    if let Some(args) = chrome_options["args"].as_array_mut() {
        args.push(json!(arg));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            // A test failed with this browser open: quit it now, while
            // chromedriver is still there to do it.
            let path = format!("/session/{}", self.session_id);
            let _ = blocking_request(self.driver.port, "DELETE", &path);
        }
        if let Some(profile) = self.profile.take() {
            let _ = profile.close();
        }
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the browser console.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// chromedriver's `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}
