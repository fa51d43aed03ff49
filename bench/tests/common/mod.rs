//! Helpers for chat-bench's tests: configurations aimed at a test server.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chat_bench::conns::ConnsConfig;
use chat_bench::fanout::FanoutConfig;
use chat_bench::wire::Target;

/// The target of a server at `addr`, with the default Origin.
pub fn target(addr: SocketAddr) -> Target {
    Target {
        addr,
        host: addr.to_string(),
        origin: Some(format!("http://{addr}")),
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
    FanoutConfig {
        target: target(addr),
        url: format!("ws://{addr}"),
        room_prefix: format!("t{}r", fastrand::u32(..)),
        rooms,
        members,
        senders,
        messages,
        rate: None,
        window: 4,
        size: 48,
        threads: 1,
        connect_concurrency: 16,
        sources: Vec::new(),
        server_pid: None,
        max_time: Duration::from_secs(20),
        drain: Duration::from_millis(300),
        setup_timeout: Duration::from_secs(10),
        progress: false,
        busy_poll: false,
        read_interval: None,
    }
}

/// A `conns` run against `addr`.
pub fn conns(addr: SocketAddr, connections: u64, room_size: u32) -> ConnsConfig {
    ConnsConfig {
        target: target(addr),
        url: format!("ws://{addr}"),
        room_prefix: format!("t{}", fastrand::u32(..)),
        connections,
        room_size,
        per_worker: connections,
        sources: vec![
            Ipv4Addr::LOCALHOST.into(),
            Ipv4Addr::new(127, 0, 0, 2).into(),
        ],
        hold: Duration::from_millis(200),
        probe_timeout: Duration::from_secs(5),
        setup_timeout: Duration::from_secs(10),
        connect_concurrency: 16,
        server_pid: None,
        worker_exe: None,
        progress: false,
    }
}
