//! Command-line flags and environment variables of `chat-server`, turned
//! into the library's [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chat_server::{Access, Config, Limits, RedisConfig, StoreConfig, TlsFiles};
use clap::Parser;

/// A WebSocket chat room server, wire-compatible with the Django Channels
/// chat tutorial.
///
/// Serves the room picker at /chat/, a chat page at /chat/<room>/, the
/// WebSocket endpoint /ws/chat/<room>/, the active rooms at /api/rooms, a
/// room's stored messages at /api/rooms/<room>/messages and a health check
/// at /healthz. Rooms live in memory (with --db, every message is also
/// kept in SQLite), or, with --redis, in a Redis shared by several
/// instances behind a load balancer.
///
/// Every flag can also be set through the environment variable named in
/// its help. Log verbosity comes from RUST_LOG (default: info), e.g.
/// RUST_LOG=chat_server=debug.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version, about, long_about)]
pub struct Cli {
    /// Address and port to listen on (IPv4 or [IPv6]).
    #[arg(
        long,
        env = "CHAT_ADDR",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR:PORT"
    )]
    pub addr: SocketAddr,

    /// Largest message a client may send, in bytes: the whole JSON text
    /// frame. Larger frames are refused with close code 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(64..=16 * 1024 * 1024))]
    pub max_message_size: u32,

    /// Recent messages each room keeps and sends to newcomers in the
    /// welcome (0: no history).
    #[arg(long, env = "CHAT_HISTORY", default_value_t = 100, value_name = "MESSAGES",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub history: u32,

    /// Outbound queue bound per connection: how many messages a client may
    /// fall behind before it is disconnected as a slow consumer (close 1008).
    #[arg(long, env = "CHAT_QUEUE", default_value_t = 1024, value_name = "MESSAGES",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue: u32,

    /// Outbound queue bound per connection in bytes: how far behind a
    /// client may fall in message bytes before it is disconnected as a slow
    /// consumer (close 1008). Also what one room's queue holds at most.
    /// Sizes take a unit: 4MiB, 512KiB, or plain bytes.
    #[arg(long, env = "CHAT_QUEUE_BYTES", default_value = "4MiB", value_name = "SIZE",
          value_parser = parse_size)]
    pub queue_bytes: usize,

    /// Seconds a write to a client may stay blocked (the client not
    /// reading at all) before it is disconnected as a slow consumer.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout: u64,

    /// Share rooms with other chat-server instances through this Redis
    /// (redis://[:PASSWORD@]HOST:PORT/DB). Without it, rooms live in this
    /// process's memory.
    #[arg(long, env = "CHAT_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,

    /// Share rooms through a Redis Cluster (Redis 7 or later), reached
    /// through these seed nodes (redis://HOST:PORT, comma-separated; any
    /// few masters or replicas will do). Each room's keys live on one
    /// shard and its messages use sharded pub/sub; failovers and
    /// resharding are followed without a restart.
    #[arg(
        long,
        env = "CHAT_REDIS_CLUSTER",
        value_delimiter = ',',
        value_name = "URL",
        conflicts_with = "redis"
    )]
    pub redis_cluster: Vec<String>,

    /// With --redis or --redis-cluster: seconds a room's ids and history
    /// are kept after its last message (an idle room's keys expire then).
    #[arg(long, env = "CHAT_REDIS_ROOM_TTL", default_value_t = 24 * 3600, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(60..=365 * 24 * 3600))]
    pub redis_room_ttl: u64,

    /// With --redis or --redis-cluster: the most bytes of messages one
    /// room's history keeps in Redis (besides --history messages); the
    /// oldest go first. 0: no byte bound.
    #[arg(
        long,
        env = "CHAT_REDIS_HISTORY_BYTES",
        default_value_t = chat_server::DEFAULT_HISTORY_BYTES,
        value_name = "BYTES"
    )]
    pub redis_history_bytes: usize,

    /// With --redis or --redis-cluster: milliseconds any one Redis command
    /// may take, and all of a join's Redis steps together. A publish Redis
    /// has not run within it is refused to its sender (error / close 1013),
    /// never delivered late; the health probe (every second) waits half of
    /// it, so /healthz turns 503 within about 1 s + half of it of a hung Redis.
    #[arg(long, env = "CHAT_REDIS_TIMEOUT_MS",
          default_value_t = chat_server::DEFAULT_REDIS_TIMEOUT_MS, value_name = "MILLISECONDS",
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub redis_timeout_ms: u64,

    /// Prefix of every Redis key and channel, so that several deployments
    /// can share one Redis.
    #[arg(
        long,
        env = "CHAT_REDIS_PREFIX",
        default_value = "chat",
        value_name = "PREFIX"
    )]
    pub redis_prefix: String,

    /// With --redis: seconds a crashed instance's members stay listed
    /// before they expire (live instances refresh theirs every third of it).
    #[arg(long, env = "CHAT_PRESENCE_TTL", default_value_t = 15, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub presence_ttl: u64,

    /// Messages per second a connection may send, sustained; more gets an
    /// error event, and a client that keeps on flooding is closed with 1008.
    /// 0 turns the limit off (as benchmarks need).
    #[arg(
        long,
        env = "CHAT_RATE_LIMIT",
        default_value_t = 50.0,
        value_name = "PER_SECOND"
    )]
    pub rate_limit: f64,

    /// How many messages a connection may send at once above the rate.
    #[arg(long, env = "CHAT_RATE_BURST", default_value_t = 500, value_name = "MESSAGES",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,

    /// Open WebSocket connections in total; more are refused with HTTP 503.
    /// Default: what the open-file limit allows (one file per connection).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", value_name = "CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open WebSocket connections from one IP address; more are refused
    /// with HTTP 429. 0: no cap (many users share one address behind NAT).
    #[arg(
        long,
        env = "CHAT_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "CONNECTIONS"
    )]
    pub max_connections_per_ip: usize,

    /// New WebSocket connections per second from one IP address; more are
    /// refused with HTTP 429. 0: no limit.
    #[arg(
        long,
        env = "CHAT_NEW_CONNECTIONS_PER_IP",
        default_value_t = 0.0,
        value_name = "PER_SECOND"
    )]
    pub new_connections_per_ip: f64,

    /// Rooms with members on this instance; a connection that would open
    /// one more is refused with HTTP 503. 0: no cap.
    #[arg(
        long,
        env = "CHAT_MAX_ROOMS",
        default_value_t = 100_000,
        value_name = "ROOMS"
    )]
    pub max_rooms: usize,

    /// Members of one room on this instance; more are refused with HTTP
    /// 503. 0: no cap.
    #[arg(
        long,
        env = "CHAT_MAX_MEMBERS_PER_ROOM",
        default_value_t = 0,
        value_name = "MEMBERS"
    )]
    pub max_members_per_room: usize,

    /// Keepalive: a connection silent for this many seconds is pinged, and
    /// dropped if it is still silent after as many more (half-open
    /// connections do not pile up).
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval: u64,

    /// Seconds a client may take to send its request headers (and finish
    /// TLS); slower clients are dropped (slowloris).
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT", default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout: u64,

    /// Accept browser WebSocket connections from pages of this origin too
    /// (e.g. https://app.example.com; repeatable, or comma-separated in the
    /// environment; * accepts any). By default only pages of this server
    /// may connect, and clients sending no Origin (terminals, scripts).
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// Answer requests for this Host name (repeatable, or comma-separated
    /// in the environment), as Django's ALLOWED_HOSTS: chat.example.com
    /// (any port), chat.example.com:8443, .example.com (and subdomains),
    /// or "*" for any (which allows DNS rebinding). Other names get HTTP
    /// 400 on the pages, the API, /metrics and the socket (not /healthz). Default:
    /// bound to loopback, localhost, 127.0.0.1 and [::1] (any port);
    /// bound elsewhere, IP addresses and localhost (DNS names must be
    /// listed; the start-up log says so).
    #[arg(
        long = "allowed-host",
        env = "CHAT_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,

    /// Do not check Origin at all (behind a proxy that does).
    #[arg(long, env = "CHAT_NO_ORIGIN_CHECK")]
    pub no_origin_check: bool,

    /// Require a bearer token on the socket, the pages and the API, from
    /// this file (one token per line; # starts a comment). A single token
    /// can also be given in the CHAT_TOKEN environment variable. Clients
    /// send it as "Authorization: Bearer TOKEN" or ?token=TOKEN; others get
    /// HTTP 401. Tokens are never logged.
    #[arg(long, env = "CHAT_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,

    /// Serve HTTPS and wss:// with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// On shutdown, close connections in batches spread over this many
    /// milliseconds, so that clients do not all reconnect at once.
    #[arg(long, env = "CHAT_DRAIN_WINDOW_MS", default_value_t = 500, value_name = "MILLISECONDS",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub drain_window_ms: u64,

    /// Serve /ws/echo, an echo endpoint over the same connection handling,
    /// for WebSocket conformance tests (Autobahn). Not for production.
    #[arg(long, env = "CHAT_ECHO_ENDPOINT")]
    pub echo_endpoint: bool,

    /// Memory all rooms' history may take together (without --redis):
    /// past it, the history of the rooms empty the longest is forgotten
    /// first, then the oldest messages; /metrics counts what was forgotten
    /// and the log says so. Sizes take a unit: 64MiB, 1GiB.
    #[arg(long, env = "CHAT_HISTORY_MEMORY", default_value = "64MiB", value_name = "SIZE",
          value_parser = parse_size)]
    pub history_memory: usize,
    /// Keep every room's messages in this SQLite database file (created if
    /// missing; WAL mode, so PATH-wal and PATH-shm sit beside it): history
    /// survives restarts, ids continue, and clients can page back to the
    /// first message and search. Back it up with
    /// sqlite3 PATH ".backup BACKUP". Not with --redis.
    #[arg(long, env = "CHAT_DB", value_name = "PATH", conflicts_with_all = ["redis", "redis_cluster"])]
    pub db: Option<std::path::PathBuf>,

    /// With --db: remove messages older than this many days (checked at
    /// start and every minute). Default: keep them.
    #[arg(long, env = "CHAT_RETAIN_DAYS", value_name = "DAYS", requires = "db",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub retain_days: Option<u32>,

    /// With --db: keep at most this many messages per room, removing the
    /// oldest (checked at start and every minute). Default: keep them all.
    #[arg(long, env = "CHAT_RETAIN_MESSAGES", value_name = "MESSAGES", requires = "db",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_messages: Option<u64>,

    /// Empty rooms whose history is kept in memory; past this, the rooms
    /// empty the longest are forgotten.
    #[arg(
        long,
        env = "CHAT_IDLE_ROOMS",
        default_value_t = 1000,
        value_name = "ROOMS"
    )]
    pub idle_rooms: usize,
}

impl Cli {
    /// The library configuration these flags describe; `max_connections`
    /// is the default cap when the flag is not given.
    ///
    /// # Errors
    ///
    /// When the token file or `CHAT_TOKEN` is unusable (the cause chained).
    pub fn config(&self, max_connections: usize) -> anyhow::Result<Config> {
        let mut tokens = match &self.token_file {
            Some(path) => chat_server::access::read_token_file(path)?,
            None => Vec::new(),
        };
        if let Ok(token) = std::env::var("CHAT_TOKEN") {
            tokens.extend(chat_server::access::parse_tokens(&token).context("CHAT_TOKEN")?);
        }
        let limits = Limits {
            rate_per_sec: self.rate_limit.max(0.0),
            rate_burst: self.rate_burst,
            flood_close_after: Limits::default().flood_close_after,
            max_connections: self.max_connections.unwrap_or(max_connections),
            max_connections_per_ip: self.max_connections_per_ip,
            new_connections_per_ip_per_sec: self.new_connections_per_ip.max(0.0),
            max_rooms: self.max_rooms,
            max_members_per_room: self.max_members_per_room,
            ping_interval: Duration::from_secs(self.ping_interval),
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
        };
        let access = Access {
            check_origin: !self.no_origin_check,
            allowed_origins: self
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            allowed_hosts: self.allowed_hosts.clone(),
            tokens,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Ok(Config {
            limits,
            access,
            tls,
            drain_window: Duration::from_millis(self.drain_window_ms),
            echo_endpoint: self.echo_endpoint,
            max_message_size: self.max_message_size as usize,
            history_len: self.history as usize,
            max_idle_rooms: self.idle_rooms,
            history_memory: self.history_memory,
            queue_len: self.queue as usize,
            queue_bytes: self.queue_bytes,
            write_timeout: Duration::from_secs(self.write_timeout),
            store: self.db.as_ref().map(|path| StoreConfig {
                retain_days: self.retain_days,
                retain_messages: self.retain_messages,
                ..StoreConfig::new(path.clone())
            }),
            redis: self.redis_config(),
        })
    }
}

impl Cli {
    /// The Redis settings, if --redis or --redis-cluster is given.
    fn redis_config(&self) -> Option<RedisConfig> {
        let seeds: Vec<String> = self
            .redis_cluster
            .iter()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        let base = match (&self.redis, seeds.is_empty()) {
            (_, false) => RedisConfig::cluster(seeds),
            (Some(url), true) => RedisConfig::new(url.clone()),
            (None, true) => return None,
        };
        Some(RedisConfig {
            prefix: self.redis_prefix.clone(),
            presence_ttl: Duration::from_secs(self.presence_ttl),
            room_ttl: Duration::from_secs(self.redis_room_ttl),
            history_bytes: self.redis_history_bytes,
            timeout: Duration::from_millis(self.redis_timeout_ms),
            ..base
        })
    }
}

/// A size in bytes: a whole number with an optional unit (`B`, `KiB`,
/// `MiB`, `GiB`, or `K`, `M`, `G`, all powers of 1024).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 64MiB, 512KiB or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_library() {
        let cli = Cli::try_parse_from(["chat-server"]).unwrap();
        let config = cli.config(100_000).unwrap();
        let default = Config::default();
        assert_eq!(cli.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.max_message_size, default.max_message_size);
        assert_eq!(config.history_len, default.history_len);
        assert_eq!(config.queue_len, default.queue_len);
        assert_eq!(config.queue_bytes, default.queue_bytes);
        assert_eq!(config.history_memory, default.history_memory);
        assert_eq!(config.max_idle_rooms, default.max_idle_rooms);
        assert!(config.access.check_origin);
        assert!((config.limits.rate_per_sec - default.limits.rate_per_sec).abs() < f64::EPSILON);
        assert_eq!(config.limits.rate_burst, default.limits.rate_burst);
        assert_eq!(config.drain_window, default.drain_window);
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        let err = Cli::try_parse_from(["chat-server", "--addr", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--addr"), "{err}");
        assert!(Cli::try_parse_from(["chat-server", "--queue", "0"]).is_err());
        assert!(
            Cli::try_parse_from([
                "chat-server",
                "--redis",
                "redis://a",
                "--redis-cluster",
                "redis://b"
            ])
            .is_err(),
            "one Redis or a cluster, not both"
        );
    }

    #[test]
    fn a_cluster_is_a_list_of_seeds() {
        let cli = Cli::try_parse_from([
            "chat-server",
            "--redis-cluster",
            "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
        ])
        .unwrap();
        let redis = cli.config(10).unwrap().redis.unwrap();
        assert_eq!(
            redis.cluster,
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(redis.room_ttl, chat_server::DEFAULT_ROOM_TTL);
        assert_eq!(redis.timeout, Duration::from_secs(2));
        let cli = Cli::try_parse_from([
            "chat-server",
            "--redis",
            "redis://127.0.0.1:6379/0",
            "--redis-timeout-ms",
            "5000",
        ])
        .unwrap();
        let redis = cli.config(10).unwrap().redis.unwrap();
        assert_eq!(redis.timeout, Duration::from_secs(5));
        assert!(Cli::try_parse_from(["chat-server", "--redis-timeout-ms", "10"]).is_err());
    }

    #[test]
    fn history_memory_takes_units() {
        let err = Cli::try_parse_from(["chat-server", "--history-memory", "lots"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("64MiB"), "{err}");
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn db_flags_need_db_and_exclude_redis() {
        let cli = Cli::try_parse_from([
            "chat-server",
            "--db",
            "chat.db",
            "--retain-days",
            "30",
            "--retain-messages",
            "1000",
        ])
        .unwrap();
        let store = cli.config(100).unwrap().store.unwrap();
        assert_eq!(store.path, std::path::PathBuf::from("chat.db"));
        assert_eq!(
            (store.retain_days, store.retain_messages),
            (Some(30), Some(1000))
        );
        let default = Cli::try_parse_from(["chat-server"]).unwrap();
        assert!(
            default.config(100).unwrap().store.is_none(),
            "memory by default"
        );
        for args in [
            &["chat-server", "--retain-days", "30"][..],
            &["chat-server", "--retain-messages", "5"],
            &[
                "chat-server",
                "--db",
                "x.db",
                "--redis",
                "redis://127.0.0.1/",
            ],
            &["chat-server", "--db", "x.db", "--retain-days", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
