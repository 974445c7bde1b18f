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
    /// Everything committed before this time can be restored (see
    /// `Observer::recoverable`); only ever moves forward.
    pub recoverable_until_seconds: Gauge<f64, AtomicU64>,
    recoverable_until_micros: AtomicU64,
    pub upload_bytes: Gauge,
    /// Bytes compaction and the sealed files' whole indexes sent (beside `upload_bytes`).
    pub compaction_bytes: Gauge,
    pub compacted_files: Gauge,
    pub compaction_deleted_objects: Gauge,
    pub uploaded_binlog_bytes: Gauge,
    pub upload_backlog_bytes: Gauge,
    pub upload_errors: Counter,
    /// 1 from a failed checkpoint until the next one succeeds.
    pub upload_failing: Gauge,
    pub last_checkpoint_seconds: Gauge<f64, AtomicU64>,
    pub lease_valid_until_seconds: Gauge<f64, AtomicU64>,
    pub purge_errors: Counter,
    pub purged_files: Counter,
    /// 1 from a failed retention pass until the next one succeeds.
    pub purge_failing: Gauge,
    pub last_purge_seconds: Gauge<f64, AtomicU64>,
    pub disk_available_bytes: Gauge,
    pub disk_size_bytes: Gauge,
    /// 1 while the stream fails again and again at one place in the source's binlog.
    pub stuck: Gauge,
    /// Why the stream is stuck, for `/healthz`; `None` when it is not.
    stuck_reason: std::sync::Mutex<Option<String>>,
    /// Seconds since the epoch of the last event or heartbeat from the source.
    last_heard: AtomicU64,
    connected_flag: AtomicBool,
    /// How long the source may stay silent before `/healthz` fails.
    silence_allowed: AtomicU64,
    exported: Exported,
}

/// Which families a stream exports beyond the common ones: a family that cannot move
/// (upload metrics of a local archive) is left out rather than shown as zero, so that
/// alerts on it never fire for a setup it does not describe.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// The archive is in an object store: upload and lease metrics.
    pub object_store: bool,
    /// Retention is on: purge metrics.
    pub retention: bool,
    /// The local directory written (the spool, or a local archive), whose filesystem's
    /// free space is read at each scrape.
    pub local_dir: Option<std::path::PathBuf>,
}

impl StreamMetrics {
    pub fn new(silence_allowed: Duration, exported: Exported) -> Arc<Self> {
        let metrics = StreamMetrics {
            exported,
            ..StreamMetrics::default()
        };
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
            "recoverable_until_timestamp_seconds",
            "Everything the source committed before this time can be restored from the archive (for an S3 archive: from the object store); now while caught up, else the last stored commit",
            self.recoverable_until_seconds.clone(),
        );
        if self.exported.object_store {
            registry.register(
                "upload_bytes",
                "Bytes sent to the object store (segments, indexes, manifests, catalogue) since start",
                self.upload_bytes.clone(),
            );
            registry.register(
                "compaction_bytes",
                "Bytes sent to the object store to compact sealed files (their large segments, rewritten manifests, whole indexes) since start: the cost beside upload_bytes",
                self.compaction_bytes.clone(),
            );
            registry.register(
                "compacted_files",
                "Sealed files rewritten as a few large segments since start",
                self.compacted_files.clone(),
            );
            registry.register(
                "compaction_deleted_objects",
                "Small segments and index objects deleted after a compaction, since start",
                self.compaction_deleted_objects.clone(),
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
                "upload_failing",
                "1 from a failed checkpoint until one succeeds again",
                self.upload_failing.clone(),
            );
            registry.register(
                "last_checkpoint_timestamp_seconds",
                "When the last checkpoint to the object store succeeded",
                self.last_checkpoint_seconds.clone(),
            );
            registry.register(
                "lease_valid_until_timestamp_seconds",
                "Until when this writer's lease on the object archive holds as of its last renewal (0 once lost)",
                self.lease_valid_until_seconds.clone(),
            );
        }
        if self.exported.retention {
            registry.register(
                "purged_files",
                "Archived files deleted by retention",
                self.purged_files.clone(),
            );
            registry.register(
                "purge_errors",
                "Retention passes that failed (tried again at the next --purge-interval)",
                self.purge_errors.clone(),
            );
            registry.register(
                "purge_failing",
                "1 from a failed retention pass until one succeeds again",
                self.purge_failing.clone(),
            );
            registry.register(
                "last_purge_timestamp_seconds",
                "When the last retention pass succeeded",
                self.last_purge_seconds.clone(),
            );
        }
        if self.exported.local_dir.is_some() {
            registry.register(
                "spool_disk_available_bytes",
                "Free bytes (for binlogd's user) on the filesystem of the spool or local archive",
                self.disk_available_bytes.clone(),
            );
            registry.register(
                "spool_disk_size_bytes",
                "Size of the filesystem of the spool or local archive",
                self.disk_size_bytes.clone(),
            );
        }
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

    /// Moves the recoverable time forward to `until_micros` (never back).
    pub fn set_recoverable(&self, until_micros: u64) {
        let before = self
            .recoverable_until_micros
            .fetch_max(until_micros, Ordering::Relaxed);
        if until_micros > before {
            self.recoverable_until_seconds
                .set(until_micros as f64 / 1e6);
        }
    }

    /// Reads the free space of the local directory's filesystem, at each scrape.
    fn refresh_disk(&self) {
        let Some(dir) = &self.exported.local_dir else {
            return;
        };
        match nix::sys::statvfs::statvfs(dir.as_path()) {
            Ok(fs) => {
                let block = fs.fragment_size();
                let to_i64 =
                    |blocks: u64| i64::try_from(blocks.saturating_mul(block)).unwrap_or(i64::MAX);
                self.disk_available_bytes.set(to_i64(fs.blocks_available()));
                self.disk_size_bytes.set(to_i64(fs.blocks()));
            }
            Err(e) => {
                tracing::debug!(error = %e, dir = %dir.display(), "reading the spool's free space")
            }
        }
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
    let scraped = Arc::clone(&metrics);
    endpoint(
        addr,
        Arc::new(move || {
            scraped.refresh_disk();
            encode(&registry)
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The series a stream with every family exports (an S3 archive with retention).
    fn exported_series() -> BTreeSet<String> {
        let metrics = StreamMetrics::new(
            Duration::from_secs(10),
            Exported {
                object_store: true,
                retention: true,
                local_dir: Some(std::env::temp_dir()),
            },
        );
        metrics.refresh_disk();
        // Label families show once they have a member.
        metrics
            .source
            .get_or_create(&SourceLabel {
                server_id: "1".into(),
                address: "db1:3306".into(),
                version: "11.8.3-MariaDB".into(),
            })
            .set(1);
        metrics
            .last_gtid
            .get_or_create(&GtidLabel {
                gtid: "0-1-5".into(),
            })
            .set(1);
        let text = encode(&metrics.registry()).expect("encode");
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .flat_map(|line| {
                let mut words = line.split(' ');
                let name = words.next().unwrap_or_default().to_owned();
                match words.next() {
                    Some("counter") => vec![format!("{name}_total")],
                    _ => vec![name],
                }
            })
            .collect()
    }

    /// Every `binlogd_*` name in `text` that no stream exports.
    fn unknown_names(text: &str, exported: &BTreeSet<String>) -> BTreeSet<String> {
        let name = regex::Regex::new(r"\bbinlogd_[a-z0-9_]+").expect("regex");
        name.find_iter(text)
            .map(|m| m.as_str().to_owned())
            .filter(|n| !exported.contains(n))
            .collect()
    }

    fn deploy(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/monitoring")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every PromQL expression in a Grafana dashboard: panel targets, variables,
    /// annotations.
    fn expressions(node: &serde_json::Value, found: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", serde_json::Value::String(expr)) => {
                            found.push(expr.clone())
                        }
                        _ => expressions(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| expressions(i, found)),
            _ => {}
        }
    }

    #[test]
    fn the_alerts_and_the_dashboard_name_only_metrics_binlogd_exports() {
        let exported = exported_series();
        assert!(
            exported.contains("binlogd_upload_errors_total"),
            "{exported:?}"
        );
        assert!(
            exported.contains("binlogd_spool_disk_available_bytes"),
            "{exported:?}"
        );
        let rules = deploy("binlogd-rules.yaml");
        assert_eq!(
            unknown_names(&rules, &exported),
            BTreeSet::new(),
            "in binlogd-rules.yaml"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&deploy("grafana-binlogd.json")).expect("the dashboard is JSON");
        let mut exprs = Vec::new();
        expressions(&dashboard, &mut exprs);
        assert!(exprs.len() > 15, "{exprs:?}");
        for expr in &exprs {
            assert_eq!(
                unknown_names(expr, &exported),
                BTreeSet::new(),
                "in the dashboard: {expr}"
            );
        }
        // And the test itself: a misspelt name is caught.
        assert_eq!(
            unknown_names("rate(binlogd_bytes_archived[5m])", &exported),
            BTreeSet::from(["binlogd_bytes_archived".to_owned()])
        );
    }

    #[test]
    fn a_local_archive_without_retention_exports_no_upload_lease_or_purge_metrics() {
        let metrics = StreamMetrics::new(Duration::from_secs(10), Exported::default());
        let text = encode(&metrics.registry()).expect("encode");
        for absent in ["upload", "lease", "purge", "spool_disk"] {
            assert!(
                !text.contains(&format!("binlogd_{absent}")),
                "{absent} in\n{text}"
            );
        }
        assert!(text.contains("binlogd_recoverable_until_timestamp_seconds"));
    }

    #[test]
    fn the_recoverable_time_only_moves_forward() {
        let metrics = StreamMetrics::new(Duration::from_secs(10), Exported::default());
        metrics.set_recoverable(2_000_000);
        metrics.set_recoverable(1_000_000);
        assert_eq!(metrics.recoverable_until_seconds.get(), 2.0);
        metrics.set_recoverable(3_500_000);
        assert_eq!(metrics.recoverable_until_seconds.get(), 3.5);
    }
}
