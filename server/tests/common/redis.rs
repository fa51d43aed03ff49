//! A real `redis-server` on a free loopback port, started (and killed, and
//! restarted on the same port) by the test itself, with persistence off.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether tests that need a tool may skip without it: not under CI.
pub fn may_skip(tool: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is required under CI but was not found; install it (apt-get install {tool})"
    );
    eprintln!("\n*** SKIPPED: {tool} is not installed; install it to run this test ***\n");
    true
}

/// The pub/sub channel of `room` under `prefix` (the layout in
/// `layer/redis/keys.rs`).
pub fn channel(prefix: &str, room: &str) -> String {
    format!("{prefix}:{{{prefix}:{room}}}:ch")
}

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one, or returns `None` (after saying so loudly) when
    /// `redis-server` is not installed and `CI` is not set.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            may_skip("redis-server");
            return None;
        }
        let port = free_port();
        let mut server = Self { child: None, port };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one inline command and returns the first line of the reply.
    pub fn command(&self, command: &str) -> Option<String> {
        Self::command_on(self.port, command)
    }

    /// Sends one inline command to the Redis on `port` and returns the
    /// first line of the reply.
    pub fn command_on(port: u16, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = [0u8; 512];
        let n = stream.read(&mut reply).ok()?;
        let text = String::from_utf8_lossy(&reply[..n]).into_owned();
        Some(text.lines().next().unwrap_or_default().to_owned())
    }

    /// `PUBSUB NUMSUB channel`: how many subscriptions the channel has.
    pub fn subscribers(&self, channel: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set a read timeout");
        stream
            .write_all(format!("PUBSUB NUMSUB {channel}\r\n").as_bytes())
            .expect("write to redis");
        let mut reply = [0u8; 512];
        let n = stream.read(&mut reply).expect("read from redis");
        // *2\r\n$len\r\nchannel\r\n:N\r\n
        let text = String::from_utf8_lossy(&reply[..n]);
        text.lines()
            .find_map(|l| l.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One connection to Redis kept open, for commands a test must be able to
/// send while Redis refuses new connections (`CONFIG SET maxclients`).
pub struct Admin {
    stream: TcpStream,
}

impl Admin {
    /// Connects to the Redis on `port`.
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set a read timeout");
        Self { stream }
    }

    /// Sends one inline command and returns its reply: a status, error or
    /// integer line as sent (`+OK`, `:1`), a bulk string's value.
    pub fn command(&mut self, command: &str) -> String {
        self.stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("write to redis");
        let line = self.line();
        match line.strip_prefix('$').map(str::parse::<usize>) {
            Some(Ok(len)) => {
                let mut value = vec![0u8; len + 2];
                self.stream
                    .read_exact(&mut value)
                    .expect("read a bulk reply from redis");
                String::from_utf8_lossy(&value[..len]).into_owned()
            }
            _ => line,
        }
    }

    /// The id of the connection `CLIENT LIST` shows with `field=value`.
    pub fn client_with(&mut self, field: &str, value: &str) -> Option<String> {
        let wanted = format!("{field}={value}");
        self.command("CLIENT LIST").lines().find_map(|client| {
            let mut fields = client.split(' ');
            let id = fields.next()?.strip_prefix("id=")?.to_owned();
            fields.any(|f| f == wanted).then_some(id)
        })
    }

    fn line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            self.stream
                .read_exact(&mut byte)
                .expect("read a reply from redis");
            line.push(byte[0]);
        }
        String::from_utf8_lossy(&line).trim_end().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr").port()
}
