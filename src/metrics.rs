//! `/metrics` (Prometheus text format) and `/healthz` for `binlogd stream` and
//! `binlogd serve`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Label of the info metric that carries the last archived GTID.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GtidLabel {
    pub gtid: String,
}

/// Labels of the info metric that names the server being followed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub server_id: String,
    pub address: String,
    pub version: String,
}

/// What `binlogd stream` reports.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub events: Counter,
    pub bytes: Counter,
    pub transactions: Counter,
    pub reconnects: Counter,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub lag_bytes: Gauge,
    pub last_commit_seconds: Gauge<f64, AtomicU64>,
    pub last_gtid: Family<GtidLabel, Gauge>,
    pub source: Family<SourceLabel, Gauge>,
    pub connected: Gauge,
    pub upload_bytes: Gauge,
    pub uploaded_binlog_bytes: Gauge,
    pub upload_backlog_bytes: Gauge,
    pub upload_errors: Counter,
    /// 1 while the stream fails again and again at one place in the source's binlog.
    pub stuck: Gauge,
    /// Why the stream is stuck, for `/healthz`; `None` when it is not.
    stuck_reason: std::sync::Mutex<Option<String>>,
    /// Seconds since the epoch of the last event or heartbeat from the source.
    last_heard: AtomicU64,
    connected_flag: AtomicBool,
    /// How long the source may stay silent before `/healthz` fails.
    silence_allowed: AtomicU64,
}

impl StreamMetrics {
    pub fn new(silence_allowed: Duration) -> Arc<Self> {
        let metrics = StreamMetrics::default();
        metrics
            .silence_allowed
            .store(silence_allowed.as_secs().max(1), Ordering::Relaxed);
        Arc::new(metrics)
    }

    fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::with_prefix("binlogd");
        registry.register(
            "events_archived",
            "Events written to the archive",
            self.events.clone(),
        );
        registry.register(
            "bytes_archived",
            "Bytes written to the archive",
            self.bytes.clone(),
        );
        registry.register(
            "transactions_archived",
            "Transactions indexed",
            self.transactions.clone(),
        );
        registry.register(
            "reconnects",
            "Connections to the source lost and made again",
            self.reconnects.clone(),
        );
        registry.register(
            "lag_seconds",
            "Seconds the archive is behind the source (0 when caught up)",
            self.lag_seconds.clone(),
        );
        registry.register(
            "lag_bytes",
            "Bytes of the source's current binlog not yet durable in the archive, as of its last heartbeat",
            self.lag_bytes.clone(),
        );
        registry.register(
            "last_archived_commit_timestamp_seconds",
            "Commit time of the last archived transaction",
            self.last_commit_seconds.clone(),
        );
        registry.register(
            "last_archived_gtid",
            "The GTID of the last archived transaction, as a label",
            self.last_gtid.clone(),
        );
        registry.register(
            "source",
            "The server followed (server_id, address, version), as labels",
            self.source.clone(),
        );
        registry.register(
            "source_connected",
            "1 while streaming from the source",
            self.connected.clone(),
        );
        registry.register(
            "upload_bytes",
            "Bytes sent to the object store (segments, indexes, manifests, catalogue) since start",
            self.upload_bytes.clone(),
        );
        registry.register(
            "uploaded_binlog_bytes",
            "Binlog bytes shipped to the object store since start (before compression)",
            self.uploaded_binlog_bytes.clone(),
        );
        registry.register(
            "upload_backlog_bytes",
            "Durable spool bytes not yet in the object store",
            self.upload_backlog_bytes.clone(),
        );
        registry.register(
            "upload_errors",
            "Failed checkpoints (retried)",
            self.upload_errors.clone(),
        );
        registry.register(
            "stuck",
            "1 while the stream fails again and again at the same place in the source's binlog (see the log and /healthz)",
            self.stuck.clone(),
        );
        registry
    }

    /// Says that the stream is stuck (and why), or no longer is.
    pub fn set_stuck(&self, reason: Option<String>) {
        self.stuck.set(i64::from(reason.is_some()));
        *self
            .stuck_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    /// Notes that the source was heard from.
    pub fn heard(&self) {
        self.last_heard.store(now_seconds(), Ordering::Relaxed);
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected_flag.store(connected, Ordering::Relaxed);
        self.connected.set(i64::from(connected));
        if connected {
            self.heard();
        }
    }

    /// `None` when healthy, else why not.
    fn unhealthy(&self) -> Option<String> {
        let stuck = self
            .stuck_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(reason) = stuck {
            return Some(format!("stuck: {reason}"));
        }
        if !self.connected_flag.load(Ordering::Relaxed) {
            return Some("not connected to the source".to_owned());
        }
        let silent = now_seconds().saturating_sub(self.last_heard.load(Ordering::Relaxed));
        let allowed = self.silence_allowed.load(Ordering::Relaxed);
        (silent > allowed).then(|| {
            format!("nothing from the source for {silent} s (heartbeats are expected every {allowed} s at most)")
        })
    }
}

fn now_seconds() -> u64 {
    crate::flags::now_micros() / 1_000_000
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends. Returns the bound
/// address (useful with port 0).
pub async fn serve(addr: SocketAddr, metrics: Arc<StreamMetrics>) -> anyhow::Result<SocketAddr> {
    let registry = Arc::new(metrics.registry());
    endpoint(
        addr,
        Arc::new(move || encode(&registry)),
        Arc::new(move || metrics.unhealthy()),
    )
    .await
}

/// What an endpoint shows: the registry as of now, and why the process is unhealthy.
pub type Render = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;
pub type Health = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Serves `/metrics` (what `render` encodes at each scrape) and `/healthz` on `addr`.
pub async fn endpoint(
    addr: SocketAddr,
    render: Render,
    health: Health,
) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                match render() {
                    Ok(body) => (
                        StatusCode::OK,
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }),
        )
        .route(
            "/healthz",
            get(move || async move {
                match health() {
                    None => (StatusCode::OK, "ok\n".to_owned()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics address {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// A registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}
