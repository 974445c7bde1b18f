//! What a walk over the archive has been given — the indexes it asked for, by file
//! position — and why it stops before the end: for want of an index (it resumes once
//! given it) or for good.

use super::model::PlanError;
use crate::index::FileIndex;
use std::collections::HashMap;

/// The indexes a walk has been given, by file position.
#[derive(Debug, Default)]
pub(super) struct Given(pub(super) HashMap<usize, FileIndex>);

impl Given {
    /// File `i`'s index, or a halt asking for it.
    pub(super) fn index(&self, i: usize) -> Result<&FileIndex, Halt> {
        self.0.get(&i).ok_or(Halt::NeedIndex(i))
    }
}

/// Why a walk stopped before the end.
#[derive(Debug)]
pub(super) enum Halt {
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
