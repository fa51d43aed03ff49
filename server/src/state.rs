//! What every handler and session shares ([`AppState`]), and the task
//! that sends every session the keepalive ticks and the shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::layer::{HistoryLimits, Layer, MemoryLayer, RedisLayer};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::ring::OutCounters;
use crate::rooms::RoomRegistry;
use crate::signals::Signals;
use crate::store::Store;
use crate::{AllowedHosts, Config, ServerError};

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    /// The `Host` names the server answers to.
    hosts: AllowedHosts,
    /// Local rooms and their subscribers.
    registry: Arc<RoomRegistry>,
    /// Ids, history, presence, delivery.
    layer: Layer,
    /// Open connections, in total and per address.
    admission: Arc<Admission>,
    metrics: Metrics,
    /// Numbers sessions, to spread them over the drain window.
    sessions_started: AtomicU64,
    /// The server's clock for per-connection times kept in milliseconds.
    started: std::time::Instant,
    /// What every session watches: keepalive ticks, and the shutdown.
    signals: Arc<Signals>,
    /// Cancelled when the server shuts down; every session watches it.
    shutdown: CancellationToken,
    /// Tracks connections (HTTP and upgraded), which shutdown waits for.
    tracker: TaskTracker,
}

impl AppState {
    /// Builds the state, connecting to the layer's backend first.
    pub(crate) async fn new(config: Config, hosts: AllowedHosts) -> Result<Self, ServerError> {
        let metrics = Metrics::new(config.redis.is_some());
        let registry = Arc::new(
            RoomRegistry::new(config.queue_len, config.queue_bytes).counting(OutCounters {
                frames: metrics.messages_out.clone(),
                bytes: metrics.bytes_out.clone(),
            }),
        );
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let layer = match &config.redis {
            None => {
                let store = config.store.as_ref().map(Store::open).transpose()?;
                Layer::Memory(MemoryLayer::with_store(
                    registry.clone(),
                    HistoryLimits {
                        per_room: config.history_len,
                        bytes: config.history_memory,
                        idle_rooms: config.max_idle_rooms,
                    },
                    metrics.history.clone(),
                    store,
                ))
            }
            Some(redis) => Layer::Redis(
                RedisLayer::connect(
                    redis.clone(),
                    registry.clone(),
                    config.history_len,
                    &shutdown,
                    &tracker,
                )
                .await?,
            ),
        };
        let admission = Arc::new(Admission::new(config.limits.clone()));
        let signals = Arc::new(Signals::default());
        tracker.spawn(tick(
            Arc::clone(&signals),
            config.limits.ping_interval,
            shutdown.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Shared {
                config,
                hosts,
                registry,
                layer,
                admission,
                metrics,
                sessions_started: AtomicU64::new(0),
                started: std::time::Instant::now(),
                signals,
                shutdown,
                tracker,
            }),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn hosts(&self) -> &AllowedHosts {
        &self.inner.hosts
    }

    /// The scheme a request's page was served over, as its `Origin` names
    /// it: `https` with TLS, or behind a proxy that says so
    /// (`X-Forwarded-Proto`, which a page cannot set on a socket); else
    /// `http`.
    pub(crate) fn scheme(&self, headers: &axum::http::HeaderMap) -> &'static str {
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        match forwarded.as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ if self.inner.config.tls.is_some() => "https",
            _ => "http",
        }
    }

    pub(crate) fn layer(&self) -> &Layer {
        &self.inner.layer
    }

    pub(crate) fn registry(&self) -> &RoomRegistry {
        &self.inner.registry
    }

    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// Which of ten batches a new session closes in when the server shuts
    /// down, so that closes spread across the drain window.
    pub(crate) fn drain_batch(&self) -> u8 {
        let n = self.inner.sessions_started.fetch_add(1, Ordering::Relaxed);
        u8::try_from(n % 10).unwrap_or(0)
    }

    /// How long a session of `batch` waits before closing at shutdown.
    pub(crate) fn drain_delay(&self, batch: u8) -> Duration {
        self.inner.config.drain_window * u32::from(batch) / 10
    }

    /// Milliseconds since the server started (wrapping), for times kept
    /// per connection.
    pub(crate) fn now_ms(&self) -> u32 {
        #[allow(clippy::cast_possible_truncation)] // wrapping on purpose
        let ms = self.inner.started.elapsed().as_millis() as u32;
        ms
    }

    /// The keepalive ticks and the shutdown, for a session to watch.
    pub(crate) fn signals(&self) -> &Signals {
        &self.inner.signals
    }
}

/// Ticks every `interval` for the sessions' keepalive, and says when the
/// server shuts down.
async fn tick(signals: Arc<Signals>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                signals.shut_down();
                return;
            }
            () = tokio::time::sleep(interval) => signals.tick(),
        }
    }
}
