//! Following the source across connections: a session after another, with jittered
//! backoff, until the source is caught up (`exit_at_end`), a shutdown is asked for, or a
//! failure that reconnecting cannot fix.
//!
//! A session that fails three times in a row at the same file and offset (a hole the
//! source leaves in every dump) is "stuck": said once, loudly, then retried quietly
//! until a transaction past that place is durable (with `exit_at_end`, an error).

use crate::config::ReplicaConfig;
use crate::error::{ReplicaError, chain};
use crate::observer::Observer;
use crate::pump::{Pump, SessionEnd, SpoolLimit};
use crate::session::{self, Continuity};
use backon::BackoffBuilder;
use binlogd_storage::{Durable, LocalArchive, WriterStats};
use std::time::Duration;
use tokio::sync::watch;

/// After this many failures in a row at the same place of the source's binlog, the stream
/// is stuck: reconnecting alone will not get it past.
const STUCK_AFTER: u32 = 3;

/// The engine between sessions.
pub(crate) struct Follower<'a> {
    pub config: &'a ReplicaConfig,
    pub archive: LocalArchive,
    pub observer: &'a dyn Observer,
    pub shutdown: watch::Receiver<bool>,
    pub spool: Option<SpoolLimit>,
    pub continuity: Continuity,
    /// Where the stream failed again and again, until it gets past that place.
    pub stuck_at: Option<(String, u64)>,
    /// What the archive holds durably, as the writer last said.
    pub durable: Option<Durable>,
    /// Whether the current session got as far as its dump (the observer heard so).
    pub connected: bool,
}

impl Follower<'_> {
    pub async fn follow(&mut self) -> Result<SessionEnd, ReplicaError> {
        let max_delay = self.config.max_retry_delay.max(Duration::from_millis(100));
        let new_backoff = || {
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(max_delay)
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut backoff = new_backoff();
        let mut failures = RepeatedFailure::default();
        loop {
            let durable_before = self.durable_place();
            let outcome = self.session().await;
            if std::mem::take(&mut self.connected) {
                self.observer.connected(false);
            }
            let err = match outcome {
                // Only a dump asked to stop at the end (`exit_at_end`) ends by design; any
                // other end is the server's doing, e.g. its shutdown: follow it when it is
                // back rather than exit as if done.
                Ok(SessionEnd::CaughtUp) if !self.config.exit_at_end => ReplicaError::DumpEnded,
                Ok(end) => {
                    let (word, said) = match end {
                        SessionEnd::CaughtUp => {
                            ("caught up", "everything the source has is archived")
                        }
                        SessionEnd::Shutdown => ("stopped", "stopped; the archive is consistent"),
                    };
                    self.observer.ended(word);
                    tracing::info!("{said}");
                    return Ok(end);
                }
                Err(err) => err,
            };
            if err.is_fatal() {
                self.observer.ended("failed");
                // "Not available" says nothing of which binlog: name where the dump was
                // to start.
                return Err(match &self.continuity.last_start {
                    Some(start) if err.is_binlog_unavailable() => ReplicaError::DumpRefused {
                        start: start.to_string(),
                        source: Box::new(err),
                    },
                    _ => err,
                });
            }
            if err.is_gap() {
                self.continuity.force_position = true;
            }
            let repeats = failures.note(err.place());
            // The connection worked for a while: start the backoff over. Not when it
            // failed where it failed last time: re-reading the same unfinished
            // transaction is no progress.
            if repeats == 1 && self.durable_place() != durable_before {
                backoff = new_backoff();
            }
            let delay = backoff.next().unwrap_or(max_delay);
            self.observer.reconnecting();
            if err.is_resume_by_position() {
                // Nothing is wrong: the last dump by GTID cannot give the file's exact
                // bytes, a dump by position can.
                tracing::info!(reason = %chain(&err), "continuing by file and position");
            } else if repeats >= STUCK_AFTER {
                let reason = err.stuck_reason();
                if repeats == STUCK_AFTER {
                    tracing::error!(
                        error = %chain(&err),
                        retry_in_ms = delay.as_millis() as u64,
                        "the stream is stuck: {reason}"
                    );
                    if self.config.exit_at_end {
                        self.observer.ended("stuck");
                        return Err(ReplicaError::Stuck {
                            reason,
                            source: Box::new(err),
                        });
                    }
                } else {
                    // Said once, loudly; the retries go on quietly, with backoff.
                    tracing::debug!(error = %chain(&err), "still stuck; retrying");
                }
                self.stuck_at = failures.at.clone();
                self.observer.stuck(Some(&reason));
            } else {
                tracing::warn!(
                    error = %chain(&err),
                    retry_in_ms = delay.as_millis() as u64,
                    "lost the source; reconnecting"
                );
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stop| *stop) => {
                    self.observer.ended("stopped");
                    return Ok(SessionEnd::Shutdown);
                }
            }
        }
    }

    /// One connection: connect, decide where to start, stream until something ends it.
    async fn session(&mut self) -> Result<SessionEnd, ReplicaError> {
        let dump = session::open(
            self.config,
            &self.archive,
            &mut self.continuity,
            self.observer,
        )
        .await?;
        self.observer.connected(true);
        self.connected = true;
        dump.ready?;
        let pump = Pump {
            policy: self.config.durability,
            observer: self.observer,
            shutdown: self.shutdown.clone(),
            spool: self.spool.clone(),
            durable: &mut self.durable,
            stuck_at: &mut self.stuck_at,
            reported: WriterStats::default(),
        };
        pump.run(dump.stream, dump.writer).await
    }

    fn durable_place(&self) -> Option<(String, u64)> {
        self.durable.as_ref().map(|d| (d.file.clone(), d.position))
    }
}

/// Counts failures in a row at one place of the source's binlog.
#[derive(Debug, Default)]
struct RepeatedFailure {
    at: Option<(String, u64)>,
    count: u32,
}

impl RepeatedFailure {
    /// Notes a failure (at a place, or about none) and returns how many in a row failed
    /// there: 0 for a failure about no place.
    fn note(&mut self, at: Option<(String, u64)>) -> u32 {
        if at.is_some() && at == self.at {
            self.count += 1;
        } else {
            self.count = u32::from(at.is_some());
            self.at = at;
        }
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_in_a_row_only_at_one_place() {
        let mut failures = RepeatedFailure::default();
        let at = |offset| Some(("b.000001".to_owned(), offset));
        assert_eq!(failures.note(at(100)), 1);
        assert_eq!(failures.note(at(100)), 2);
        assert_eq!(failures.note(None), 0);
        assert_eq!(failures.note(at(100)), 1);
        assert_eq!(failures.note(at(200)), 1);
    }
}
