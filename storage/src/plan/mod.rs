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
use crate::index::{FileIndex, TransactionEntry};
use binlogd_parser::Gtid;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
pub use timeline::Gap;
use timeline::{Event, Stretch, Timeline, describe_gtids};

pub mod timeline;

/// Where a replay is asked to stop (the command line's `--to-time`, `--to-gtid`, ...);
/// the plan works out the [`StopPoint`] in the archive that honours it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAt {
    /// Up to and including these GTIDs (`--to-gtid`).
    Gtids(GtidState),
    /// Everything before this transaction, which is left out (`--before-gtid`).
    BeforeGtid(Gtid),
    /// Every transaction up to the first one committed after this time, µs since the Unix
    /// epoch (`--to-time`, `search --time`).
    Time(u64),
    /// Up to a byte offset (a transaction boundary) of a file (`--to-position`).
    Position {
        /// The epoch, when the file name alone is ambiguous.
        epoch: Option<String>,
        /// The server's file name.
        file: String,
        /// The offset.
        offset: u64,
    },
    /// Everything archived (`--latest`).
    Latest,
}

impl fmt::Display for StopAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopAt::Gtids(state) => write!(f, "GTID {state}"),
            StopAt::BeforeGtid(gtid) => write!(f, "before GTID {gtid}"),
            StopAt::Time(micros) => write!(f, "time {}", format_micros(*micros)),
            StopAt::Position {
                epoch,
                file,
                offset,
            } => match epoch {
                Some(epoch) => write!(f, "position {epoch}/{file}:{offset}"),
                None => write!(f, "position {file}:{offset}"),
            },
            StopAt::Latest => f.write_str("the latest archived transaction"),
        }
    }
}

/// A byte range of one archived file to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// The epoch of the file.
    pub epoch: String,
    /// The file.
    pub file: String,
    /// The offset of the first event to replay; 4 (just past the magic number) when the
    /// range starts at the file's first event.
    pub start: u64,
    /// Just past the last event to replay.
    pub end: u64,
    /// How many transactions the range holds.
    pub transactions: u64,
    /// Whether the range is the whole file as archived.
    pub whole_file: bool,
    /// The first commit time in the range, µs since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_commit_micros: Option<u64>,
    /// The last commit time in the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_micros: Option<u64>,
}

/// The last transaction a plan applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopPoint {
    /// Its epoch.
    pub epoch: String,
    /// Its file.
    pub file: String,
    /// Just past its last event: where the replay stops.
    pub offset: u64,
    /// Its GTID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<Gtid>,
    /// Its commit time, µs since the Unix epoch.
    pub commit_micros: u64,
}

/// What a replay from a start state to a target needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The state the replay starts from.
    pub start: GtidState,
    /// The ranges to replay, in order.
    pub pieces: Vec<Piece>,
    /// The state after the replay.
    pub end: GtidState,
    /// The last transaction applied; `None` when nothing is to be applied.
    pub stop: Option<StopPoint>,
    /// Whether the target is inside the archive. When it is not (a time or `--latest`
    /// beyond the last archived transaction), the plan goes as far as the archive does.
    pub target_reached: bool,
    /// How many transactions the plan applies.
    pub transactions: u64,
    /// How many per-file transaction indexes were read to make the plan.
    pub indexes_read: u64,
}

/// Why no plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The archive could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The archive is empty.
    #[error("the archive holds no binlog files")]
    EmptyArchive,
    /// The start state already holds the target.
    #[error("the target ({target}) is before the start point: {detail}")]
    TargetBeforeStart {
        /// The target.
        target: StopAt,
        /// What shows it.
        detail: String,
    },
    /// The archive lacks transactions between the state reached and a file.
    #[error("{0}")]
    Gap(Box<Gap>),
    /// The target names a GTID, file or offset the archive does not have.
    #[error("{target} is not in the archive: {detail}")]
    TargetNotInArchive {
        /// The target.
        target: StopAt,
        /// What the archive has instead.
        detail: String,
    },
}

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

/// What of an epoch's history the next epoch's server has: the state its first file
/// follows, and the transactions its binlog repeats from the old server (found exactly, as
/// MariaDB sequence numbers alone cannot tell the old primary's `0-1-5` from the new
/// one's `0-2-5`).
#[derive(Debug, Clone, Default)]
struct Survivors {
    state: GtidState,
    repeated: HashSet<Gtid>,
}

impl Survivors {
    fn includes(&self, gtid: &Gtid) -> bool {
        self.state.includes(gtid) || self.repeated.contains(gtid)
    }

    /// Whether all of `state` surely survived (without looking at single transactions).
    fn includes_all(&self, state: &GtidState) -> bool {
        self.state.includes_all(state)
    }
}

/// Epoch boundaries of an archive, and what survived each of them, found on demand.
#[derive(Debug)]
struct Epochs {
    /// For each file, where the next epoch's files begin (if there is a next epoch).
    next_epoch_start: Vec<Option<usize>>,
    survivors: HashMap<usize, Option<Survivors>>,
}

impl Epochs {
    fn new(files: &[ArchiveFile]) -> Epochs {
        let mut next_epoch_start = vec![None; files.len()];
        let mut next = None;
        for i in (0..files.len()).rev() {
            if i + 1 < files.len() && files[i + 1].epoch != files[i].epoch {
                next = Some(i + 1);
            }
            next_epoch_start[i] = next;
        }
        Epochs {
            next_epoch_start,
            survivors: HashMap::new(),
        }
    }

    /// What of file `i`'s epoch the next epoch kept; `None` for the last epoch (or when the
    /// next server's binlogs carry no GTID state to tell).
    fn survivors_for(
        &mut self,
        files: &[ArchiveFile],
        i: usize,
        given: &Given,
    ) -> Result<Option<&Survivors>, Halt> {
        let Some(next) = self.next_epoch_start[i] else {
            return Ok(None);
        };
        if let std::collections::hash_map::Entry::Vacant(entry) = self.survivors.entry(next) {
            entry.insert(find_survivors(files, next, given)?);
        }
        Ok(self.survivors.get(&next).and_then(Option::as_ref))
    }
}

/// Reads the first files of the epoch starting at `next` for the transactions its server
/// repeats from the epoch before.
fn find_survivors(
    files: &[ArchiveFile],
    next: usize,
    given: &Given,
) -> Result<Option<Survivors>, Halt> {
    let first = &files[next];
    if first.gtids_before.is_empty() {
        return Ok(None);
    }
    let old_end = &files[next - 1].gtids_after;
    let mut survivors = Survivors {
        state: first.gtids_before.clone(),
        repeated: HashSet::new(),
    };
    for (j, file) in files
        .iter()
        .enumerate()
        .skip(next)
        .take_while(|(_, f)| f.epoch == first.epoch)
    {
        if survivors.state.includes_all(old_end) || file.gtids_before.includes_all(old_end) {
            break;
        }
        let index = given.index(j)?;
        survivors.repeated.extend(
            index
                .transactions
                .iter()
                .filter_map(|t| t.gtid)
                .filter(|g| old_end.includes(g)),
        );
    }
    Ok(Some(survivors))
}

/// The indexes a walk has been given, by file position.
#[derive(Debug, Default)]
struct Given(HashMap<usize, FileIndex>);

impl Given {
    /// File `i`'s index, or a halt asking for it.
    fn index(&self, i: usize) -> Result<&FileIndex, Halt> {
        self.0.get(&i).ok_or(Halt::NeedIndex(i))
    }
}

/// Why a walk stopped before the end.
#[derive(Debug)]
enum Halt {
    /// It needs file `i`'s index to go on; given it, the walk resumes where it stopped.
    NeedIndex(usize),
    /// The plan cannot be made.
    Failed(PlanError),
}

impl From<PlanError> for Halt {
    fn from(e: PlanError) -> Self {
        Halt::Failed(e)
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

/// Refuses targets that cannot be reached from `start` before reading any index.
fn check_target(
    files: &[ArchiveFile],
    start: &GtidState,
    target: &StopAt,
) -> Result<(), PlanError> {
    let before_start = |detail: String| PlanError::TargetBeforeStart {
        target: target.clone(),
        detail,
    };
    match target {
        StopAt::Gtids(gtids) if start.includes_all(gtids) => Err(before_start(format!(
            "the start state {start} already holds it"
        ))),
        StopAt::BeforeGtid(gtid) if start.includes(gtid) => Err(before_start(format!(
            "the start state {start} already holds it"
        ))),
        StopAt::Position { epoch, file, .. } => {
            let matching: Vec<&ArchiveFile> = files
                .iter()
                .filter(|f| f.name == *file && epoch.as_ref().is_none_or(|e| *e == f.epoch))
                .collect();
            match matching.as_slice() {
                [] => Err(PlanError::TargetNotInArchive {
                    target: target.clone(),
                    detail: "no archived file has that name".into(),
                }),
                [_] => Ok(()),
                several => Err(PlanError::TargetNotInArchive {
                    target: target.clone(),
                    detail: format!(
                        "epochs {} each have a file of that name: write EPOCH/FILE:OFFSET",
                        several
                            .iter()
                            .map(|f| f.epoch.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        }
        _ => Ok(()),
    }
}

/// One pass over the archive in order, applying transactions to a GTID state: the plan
/// and the timeline are two views of it. It may stop at a file for want of an index and
/// resume there: nothing of a file is recorded until everything it needs is given.
#[derive(Debug)]
struct Walk<'t> {
    /// The next file to walk.
    next: usize,
    /// Whether the server change before `next` (if any) is recorded.
    entered_next: bool,
    state: GtidState,
    target: &'t StopAt,
    plan: Plan,
    timeline: Timeline,
    /// Timeline mode: record a gap and go on past it instead of failing.
    tolerate_gaps: bool,
    /// Whether a gap was crossed (nothing after it is recoverable from the start).
    gap_crossed: bool,
    /// Whether the last stretch may grow (no break since it).
    stretch_open: bool,
    /// The state a new stretch starts from.
    stretch_from: GtidState,
    /// Transactions of the current epoch its successor never had.
    lost: Vec<Gtid>,
    /// All such transactions met.
    all_lost: HashSet<Gtid>,
    /// MariaDB GTIDs of a `Gtids` target met exactly on the way.
    target_gtids_seen: Vec<Gtid>,
}

impl<'t> Walk<'t> {
    fn new(start: GtidState, target: &'t StopAt, tolerate_gaps: bool) -> Walk<'t> {
        Walk {
            next: 0,
            entered_next: false,
            state: start.clone(),
            target,
            plan: Plan {
                start: start.clone(),
                pieces: Vec::new(),
                end: GtidState::None,
                stop: None,
                target_reached: false,
                transactions: 0,
                indexes_read: 0,
            },
            timeline: Timeline {
                start: start.clone(),
                history: Vec::new(),
                recoverable_to: start.clone(),
                last_recoverable_micros: None,
            },
            tolerate_gaps,
            gap_crossed: false,
            stretch_open: false,
            stretch_from: start,
            lost: Vec::new(),
            all_lost: HashSet::new(),
            target_gtids_seen: Vec::new(),
        }
    }

    /// Walks from `next` to the end (or the target), or halts for an index.
    fn run(
        &mut self,
        files: &[ArchiveFile],
        epochs: &mut Epochs,
        given: &Given,
    ) -> Result<(), Halt> {
        while self.next < files.len() && !self.plan.target_reached {
            let i = self.next;
            if i > 0 && !self.entered_next && files[i - 1].epoch != files[i].epoch {
                self.server_change(&files[i - 1], &files[i]);
            }
            self.entered_next = true;
            self.file(files, i, epochs, given)?;
            self.next += 1;
            self.entered_next = false;
        }
        Ok(())
    }

    fn server_change(&mut self, old: &ArchiveFile, new: &ArchiveFile) {
        self.timeline.history.push(Event::ServerChange {
            from_epoch: old.epoch.clone(),
            to_epoch: new.epoch.clone(),
            to_server_id: new.source_server_id,
            at: new.gtids_before.clone(),
            lost: describe_gtids(&std::mem::take(&mut self.lost)),
            first_commit_micros: new.first_commit_micros,
        });
        self.stretch_open = false;
        self.stretch_from = self.state.clone();
    }

    fn file(
        &mut self,
        files: &[ArchiveFile],
        i: usize,
        epochs: &mut Epochs,
        given: &Given,
    ) -> Result<(), Halt> {
        let file = &files[i];
        let has_gtids = !file.gtids_after.is_empty();
        let is_target_file = matches!(self.target, StopAt::Position { epoch, file: name, .. }
            if *name == file.name && epoch.as_ref().is_none_or(|e| *e == file.epoch));
        if has_gtids && self.state.includes_all(&file.gtids_after) {
            // The start already holds the whole file.
            return Ok(self.covered_file(file, is_target_file)?);
        }
        // Even a file without transactions says, by its GTID list, what came before it:
        // a server's newest file is often empty, and a missing file before it would
        // otherwise pass unnoticed, the plan ending early and calling it the latest.
        let gap = (!self.state.includes_all(&file.gtids_before)).then(|| Gap {
            epoch: file.epoch.clone(),
            file: file.name.clone(),
            reached: self.state.clone(),
            needed: file.gtids_before.clone(),
            missing: self.state.describe_missing(&file.gtids_before),
        });
        if let Some(gap) = &gap
            && !self.tolerate_gaps
        {
            return Err(PlanError::Gap(Box::new(gap.clone())).into());
        }
        // Decide what the file needs from the state past the gap, without recording
        // anything yet: a walk halted for an index comes back to this file as it was.
        let state_past_gap = gap.as_ref().map(|_| self.state.union(&file.gtids_before));
        let state = state_past_gap.as_ref().unwrap_or(&self.state);
        let needs_transactions = file.transactions > 0 || is_target_file;
        let mut survivors = None;
        let mut index = None;
        if needs_transactions {
            let target_inside = is_target_file
                || match self.target {
                    StopAt::Gtids(gtids) => state.union(&file.gtids_after).includes_all(gtids),
                    StopAt::BeforeGtid(gtid) => file.gtids_after.includes(gtid),
                    StopAt::Time(limit) => file.last_commit_micros.is_some_and(|c| c > *limit),
                    StopAt::Position { .. } | StopAt::Latest => false,
                };
            let partly_held = !file.gtids_before.includes_all(state);
            survivors = epochs.survivors_for(files, i, given)?;
            let tail_lost = survivors.is_some_and(|s| !s.includes_all(&file.gtids_after));
            if target_inside || partly_held || tail_lost || !has_gtids {
                index = Some(given.index(i)?);
            }
        }
        // Everything needed is here: record.
        if let (Some(gap), Some(state)) = (gap, state_past_gap) {
            self.timeline.history.push(Event::Gap(gap));
            self.gap_crossed = true;
            self.stretch_open = false;
            self.state = state;
            self.stretch_from = self.state.clone();
        }
        if !needs_transactions {
            return Ok(());
        }
        if let Some(index) = index {
            return Ok(self.file_by_transaction(file, index, survivors, is_target_file)?);
        }
        // The whole file, decided from its summary.
        self.state = self.state.union(&file.gtids_after);
        self.applied(
            Piece {
                epoch: file.epoch.clone(),
                file: file.name.clone(),
                start: 4,
                end: file.indexed_end,
                transactions: file.transactions,
                whole_file: true,
                first_commit_micros: file.first_commit_micros,
                last_commit_micros: file.last_commit_micros,
            },
            file.source_server_id,
        );
        // From a summary, the last transaction ends where the indexed part does.
        self.plan.stop = Some(StopPoint {
            epoch: file.epoch.clone(),
            file: file.name.clone(),
            offset: file.indexed_end,
            gtid: None,
            commit_micros: file.last_commit_micros.unwrap_or(0),
        });
        Ok(())
    }

    /// Whether any range was applied yet (before that, a held transaction later than a
    /// time target means the target is behind the start).
    fn applied_any(&self) -> bool {
        !self.plan.pieces.is_empty()
    }

    /// Records a range as applied: in the plan, and in the timeline's stretches.
    fn applied(&mut self, piece: Piece, source_server_id: u32) {
        self.plan.transactions += piece.transactions;
        match self.timeline.history.last_mut() {
            Some(Event::Stretch(stretch)) if self.stretch_open => {
                stretch.last_file = piece.file.clone();
                stretch.to = self.state.clone();
                stretch.last_commit_micros =
                    piece.last_commit_micros.or(stretch.last_commit_micros);
                stretch.transactions += piece.transactions;
            }
            _ => {
                self.timeline.history.push(Event::Stretch(Stretch {
                    epoch: piece.epoch.clone(),
                    source_server_id,
                    first_file: piece.file.clone(),
                    last_file: piece.file.clone(),
                    from: self.stretch_from.clone(),
                    to: self.state.clone(),
                    first_commit_micros: piece.first_commit_micros,
                    last_commit_micros: piece.last_commit_micros,
                    transactions: piece.transactions,
                }));
                self.stretch_open = true;
            }
        }
        if !self.gap_crossed {
            self.timeline.recoverable_to = self.state.clone();
            if piece.last_commit_micros.is_some() {
                self.timeline.last_recoverable_micros = piece.last_commit_micros;
            }
        }
        self.plan.pieces.push(piece);
    }

    /// A file the start state holds entirely: only a target inside it matters, and it
    /// would be behind the start.
    fn covered_file(&mut self, file: &ArchiveFile, is_target_file: bool) -> Result<(), PlanError> {
        if self.applied_any() {
            return Ok(());
        }
        let before_start = |detail: String| PlanError::TargetBeforeStart {
            target: self.target.clone(),
            detail,
        };
        if is_target_file {
            return Err(before_start(format!(
                "the start state {} already holds all of {}/{}",
                self.state, file.epoch, file.name
            )));
        }
        if let (StopAt::Time(limit), Some(last)) = (self.target, file.last_commit_micros)
            && last > *limit
        {
            return Err(before_start(format!(
                "the start state {} holds transactions of {}/{} committed up to {}",
                self.state,
                file.epoch,
                file.name,
                format_micros(last)
            )));
        }
        Ok(())
    }

    fn file_by_transaction(
        &mut self,
        file: &ArchiveFile,
        index: &FileIndex,
        survivors: Option<&Survivors>,
        is_target_file: bool,
    ) -> Result<(), PlanError> {
        let target_offset = match self.target {
            StopAt::Position { offset, .. } if is_target_file => Some(*offset),
            _ => None,
        };
        let indexed: Vec<&TransactionEntry> = index
            .transactions
            .iter()
            .take_while(|t| t.end <= file.indexed_end)
            .collect();
        let mut run: Option<Piece> = None;
        let mut skipped_before_run = false;
        for (position, t) in indexed.iter().enumerate() {
            if let Some(offset) = target_offset {
                if t.start >= offset {
                    self.plan.target_reached = true;
                    break;
                }
                if offset < t.end {
                    return Err(PlanError::TargetNotInArchive {
                        target: self.target.clone(),
                        detail: format!(
                            "offset {offset} is inside a transaction{}; the nearest boundaries are {} and {}",
                            t.gtid.map(|g| format!(" ({g})")).unwrap_or_default(),
                            t.start,
                            t.end
                        ),
                    });
                }
            }
            if let Some(gtid) = &t.gtid {
                let held = self.state.includes(gtid);
                let lost = !held && survivors.is_some_and(|s| !s.includes(gtid));
                if held || lost {
                    if held
                        && !self.applied_any()
                        && let StopAt::Time(limit) = self.target
                        && t.commit_micros > *limit
                    {
                        return Err(PlanError::TargetBeforeStart {
                            target: self.target.clone(),
                            detail: format!(
                                "the start state {} holds {gtid}, committed {}",
                                self.state,
                                format_micros(t.commit_micros)
                            ),
                        });
                    }
                    if lost {
                        self.lost.push(*gtid);
                        self.all_lost.insert(*gtid);
                    }
                    if let Some(piece) = run.take() {
                        self.applied(piece, file.source_server_id);
                    }
                    skipped_before_run = true;
                    continue;
                }
                if *self.target == StopAt::BeforeGtid(*gtid) {
                    self.plan.target_reached = true;
                    break;
                }
            }
            if let StopAt::Time(limit) = self.target
                && t.commit_micros > *limit
            {
                self.plan.target_reached = true;
                break;
            }
            // Apply it.
            let piece = run.get_or_insert_with(|| Piece {
                epoch: file.epoch.clone(),
                file: file.name.clone(),
                start: if position == 0 && !skipped_before_run {
                    4
                } else {
                    t.start
                },
                end: t.end,
                transactions: 0,
                whole_file: false,
                first_commit_micros: Some(t.commit_micros),
                last_commit_micros: None,
            });
            piece.end = t.end;
            piece.transactions += 1;
            piece.last_commit_micros = Some(t.commit_micros);
            self.plan.stop = Some(StopPoint {
                epoch: file.epoch.clone(),
                file: file.name.clone(),
                offset: t.end,
                gtid: t.gtid,
                commit_micros: t.commit_micros,
            });
            if let Some(gtid) = t.gtid {
                self.state.add(gtid);
                if let StopAt::Gtids(GtidState::Mariadb(wanted)) = self.target
                    && let Gtid::Mariadb(g) = gtid
                    && wanted.iter().any(|w| *w == g)
                {
                    self.target_gtids_seen.push(gtid);
                }
                if let StopAt::BeforeGtid(wanted) = self.target
                    && self.state.includes(wanted)
                {
                    return Err(PlanError::TargetNotInArchive {
                        target: self.target.clone(),
                        detail: format!(
                            "{}/{} goes from before it straight to {gtid}",
                            file.epoch, file.name
                        ),
                    });
                }
            }
            if let StopAt::Gtids(wanted) = self.target
                && self.state.includes_all(wanted)
            {
                self.plan.target_reached = true;
                break;
            }
        }
        let last_end = indexed.last().map_or(4, |t| t.end);
        if let Some(offset) = target_offset
            && !self.plan.target_reached
        {
            if offset != last_end && offset != file.indexed_end {
                return Err(PlanError::TargetNotInArchive {
                    target: self.target.clone(),
                    detail: format!(
                        "{}/{} is archived and indexed up to offset {}",
                        file.epoch,
                        file.name,
                        last_end.max(file.indexed_end)
                    ),
                });
            }
            self.plan.target_reached = true;
        }
        if let Some(mut piece) = run.take() {
            let ran_to_the_end = !self.plan.target_reached
                && last_end == piece.end
                && indexed.len() == index.transactions.len();
            if ran_to_the_end {
                // Take the file's trailing events (its closing ROTATE) like a whole file.
                piece.end = piece.end.max(file.indexed_end);
                piece.whole_file = piece.start == 4;
                if let Some(stop) = &mut self.plan.stop {
                    stop.offset = piece.end;
                }
            }
            self.applied(piece, file.source_server_id);
        }
        Ok(())
    }

    /// A MariaDB GTID target must name transactions that exist: reaching a later sequence
    /// number of the domain is not the same as meeting the GTID.
    fn check_gtid_target_exact(&self) -> Result<(), PlanError> {
        let StopAt::Gtids(GtidState::Mariadb(wanted)) = self.target else {
            return Ok(());
        };
        for gtid in wanted.iter() {
            let as_gtid = Gtid::Mariadb(*gtid);
            let met = self.target_gtids_seen.contains(&as_gtid);
            if !met && !self.plan.start.includes(&as_gtid) {
                let reached = match &self.state {
                    GtidState::Mariadb(pos) => pos.get(gtid.domain_id).copied(),
                    _ => None,
                };
                let detail = if self.all_lost.contains(&as_gtid) {
                    "a failover dropped it: the next server never had it".to_owned()
                } else {
                    format!(
                        "no transaction {gtid} was archived; domain {} went to {}",
                        gtid.domain_id,
                        reached.map_or("nothing".to_owned(), |g| g.to_string())
                    )
                };
                return Err(PlanError::TargetNotInArchive {
                    target: self.target.clone(),
                    detail,
                });
            }
        }
        Ok(())
    }
}

/// A time for people: RFC 3339 in UTC, to the microsecond when it has them.
pub fn format_micros(micros: u64) -> String {
    i64::try_from(micros)
        .ok()
        .and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
        .map_or_else(|| format!("{micros} µs"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::FileState;
    use std::collections::HashMap;

    /// An in-memory archive: files built from `(gtid, commit second)` lists.
    #[derive(Default)]
    struct Fixture {
        files: Vec<ArchiveFile>,
        indexes: HashMap<(String, String), FileIndex>,
    }

    const T0: u64 = 1_763_868_000_000_000;

    fn at(second: u64) -> u64 {
        T0 + second * 1_000_000
    }

    impl Fixture {
        /// Adds a file; each transaction is 100 bytes, the first at offset 256.
        fn file(&mut self, epoch: &str, name: &str, before: &str, transactions: &[(&str, u64)]) {
            let mut index = FileIndex {
                gtids_before: Some(before.parse().expect("state")),
                ..FileIndex::default()
            };
            for (i, (gtid, second)) in transactions.iter().enumerate() {
                index.transactions.push(TransactionEntry {
                    gtid: Some(gtid.parse().expect("gtid")),
                    start: 256 + 100 * i as u64,
                    end: 356 + 100 * i as u64,
                    commit_micros: at(*second),
                    exact_time: false,
                    ddl: false,
                    events: 4,
                    repeated: false,
                });
            }
            let size = index.indexed_end() + 48;
            index.closed = Some((size, None));
            self.files.push(ArchiveFile {
                epoch: epoch.into(),
                name: name.into(),
                state: FileState::Closed,
                size,
                indexed_end: size,
                transactions: index.transactions.len() as u64,
                gtids_before: index.gtids_before.clone().unwrap_or_default(),
                gtids_after: index.gtids_after(),
                first_commit_micros: index.transactions.first().map(|t| t.commit_micros),
                last_commit_micros: index.transactions.last().map(|t| t.commit_micros),
                source_server_id: crate::archive::server_id_of_epoch(epoch),
            });
            self.indexes.insert((epoch.into(), name.into()), index);
        }

        fn plan(&self, start: Option<&str>, target: StopAt) -> Result<Plan, PlanError> {
            let start = start.map(|s| s.parse::<GtidState>().expect("start"));
            block_on(plan(&self.files, self, start.as_ref(), &target))
        }

        fn timeline(&self, start: Option<&str>) -> Timeline {
            let start = start.map(|s| s.parse::<GtidState>().expect("start"));
            block_on(timeline(&self.files, self, start.as_ref())).expect("timeline")
        }
    }

    impl IndexSource for Fixture {
        async fn file_index(&self, file: &ArchiveFile) -> Result<FileIndex, StorageError> {
            Ok(self.indexes[&(file.epoch.clone(), file.name.clone())].clone())
        }
    }

    fn block_on<T>(work: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(work)
    }

    /// Three files of one MariaDB server: 0-1-1..3, 0-1-4..6, 0-1-7..9, one per second.
    fn three_files() -> Fixture {
        let mut f = Fixture::default();
        f.file(
            "0001-server1",
            "b.000001",
            "",
            &[("0-1-1", 1), ("0-1-2", 2), ("0-1-3", 3)],
        );
        f.file(
            "0001-server1",
            "b.000002",
            "0-1-3",
            &[("0-1-4", 4), ("0-1-5", 5), ("0-1-6", 6)],
        );
        f.file(
            "0001-server1",
            "b.000003",
            "0-1-6",
            &[("0-1-7", 7), ("0-1-8", 8), ("0-1-9", 9)],
        );
        f
    }

    fn ranges(plan: &Plan) -> Vec<(String, u64, u64)> {
        plan.pieces
            .iter()
            .map(|p| (p.file.clone(), p.start, p.end))
            .collect()
    }

    #[test]
    fn a_gtid_target_takes_the_middle_whole_and_cuts_both_ends() {
        let f = three_files();
        let plan = f
            .plan(Some("0-1-2"), StopAt::Gtids("0-1-8".parse().expect("gtid")))
            .expect("plan");
        assert_eq!(
            ranges(&plan),
            [
                ("b.000001".into(), 456, 604),
                ("b.000002".into(), 4, 604),
                ("b.000003".into(), 4, 456),
            ]
        );
        assert_eq!(plan.transactions, 6);
        assert_eq!(plan.end.to_string(), "0-1-8");
        assert!(plan.target_reached);
        assert_eq!(
            plan.indexes_read, 2,
            "the middle file is decided from its summary"
        );
        let stop = plan.stop.expect("stop");
        assert_eq!((stop.file.as_str(), stop.offset), ("b.000003", 456));
        assert_eq!(stop.gtid, Some("0-1-8".parse().expect("gtid")));
    }

    #[test]
    fn a_start_past_the_first_files_skips_them_unread() {
        let f = three_files();
        let plan = f.plan(Some("0-1-6"), StopAt::Latest).expect("plan");
        assert_eq!(ranges(&plan), [("b.000003".into(), 4, 604)]);
        assert_eq!(plan.indexes_read, 0);
        assert!(plan.pieces[0].whole_file);
        assert!(plan.target_reached);
    }

    #[test]
    fn time_targets_stop_before_the_first_later_commit() {
        let f = three_files();
        let plan = f.plan(None, StopAt::Time(at(5) + 500_000)).expect("plan");
        assert_eq!(plan.end.to_string(), "0-1-5");
        assert_eq!(ranges(&plan).last().expect("piece").2, 456);
        // Beyond the archive: everything, and not reached.
        let plan = f.plan(None, StopAt::Time(at(60))).expect("plan");
        assert_eq!(plan.end.to_string(), "0-1-9");
        assert!(!plan.target_reached);
        // Behind the start.
        let err = f
            .plan(Some("0-1-5"), StopAt::Time(at(2)))
            .expect_err("before start");
        assert!(matches!(err, PlanError::TargetBeforeStart { .. }), "{err}");
        let err = f
            .plan(Some("0-1-4"), StopAt::Time(at(3)))
            .expect_err("before start");
        assert!(err.to_string().contains("0-1-4, committed"), "{err}");
    }

    #[test]
    fn before_gtid_leaves_the_transaction_out() {
        let f = three_files();
        let plan = f
            .plan(
                Some("0-1-1"),
                StopAt::BeforeGtid("0-1-7".parse().expect("gtid")),
            )
            .expect("plan");
        assert_eq!(plan.end.to_string(), "0-1-6");
        assert_eq!(
            ranges(&plan),
            [("b.000001".into(), 356, 604), ("b.000002".into(), 4, 604)]
        );
        let err = f
            .plan(
                Some("0-1-7"),
                StopAt::BeforeGtid("0-1-7".parse().expect("gtid")),
            )
            .expect_err("held");
        assert!(matches!(err, PlanError::TargetBeforeStart { .. }), "{err}");
        let err = f
            .plan(None, StopAt::BeforeGtid("0-2-5".parse().expect("gtid")))
            .expect_err("other server");
        assert!(err.to_string().contains("straight to 0-1-5"), "{err}");
    }

    #[test]
    fn positions_must_be_transaction_boundaries() {
        let f = three_files();
        let position = |offset| StopAt::Position {
            epoch: None,
            file: "b.000002".into(),
            offset,
        };
        let plan = f.plan(Some("0-1-1"), position(456)).expect("plan");
        assert_eq!(plan.end.to_string(), "0-1-5");
        let err = f.plan(Some("0-1-1"), position(400)).expect_err("inside");
        assert!(
            err.to_string().contains("boundaries are 356 and 456"),
            "{err}"
        );
        let err = f.plan(Some("0-1-1"), position(9999)).expect_err("beyond");
        assert!(
            err.to_string().contains("indexed up to offset 604"),
            "{err}"
        );
        let plan = f.plan(Some("0-1-1"), position(604)).expect("at the end");
        assert_eq!(plan.end.to_string(), "0-1-6");
    }

    #[test]
    fn mariadb_gtid_targets_must_exist() {
        let f = three_files();
        let err = f
            .plan(None, StopAt::Gtids("0-2-5".parse().expect("gtid")))
            .expect_err("no such transaction");
        assert!(err.to_string().contains("no transaction 0-2-5"), "{err}");
        let err = f
            .plan(None, StopAt::Gtids("0-1-50".parse().expect("gtid")))
            .expect_err("beyond");
        assert!(matches!(err, PlanError::TargetNotInArchive { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_a_gap() {
        let mut f = three_files();
        f.files.remove(1);
        let err = f.plan(Some("0-1-1"), StopAt::Latest).expect_err("gap");
        assert!(
            err.to_string().contains("missing 0-1-4..6"),
            "names what is missing: {err}"
        );
        let timeline = f.timeline(Some("0-1-1"));
        assert_eq!(timeline.recoverable_to.to_string(), "0-1-3");
        assert_eq!(timeline.last_recoverable_micros, Some(at(3)));
        assert!(
            matches!(&timeline.history[..], [Event::Stretch(_), Event::Gap(gap), Event::Stretch(_)] if gap.missing == "0-1-4..6"),
            "{:?}",
            timeline.history
        );
        // A start after the gap is fine.
        let plan = f.plan(Some("0-1-6"), StopAt::Latest).expect("plan");
        assert_eq!(plan.transactions, 3);
    }

    #[test]
    fn a_missing_file_before_an_empty_newest_file_is_a_gap() {
        let mut f = three_files();
        f.file("0001-server1", "b.000004", "0-1-9", &[]);
        f.files.remove(2);
        let err = f.plan(Some("0-1-1"), StopAt::Latest).expect_err("gap");
        assert!(
            err.to_string().contains("missing 0-1-7..9"),
            "names what is missing: {err}"
        );
    }

    /// The old primary wrote 0-1-1..6; the new one had only 0-1-1..4 when it took over and
    /// wrote 0-2-5.. on: its binlog repeats 0-1-3..4 (replicated) and goes on.
    fn failover() -> Fixture {
        let mut f = Fixture::default();
        f.file(
            "0001-server1",
            "b.000001",
            "",
            &[("0-1-1", 1), ("0-1-2", 2), ("0-1-3", 3)],
        );
        f.file(
            "0001-server1",
            "b.000002",
            "0-1-3",
            &[("0-1-4", 4), ("0-1-5", 5), ("0-1-6", 6)],
        );
        f.file(
            "0002-server2",
            "b.000001",
            "0-1-2",
            &[("0-1-3", 3), ("0-1-4", 4)],
        );
        f.file(
            "0002-server2",
            "b.000002",
            "0-1-4",
            &[("0-2-5", 8), ("0-2-6", 9)],
        );
        f
    }

    #[test]
    fn a_failover_drops_what_the_new_primary_never_had() {
        let f = failover();
        let plan = f.plan(None, StopAt::Latest).expect("plan");
        assert_eq!(plan.end.to_string(), "0-2-6");
        assert_eq!(
            ranges(&plan),
            [
                ("b.000001".into(), 4, 604),
                ("b.000002".into(), 4, 356),
                ("b.000002".into(), 4, 504),
            ]
        );
        assert_eq!(plan.pieces[2].epoch, "0002-server2");
        assert_eq!(plan.transactions, 6);
        // A target among the lost transactions is not in the history that continued.
        let err = f
            .plan(None, StopAt::Gtids("0-1-6".parse().expect("gtid")))
            .expect_err("lost");
        assert!(matches!(err, PlanError::TargetNotInArchive { .. }), "{err}");

        let timeline = f.timeline(None);
        assert_eq!(timeline.recoverable_to.to_string(), "0-2-6");
        assert_eq!(timeline.last_recoverable_micros, Some(at(9)));
        match &timeline.history[..] {
            [
                Event::Stretch(_),
                Event::ServerChange {
                    lost, to_server_id, ..
                },
                Event::Stretch(_),
            ] => {
                assert_eq!(lost, "0-1-5..6");
                assert_eq!(*to_server_id, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mysql_sets_across_a_failover() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "4e11fa47-71ca-11e1-9e33-c80aa9429563";
        let mut f = Fixture::default();
        let g = |uuid: &str, n: u64| format!("{uuid}:{n}");
        f.file(
            "0001-server1",
            "b.000001",
            "",
            &[(&g(a, 1), 1), (&g(a, 2), 2)],
        );
        f.file(
            "0002-server2",
            "c.000001",
            &format!("{a}:1-2"),
            &[(&g(b, 1), 3), (&g(b, 2), 4)],
        );
        let plan = f
            .plan(
                Some(&format!("{a}:1")),
                StopAt::Gtids(format!("{b}:1").parse().expect("set")),
            )
            .expect("plan");
        assert_eq!(plan.end.to_string(), format!("{a}:1-2,{b}:1"));
        assert_eq!(
            ranges(&plan),
            [("b.000001".into(), 356, 504), ("c.000001".into(), 4, 356)]
        );
        let timeline = f.timeline(Some(&format!("{a}:1")));
        assert_eq!(
            timeline.recoverable_to.to_string(),
            format!("{a}:1-2,{b}:1-2")
        );
        assert!(
            matches!(&timeline.history[0], Event::Stretch(s) if s.transactions == 1),
            "{:?}",
            timeline.history
        );
    }

    /// The planner does no I/O: it names each index it needs, once, and resumes where it
    /// stopped, here in the middle of a file after a gap (which must be recorded once).
    #[test]
    fn the_planner_asks_for_each_index_once_and_resumes_where_it_stopped() {
        let mut f = three_files();
        // b.000002 is missing.
        f.files.remove(1);
        // A start with another domain: neither file's list holds it, so both are partly
        // held and need their indexes.
        let start: GtidState = "1-1-5".parse().expect("start");
        let mut planner = Planner::for_timeline(&f.files, Some(&start)).expect("planner");
        let mut asked = Vec::new();
        while let Step::NeedIndex(i) = planner.step().expect("step") {
            assert!(!asked.contains(&i), "asked twice for file {i}");
            asked.push(i);
            let file = &f.files[i];
            planner.give_index(
                i,
                f.indexes[&(file.epoch.clone(), file.name.clone())].clone(),
            );
        }
        assert_eq!(asked, vec![0, 1]);
        let stepped = planner.into_timeline();
        let gaps = stepped
            .history
            .iter()
            .filter(|e| matches!(e, Event::Gap(_)))
            .count();
        assert_eq!(gaps, 1, "{:?}", stepped.history);
        assert_eq!(
            format!("{stepped:?}"),
            format!("{:?}", f.timeline(Some("1-1-5")))
        );
        assert_eq!(stepped.recoverable_to.to_string(), "0-1-3,1-1-5");
    }
}
