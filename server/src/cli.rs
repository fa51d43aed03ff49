//! Command-line flags and environment variables of `chat-server`, turned
//! into the library's [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{Config, RedisConfig};
use clap::Parser;

/// A WebSocket chat room server, wire-compatible with the Django Channels
/// chat tutorial.
///
/// Serves the room picker at /chat/, a chat page at /chat/<room>/, the
/// WebSocket endpoint /ws/chat/<room>/, the active rooms at /api/rooms and
/// a health check at /healthz. Rooms live in memory, or, with --redis, in
/// a Redis shared by several instances behind a load balancer.
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
    /// The library configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            max_message_size: self.max_message_size as usize,
            history_len: self.history as usize,
            max_idle_rooms: self.idle_rooms,
            queue_len: self.queue as usize,
            write_timeout: Duration::from_secs(self.write_timeout),
            redis: self.redis.as_ref().map(|url| RedisConfig {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                presence_ttl: Duration::from_secs(self.presence_ttl),
                ..RedisConfig::new(url.clone())
            }),
            ..Config::default()
        }
    }
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
        let config = cli.config();
        let default = Config::default();
        assert_eq!(cli.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.max_message_size, default.max_message_size);
        assert_eq!(config.history_len, default.history_len);
        assert_eq!(config.queue_len, default.queue_len);
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        let err = Cli::try_parse_from(["chat-server", "--addr", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--addr"), "{err}");
        assert!(Cli::try_parse_from(["chat-server", "--queue", "0"]).is_err());
    }
}
