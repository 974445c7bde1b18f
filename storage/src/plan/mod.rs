//! Planning a replay from the archive's index, and the walk that also makes the archive's
//! [`timeline()`] (what it records is in [`timeline`](mod@timeline)).
//!
//! A restore starts from what a base backup holds (a GTID state) and wants everything after
//! it up to a target: a GTID, the transaction before a GTID, a time, a byte position, or the
//! latest archived transaction. [`plan`] answers with the byte ranges of archived files that
//! hold exactly those transactions, in replay order. It reads the per-file summaries first
//! (GTID state before and after, first and last commit time) and opens a file's transaction
//! index only where a summary cannot decide: the file the start falls in, the file the target
//! falls in, and files whose tail a failover dropped. Everything in between is taken whole.
//!
//! The walk itself does no I/O and is not async: a [`Planner`] stops where it needs an index
//! ([`Step::NeedIndex`]) and resumes where it stopped once given it. [`plan`] and
//! [`timeline()`] drive it, reading each index it asks for from an [`IndexSource`] (a local
//! or object archive).
//!
//! Archive order is epoch by epoch (one epoch per source server), file by file. Rules:
//!
//! - A transaction the state already holds is skipped (a new primary's binlog repeats what it
//!   replicated from the old one; MariaDB states compare per domain by sequence number).
//! - Continuity: a file is used only if the state holds everything its GTID_LIST /
//!   PREVIOUS_GTIDS says came before it; otherwise transactions are missing (a gap).
//! - A failover can drop the old primary's last transactions (they never reached the new
//!   primary). The next epoch's first GTID state says what the new primary has; the old
//!   epoch's transactions outside it are not part of the history that continues, so a plan
//!   leaves them out and [`timeline()`] reports them as lost.
//! - Targets cut in archive order: `--to-time T` stops before the first transaction committed
//!   after T, as `mariadb-binlog --stop-datetime` does; a GTID target stops just after the
//!   transaction that completes it.

use crate::archive::{Archive, ArchiveFile};
use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::FileIndex;
use epochs::Epochs;
use given::{Given, Halt};
pub use model::{Piece, Plan, PlanError, StopAt, StopPoint, format_micros};
pub use timeline::Gap;
use timeline::Timeline;
use walk::{Walk, check_target};

mod epochs;
mod given;
mod model;
#[cfg(test)]
mod tests;
pub mod timeline;
mod walk;

/// Where a plan reads each file's transaction index.
pub trait IndexSource {
    /// The index of `file`.
    fn file_index(
        &self,
        file: &ArchiveFile,
    ) -> impl Future<Output = Result<FileIndex, StorageError>>;
}

impl IndexSource for Archive {
    fn file_index(
        &self,
        file: &ArchiveFile,
    ) -> impl Future<Output = Result<FileIndex, StorageError>> {
        Archive::file_index(self, file)
    }
}

/// What a [`Planner`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The index of the file at this position of the archive's file list: read it and
    /// give it with [`Planner::give_index`].
    NeedIndex(usize),
    /// The walk is done: take the result with [`Planner::into_plan`] or
    /// [`Planner::into_timeline`].
    Done,
}

/// The planner, free of I/O: it walks the archive's file summaries and, where a summary
/// cannot decide, stops and asks for that file's index ([`Step::NeedIndex`]), resuming
/// where it stopped once given it. [`plan`] and [`timeline()`] drive it over an
/// [`IndexSource`].
#[derive(Debug)]
pub struct Planner<'a> {
    files: &'a [ArchiveFile],
    walk: Walk<'a>,
    epochs: Epochs,
    given: Given,
}

impl<'a> Planner<'a> {
    /// A planner for a replay from `start` (the archive's first state when `None`) to
    /// `target`. Refuses a target that cannot be reached before reading any index.
    pub fn for_plan(
        files: &'a [ArchiveFile],
        start: Option<&GtidState>,
        target: &'a StopAt,
    ) -> Result<Planner<'a>, PlanError> {
        let first = files.first().ok_or(PlanError::EmptyArchive)?;
        let start = start.cloned().unwrap_or_else(|| first.gtids_before.clone());
        check_target(files, &start, target)?;
        Ok(Planner {
            files,
            walk: Walk::new(start, target, false),
            epochs: Epochs::new(files),
            given: Given::default(),
        })
    }

    /// A planner for the archive's timeline from `start` (its first state when `None`).
    pub fn for_timeline(
        files: &'a [ArchiveFile],
        start: Option<&GtidState>,
    ) -> Result<Planner<'a>, PlanError> {
        let first = files.first().ok_or(PlanError::EmptyArchive)?;
        let start = start.cloned().unwrap_or_else(|| first.gtids_before.clone());
        Ok(Planner {
            files,
            walk: Walk::new(start, &StopAt::Latest, true),
            epochs: Epochs::new(files),
            given: Given::default(),
        })
    }

    /// Walks on until the end or until an index is needed.
    pub fn step(&mut self) -> Result<Step, PlanError> {
        match self.walk.run(self.files, &mut self.epochs, &self.given) {
            Ok(()) => Ok(Step::Done),
            Err(Halt::NeedIndex(i)) => Ok(Step::NeedIndex(i)),
            Err(Halt::Failed(e)) => Err(e),
        }
    }

    /// Gives the index of the file at position `i` (as asked by [`Step::NeedIndex`]).
    pub fn give_index(&mut self, i: usize, index: FileIndex) {
        if self.given.0.insert(i, index).is_none() {
            self.walk.plan.indexes_read += 1;
        }
    }

    /// The plan, once [`Planner::step`] said [`Step::Done`].
    pub fn into_plan(self) -> Result<Plan, PlanError> {
        let mut walk = self.walk;
        let target = walk.target;
        if !walk.plan.target_reached {
            match target {
                StopAt::Latest | StopAt::Time(_) => {}
                _ => {
                    return Err(PlanError::TargetNotInArchive {
                        target: target.clone(),
                        detail: format!("the archive ends at {}", walk.state),
                    });
                }
            }
            // `--latest` is reached by definition once the archive is exhausted.
            walk.plan.target_reached = *target == StopAt::Latest;
        }
        walk.check_gtid_target_exact()?;
        walk.plan.end = walk.state;
        Ok(walk.plan)
    }

    /// The timeline, once [`Planner::step`] said [`Step::Done`].
    pub fn into_timeline(self) -> Timeline {
        self.walk.timeline
    }

    /// Steps until done, reading each index it asks for from `indexes`.
    async fn drive(&mut self, indexes: &impl IndexSource) -> Result<(), PlanError> {
        while let Step::NeedIndex(i) = self.step()? {
            let index = indexes.file_index(&self.files[i]).await?;
            self.give_index(i, index);
        }
        Ok(())
    }
}

/// Makes the plan from `start` (the archive's first state when `None`) to `target`,
/// reading the indexes the [`Planner`] asks for from `indexes`.
pub async fn plan(
    files: &[ArchiveFile],
    indexes: &impl IndexSource,
    start: Option<&GtidState>,
    target: &StopAt,
) -> Result<Plan, PlanError> {
    let mut planner = Planner::for_plan(files, start, target)?;
    planner.drive(indexes).await?;
    planner.into_plan()
}

/// The archive's history from `start` (its first state when `None`): continuous stretches,
/// the gaps and server changes between them, and how far a replay from `start` gets.
pub async fn timeline(
    files: &[ArchiveFile],
    indexes: &impl IndexSource,
    start: Option<&GtidState>,
) -> Result<Timeline, PlanError> {
    let mut planner = Planner::for_timeline(files, start)?;
    planner.drive(indexes).await?;
    Ok(planner.into_timeline())
}
