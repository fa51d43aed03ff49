//! Helpers for chat-bench's tests: configurations aimed at a test server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use chat_bench::config::{Config, Server};
use chat_bench::conns::{ConnsConfig, ConnsSettings};
use chat_bench::fanout::{FanoutConfig, FanoutSettings};
use chat_bench::secs::Secs;
use chat_bench::wire::Target;

/// The server at `addr`, with the default Origin.
pub fn server(addr: SocketAddr) -> Server {
    Server {
        target: Target {
            addr,
            host: addr.to_string(),
            origin: Some(format!("http://{addr}")),
        },
        url: format!("ws://{addr}"),
        pid: None,
        setup_timeout: Duration::from_secs(10),
    }
}

/// A run of `settings` against `addr`, rooms named `<prefix><random>…`.
pub fn config<S>(addr: SocketAddr, settings: S, prefix: &str) -> Config<S> {
    Config {
        server: server(addr),
        settings,
        room_prefix: format!("{prefix}{}r", fastrand::u32(..)),
        progress: false,
    }
}

/// A fan-out run against `addr`: small, quick, and bounded in time.
pub fn fanout(
    addr: SocketAddr,
    rooms: u32,
    members: u32,
    senders: u32,
    messages: u64,
) -> FanoutConfig {
    let settings = FanoutSettings {
        rooms,
        members,
        senders: Some(senders),
        messages,
        window: 4,
        size: 48,
        connect_concurrency: 16,
        max_time: Secs::from(Duration::from_secs(20)),
        drain: Secs::from(Duration::from_millis(300)),
        ..FanoutSettings::default()
    };
    config(addr, settings, "t")
}

/// A `conns` run against `addr`, in this process.
pub fn conns(addr: SocketAddr, connections: u64, room_size: u32) -> ConnsConfig {
    let settings = ConnsSettings {
        connections,
        room_size,
        per_worker: connections,
        sources: 2,
        hold: Secs::from(Duration::from_millis(200)),
        probe_timeout: Secs::from(Duration::from_secs(5)),
        connect_concurrency: 16,
        in_process: true,
        ..ConnsSettings::default()
    };
    config(addr, settings, "t")
}
