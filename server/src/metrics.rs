//! `GET /metrics`: Prometheus text format, from the `prometheus-client`
//! crate. Each server has its own registry (no global state), so several
//! servers in one process (the tests) keep their own counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label naming why something happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Reason {
    /// The reason, e.g. `slow_consumer`.
    pub reason: &'static str,
}

/// The in-memory history's size and what its limits made it forget
/// (shared with the memory layer, which keeps them up to date).
#[derive(Debug, Clone, Default)]
pub struct HistoryMetrics {
    /// Bytes of history held in memory.
    pub bytes: Gauge,
    /// Empty rooms whose history was forgotten (`--idle-rooms`,
    /// `--history-memory`).
    pub forgotten_rooms: Counter,
    /// Messages dropped from rooms' history to stay within
    /// `--history-memory` (beyond the usual `--history` rotation).
    pub forgotten_messages: Counter,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_opened: Counter,
    /// Rooms with members on this instance (set when scraped).
    pub rooms: Gauge,
    /// Chat messages received from clients and published.
    pub messages_in: Counter,
    /// Frames written to clients (one per delivery).
    pub messages_out: Counter,
    /// Bytes of client frames received.
    pub bytes_in: Counter,
    /// Bytes of frames written to clients.
    pub bytes_out: Counter,
    /// Connections closed by the server, by reason.
    pub disconnects: Family<Reason, Counter>,
    /// Connections ended by the client, by how (`closed`: with a close
    /// frame; `reset`: without one).
    pub client_disconnects: Family<Reason, Counter>,
    /// Requests refused before the upgrade, by reason.
    pub refusals: Family<Reason, Counter>,
    /// Messages refused by the rate limit.
    pub rate_limited: Counter,
    /// 1 when the Redis layer is connected, 0 when not (absent in memory).
    pub redis_up: Gauge,
    /// The in-memory history (absent with Redis).
    pub history: HistoryMetrics,
}

impl Metrics {
    /// A registry with every metric.
    pub fn new(with_redis: bool) -> Self {
        let mut registry = Registry::with_prefix("chat");
        let metrics = Self {
            registry: Registry::default(),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            rooms: Gauge::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            disconnects: Family::default(),
            client_disconnects: Family::default(),
            refusals: Family::default(),
            rate_limited: Counter::default(),
            redis_up: Gauge::default(),
            history: HistoryMetrics::default(),
        };
        registry.register(
            "connections",
            "WebSocket connections open now",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections accepted since start",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "rooms",
            "Rooms with members on this instance",
            metrics.rooms.clone(),
        );
        registry.register(
            "messages_in",
            "Chat messages received and published",
            metrics.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Frames written to clients",
            metrics.messages_out.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes of client frames received",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "sent_bytes",
            "Bytes of frames written to clients",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "disconnects",
            "Connections closed by the server, by reason",
            metrics.disconnects.clone(),
        );
        registry.register(
            "client_disconnects",
            "Connections ended by the client, by how (closed: with a close frame; reset: without)",
            metrics.client_disconnects.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused before the upgrade, by reason",
            metrics.refusals.clone(),
        );
        registry.register(
            "rate_limited",
            "Messages refused by the rate limit",
            metrics.rate_limited.clone(),
        );
        if with_redis {
            registry.register(
                "redis_up",
                "1 when connected to Redis",
                metrics.redis_up.clone(),
            );
        } else {
            registry.register(
                "history_bytes",
                "Bytes of room history held in memory (--history-memory bounds it)",
                metrics.history.bytes.clone(),
            );
            registry.register(
                "history_forgotten_rooms",
                "Empty rooms whose history was forgotten to stay within --idle-rooms or --history-memory",
                metrics.history.forgotten_rooms.clone(),
            );
            registry.register(
                "history_forgotten_messages",
                "Messages dropped from history to stay within --history-memory",
                metrics.history.forgotten_messages.clone(),
            );
        }
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a refusal before the upgrade.
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&Reason { reason }).inc();
    }

    /// Counts a connection closed by the server.
    pub fn disconnected(&self, reason: &'static str) {
        self.disconnects.get_or_create(&Reason { reason }).inc();
    }

    /// Counts a connection ended by the client.
    pub fn client_disconnected(&self, reason: &'static str) {
        self.client_disconnects
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new(true);
        metrics.messages_in.inc_by(3);
        metrics.disconnected("slow_consumer");
        metrics.redis_up.set(1);
        let text = metrics.render();
        assert!(text.contains("chat_messages_in_total 3"), "{text}");
        assert!(
            text.contains("chat_disconnects_total{reason=\"slow_consumer\"} 1"),
            "{text}"
        );
        assert!(text.contains("chat_redis_up 1"), "{text}");
        assert!(text.contains("# HELP chat_connections"), "{text}");
    }
}
