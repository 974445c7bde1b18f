//! The walk: one pass over the archive in order, applying transactions to a GTID state,
//! that makes both the plan and the timeline; and the check that refuses a target before
//! any index is read.

use super::epochs::{Epochs, Survivors};
use super::given::{Given, Halt};
use super::model::{Piece, Plan, PlanError, StopAt, StopPoint, format_micros};
use super::timeline::{Event, Gap, Stretch, Timeline, describe_gtids};
use crate::archive::ArchiveFile;
use crate::gtids::GtidState;
use crate::index::{FileIndex, TransactionEntry};
use binlogd_parser::Gtid;
use std::collections::HashSet;

/// Refuses targets that cannot be reached from `start` before reading any index.
pub(super) fn check_target(
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
pub(super) struct Walk<'t> {
    /// The next file to walk.
    next: usize,
    /// Whether the server change before `next` (if any) is recorded.
    entered_next: bool,
    pub(super) state: GtidState,
    pub(super) target: &'t StopAt,
    pub(super) plan: Plan,
    pub(super) timeline: Timeline,
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
    pub(super) fn new(start: GtidState, target: &'t StopAt, tolerate_gaps: bool) -> Walk<'t> {
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
    pub(super) fn run(
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
    pub(super) fn check_gtid_target_exact(&self) -> Result<(), PlanError> {
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
