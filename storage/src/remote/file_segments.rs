//! A file's segments in order, end to end: what a reader fetches to read any part of a
//! file without the rest (see `RemoteArchive::file_segments`).

use super::keys::Codec;

/// One segment to fetch for a file: its range, codec and key, and how many of its bytes
/// an earlier segment already gave.
#[derive(Debug, Clone)]
pub(crate) struct Fetch {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) codec: Codec,
    pub(crate) key: String,
    pub(crate) skip: usize,
}

/// A file's segments, in order and end to end (see `RemoteArchive::file_segments`).
#[derive(Debug, Clone)]
pub struct FileSegments {
    pub(crate) name: String,
    pub(crate) plan: Vec<Fetch>,
    pub(crate) size: u64,
    sealed: bool,
}

impl FileSegments {
    pub(crate) fn new(name: &str, plan: Vec<Fetch>, sealed: bool) -> FileSegments {
        FileSegments {
            name: name.to_owned(),
            size: plan.last().map_or(0, |f| f.end),
            sealed,
            plan,
        }
    }

    /// Bytes the segments hold, from offset 0.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file is sealed (it will not grow).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// How many segments there are.
    pub fn len(&self) -> usize {
        self.plan.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The segment holding the byte at `offset`, and where its fetched bytes start.
    pub fn segment_at(&self, offset: u64) -> Option<(usize, u64)> {
        let at = self.plan.partition_point(|f| f.end <= offset);
        let fetch = self.plan.get(at)?;
        let first = fetch.start + fetch.skip as u64;
        (first <= offset).then_some((at, first))
    }
}
