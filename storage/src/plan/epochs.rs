//! Epoch boundaries of an archive (one epoch per source server), and what of each epoch
//! the next epoch's server kept: the transactions a failover dropped are those it did not.

use super::given::{Given, Halt};
use crate::archive::ArchiveFile;
use crate::gtids::GtidState;
use binlogd_parser::Gtid;
use std::collections::{HashMap, HashSet};

/// What of an epoch's history the next epoch's server has: the state its first file
/// follows, and the transactions its binlog repeats from the old server (found exactly, as
/// MariaDB sequence numbers alone cannot tell the old primary's `0-1-5` from the new
/// one's `0-2-5`).
#[derive(Debug, Clone, Default)]
pub(super) struct Survivors {
    state: GtidState,
    repeated: HashSet<Gtid>,
}

impl Survivors {
    pub(super) fn includes(&self, gtid: &Gtid) -> bool {
        self.state.includes(gtid) || self.repeated.contains(gtid)
    }

    /// Whether all of `state` surely survived (without looking at single transactions).
    pub(super) fn includes_all(&self, state: &GtidState) -> bool {
        self.state.includes_all(state)
    }
}

/// Epoch boundaries of an archive, and what survived each of them, found on demand.
#[derive(Debug)]
pub(super) struct Epochs {
    /// For each file, where the next epoch's files begin (if there is a next epoch).
    next_epoch_start: Vec<Option<usize>>,
    survivors: HashMap<usize, Option<Survivors>>,
}

impl Epochs {
    pub(super) fn new(files: &[ArchiveFile]) -> Epochs {
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
    pub(super) fn survivors_for(
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
