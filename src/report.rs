//! What `binlogd stream` shows of the engine's work: Prometheus metrics (see
//! `metrics.rs`) and, on a terminal, a progress line.

use crate::flags::now_micros;
use crate::metrics::{GtidLabel, SourceLabel, StreamMetrics};
use binlogd_replica::{Archived, Observer};
use binlogd_storage::SourceIdentity;
use binlogd_storage::remote::upload::UploadStats;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// The engine's observer for `binlogd stream`.
#[derive(Debug)]
pub struct StreamReport {
    metrics: Arc<StreamMetrics>,
    progress: Option<indicatif::ProgressBar>,
}

impl StreamReport {
    /// Reports to `metrics`, and draws a progress line when stderr is a terminal (unless
    /// `quiet`).
    pub fn new(metrics: Arc<StreamMetrics>, quiet: bool) -> StreamReport {
        let progress = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        StreamReport { metrics, progress }
    }
}

impl Observer for StreamReport {
    fn connected(&self, connected: bool) {
        self.metrics.set_connected(connected);
    }

    fn source(&self, identity: &SourceIdentity) {
        // After a failover behind the same address, another server: say which.
        self.metrics.source.clear();
        self.metrics
            .source
            .get_or_create(&SourceLabel {
                server_id: identity.server_id.to_string(),
                address: identity.address.clone(),
                // MariaDB's handshake says 5.5.5-10.11.19-MariaDB for old clients' sake.
                version: identity.version.trim_start_matches("5.5.5-").to_owned(),
            })
            .set(1);
    }

    fn heard(&self) {
        self.metrics.heard();
    }

    fn archived(&self, archived: &Archived<'_>) {
        let metrics = &self.metrics;
        metrics.events.inc_by(archived.new_events);
        metrics.bytes.inc_by(archived.new_bytes);
        metrics.transactions.inc_by(archived.new_transactions);
        if let Some(last) = archived.last_transaction {
            metrics
                .last_commit_seconds
                .set(last.commit_micros as f64 / 1e6);
            if let Some(gtid) = last.gtid {
                metrics.last_gtid.clear();
                metrics
                    .last_gtid
                    .get_or_create(&GtidLabel {
                        gtid: gtid.to_string(),
                    })
                    .set(1);
            }
        }
        if let Some(lag) = archived.lag {
            metrics.lag_seconds.set(lag.as_secs_f64());
        }
        if let Some(bar) = &self.progress {
            let (file, position) = archived.position.unwrap_or(("-", 0));
            bar.set_message(format!(
                "{file} @ {position}  {} transactions  {:.1} MB archived  lag {:.1} s",
                archived.session_transactions,
                archived.session_bytes as f64 / 1e6,
                metrics.lag_seconds.get()
            ));
        }
    }

    fn behind_by(&self, bytes: u64) {
        self.metrics.lag_bytes.set(bytes as i64);
    }

    fn stuck(&self, reason: Option<&str>) {
        self.metrics.set_stuck(reason.map(str::to_owned));
    }

    fn reconnecting(&self) {
        self.metrics.reconnects.inc();
    }

    fn recoverable(&self, until_micros: u64) {
        self.metrics.set_recoverable(until_micros);
    }

    fn checkpointed(&self, stats: &UploadStats, backlog: u64) {
        let metrics = &self.metrics;
        metrics.upload_bytes.set(stats.bytes_put as i64);
        metrics
            .compaction_bytes
            .set(stats.compaction_bytes_put as i64);
        metrics.compacted_files.set(stats.compacted as i64);
        metrics
            .compaction_deleted_objects
            .set(stats.deleted_objects as i64);
        metrics.uploaded_binlog_bytes.set(stats.binlog_bytes as i64);
        metrics.upload_backlog_bytes.set(backlog as i64);
        metrics.upload_failing.set(0);
        metrics
            .last_checkpoint_seconds
            .set(now_micros() as f64 / 1e6);
    }

    fn checkpoint_failed(&self, backlog: u64) {
        self.metrics.upload_errors.inc();
        self.metrics.upload_failing.set(1);
        self.metrics.upload_backlog_bytes.set(backlog as i64);
    }

    fn lease(&self, valid_until_micros: u64) {
        self.metrics
            .lease_valid_until_seconds
            .set(valid_until_micros as f64 / 1e6);
    }

    fn purged(&self, outcome: Result<usize, &str>) {
        let metrics = &self.metrics;
        match outcome {
            Ok(files) => {
                metrics.purged_files.inc_by(files as u64);
                metrics.purge_failing.set(0);
                metrics.last_purge_seconds.set(now_micros() as f64 / 1e6);
            }
            Err(_) => {
                metrics.purge_errors.inc();
                metrics.purge_failing.set(1);
            }
        }
    }

    fn ended(&self, how: &str) {
        if let Some(bar) = &self.progress {
            bar.finish_with_message(how.to_owned());
        }
    }
}
