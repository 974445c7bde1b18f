//! A plan replayed by the target server's own applier, from start to clean end: its
//! ranges staged as relay logs ([`crate::stage`]), the applier started on them with
//! parallel workers and followed to the plan's end ([`crate::apply`]), the channel and
//! relay logs removed — or, when `stop` fires first, stopped between transactions with the
//! same clean-up, so that the server never goes on applying by itself.
//!
//! [`replicate`] does the same with no staging: the server replicates from a source that
//! serves the plan's transactions (a private `binlogd serve` the binary runs, which stops
//! at the plan's cut), told to stop at the plan's end.
//!
//! What the replay is doing is told to an [`Observer`] (a progress bar, log lines); the
//! binary decides how to show it.

use crate::apply::{Feed, Progress, ReplayServer, ReplicationSource, ServerFacts};
use crate::error::RestoreError;
use crate::stage::stage_plan;
use binlogd_storage::Archive;
use binlogd_storage::plan::Plan;
use std::future::Future;
use std::time::{Duration, Instant};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The applier's parallel workers.
    pub parallel_workers: u32,
    /// How long the applier may make no progress before the replay fails.
    pub stall_timeout: Duration,
}

/// Told what a replay is doing.
pub trait Observer {
    /// `bytes` more of archived `file` are staged.
    fn staged(&mut self, file: &str, bytes: u64);
    /// Staging is done: `relay_logs` files, `bytes` in all, in `took`.
    fn staging_done(&mut self, relay_logs: usize, bytes: u64, took: Duration);
    /// The applier is at `progress`: `done` of the plan's `total` bytes are applied.
    fn applying(&mut self, progress: &Progress, done: u64, total: u64);
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Relay logs staged.
    pub relay_logs: usize,
    /// Bytes staged.
    pub staged_bytes: u64,
    /// How long staging took.
    pub staging: Duration,
}

/// Replays `plan` from `archive` into `server`, whose `facts` were read before planning.
/// `stop` is what ends a replay early (a signal's name when it fires): staged files are
/// then removed, or the applier is stopped and its channel removed, and the error says
/// what the server holds.
pub async fn replay(
    archive: &Archive,
    plan: &Plan,
    server: &mut ReplayServer,
    facts: &ServerFacts,
    options: &ReplayOptions,
    observer: &mut impl Observer,
    stop: impl Future<Output = &'static str>,
) -> Result<Replayed, RestoreError> {
    tokio::pin!(stop);
    let began = Instant::now();
    let mut staged = 0u64;
    let staging = stage_plan(archive, plan, facts, |file, bytes| {
        staged += bytes;
        observer.staged(file, bytes);
    });
    // Relay logs staged so far are removed when the staging stops half-way.
    let staged_logs = tokio::select! {
        staged = staging => staged,
        signal = &mut stop => return Err(RestoreError::Interrupted {
            signal,
            outcome: " while staging relay logs: nothing was replayed, and the staged files \
                      are removed"
                .to_owned(),
        }),
    };
    let mut relay_logs = staged_logs.map_err(|err| match err {
        RestoreError::Io { .. } => RestoreError::Staging {
            dir: facts.relay_logs.dir.clone(),
            cause: err.to_string(),
        },
        err => err,
    })?;
    let staging_took = began.elapsed();
    observer.staging_done(relay_logs.files().len(), staged, staging_took);
    let feed = Feed::RelayLogs {
        first: &relay_logs.files()[0],
    };
    start_applier(server, feed, plan, options).await?;
    // The channel names them now, and removing it removes them.
    relay_logs.keep();
    follow(archive, plan, server, options, observer, &mut stop).await?;
    Ok(Replayed {
        relay_logs: relay_logs.files().len(),
        staged_bytes: staged,
        staging: staging_took,
    })
}

/// Replays `plan` into `server` by replication from `source`, which serves the plan's
/// transactions and nothing after them; the applier is told to stop at the plan's end
/// too. `stop` as for [`replay`]. MySQL asks its source for what its `gtid_executed`
/// lacks, so that must be where the plan starts.
pub async fn replicate(
    archive: &Archive,
    plan: &Plan,
    server: &mut ReplayServer,
    source: &ReplicationSource,
    options: &ReplayOptions,
    observer: &mut impl Observer,
    stop: impl Future<Output = &'static str>,
) -> Result<(), RestoreError> {
    tokio::pin!(stop);
    if server.flavour() == binlogd_parser::Flavour::MySql {
        let executed = server.applied().await?;
        if !executed.includes_all(&plan.start) {
            return Err(RestoreError::Start(format!(
                "replaying by replication into MySQL starts from the server's gtid_executed \
                 ({executed}), which lacks part of the start asked for ({}): restore from \
                 staged relay logs (without --via-replication), or start where the server is",
                plan.start
            )));
        }
    }
    let feed = Feed::Replication {
        source,
        until: &plan.end,
    };
    start_applier(server, feed, plan, options).await?;
    follow(archive, plan, server, options, observer, &mut stop).await
}

/// Starts the applier on `feed`; if the server refuses, removes whatever was configured.
async fn start_applier(
    server: &mut ReplayServer,
    feed: Feed<'_>,
    plan: &Plan,
    options: &ReplayOptions,
) -> Result<(), RestoreError> {
    if let Err(refused) = server
        .start(feed, options.parallel_workers, &plan.start)
        .await
    {
        // Leave the server as it was: no channel, no settings changed.
        if let Err(e) = server.clean_up().await {
            tracing::warn!(error = %e, "removing the half-configured channel");
        }
        return Err(refused);
    }
    Ok(())
}

/// Follows the applier to the plan's end (or the signal `stop`), then removes the
/// channel; names the failing transaction if the applier stops on one.
async fn follow(
    archive: &Archive,
    plan: &Plan,
    server: &mut ReplayServer,
    options: &ReplayOptions,
    observer: &mut impl Observer,
    stop: &mut (impl Future<Output = &'static str> + Unpin),
) -> Result<(), RestoreError> {
    let total: u64 = plan.pieces.iter().map(|p| p.end - p.start).sum();
    let following = server.wait_for(&plan.end, options.stall_timeout, |progress| {
        let done = applied_bytes(plan, &progress.at.0, progress.at.1);
        observer.applying(progress, done, total);
    });
    // The applier's outcome, or the signal that came first.
    let outcome = tokio::select! {
        outcome = following => Ok(outcome),
        signal = stop => Err(signal),
    };
    let cleaned = server.clean_up().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(signal) => {
            // Stopped between transactions: what the server holds is a state of the source.
            let applied = server.applied().await;
            cleaned?;
            return Err(RestoreError::Interrupted {
                signal,
                outcome: format!(
                    ": the applier is stopped and replication removed; the server holds {} (the \
                     target was {}). Run the same restore again to go on",
                    applied.map_or_else(|e| format!("? ({e})"), |a| a.to_string()),
                    plan.end
                ),
            });
        }
    };
    if let Err(RestoreError::ApplyFailed {
        file,
        position,
        errno,
        message,
        ..
    }) = outcome
    {
        let (gtid, position) = failing_transaction(archive, plan, &file, position)
            .await
            .unwrap_or_else(|| ("?".into(), position));
        return Err(RestoreError::TransactionFailed {
            gtid,
            file,
            position,
            errno,
            message,
        });
    }
    outcome?;
    cleaned?;
    Ok(())
}

/// How many of the plan's bytes lie before `position` of master file `file`: the ranges
/// of earlier pieces whole, and the part of the current one up to the position.
pub fn applied_bytes(plan: &Plan, file: &str, position: u64) -> u64 {
    let mut done = 0;
    for piece in &plan.pieces {
        if piece.file == file && position >= piece.start && position <= piece.end {
            return done + (position - piece.start);
        }
        done += piece.end - piece.start;
    }
    // Not in the plan's ranges yet (the applier has not begun): nothing done.
    if plan.pieces.iter().any(|p| p.file == file) {
        done
    } else {
        0
    }
}

/// The GTID and start of the first transaction of archived `file` at or after
/// `position`, from the archive's index: the one the applier failed on, when `position` is
/// where it stopped (the end of what it applied, which can lie before events that belong to
/// no transaction, such as a file's PREVIOUS_GTIDS).
async fn failing_transaction(
    archive: &Archive,
    plan: &Plan,
    file: &str,
    position: u64,
) -> Option<(String, u64)> {
    let piece = plan.pieces.iter().find(|p| p.file == file)?;
    let files = archive.files().await.ok()?;
    let archived = files
        .iter()
        .find(|f| f.epoch == piece.epoch && f.name == file)?;
    let index = archive.file_index(archived).await.ok()?;
    index
        .transactions
        .iter()
        .find(|t| t.start >= position)
        .and_then(|t| Some((t.gtid?.to_string(), t.start)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlogd_storage::GtidState;
    use binlogd_storage::plan::Piece;

    fn piece(file: &str, start: u64, end: u64) -> Piece {
        Piece {
            epoch: "0001-server1".into(),
            file: file.into(),
            start,
            end,
            transactions: 1,
            whole_file: false,
            first_commit_micros: None,
            last_commit_micros: None,
        }
    }

    #[test]
    fn progress_counts_the_ranges_behind_the_applier() {
        let plan = Plan {
            start: GtidState::None,
            pieces: vec![piece("b.000001", 500, 1500), piece("b.000002", 4, 2004)],
            end: GtidState::None,
            stop: None,
            target_reached: true,
            transactions: 2,
            indexes_read: 0,
        };
        assert_eq!(applied_bytes(&plan, "b.000001", 500), 0);
        assert_eq!(applied_bytes(&plan, "b.000001", 900), 400);
        assert_eq!(applied_bytes(&plan, "b.000002", 1004), 2000);
        assert_eq!(applied_bytes(&plan, "b.000002", 2004), 3000);
        assert_eq!(applied_bytes(&plan, "", 0), 0, "not begun");
    }
}
