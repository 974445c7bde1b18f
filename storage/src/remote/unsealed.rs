//! A file that is not sealed yet, followed as its uploads arrive.
//!
//! While the stream writes a file, each checkpoint adds a segment `<start>-<end>.seg.*` and
//! its index object `<start>-<end>.idx.zst` under the file's prefix. Keys sort by start
//! offset (20 zero-padded digits), so a reader that has seen the file up to some offset
//! lists only the keys from there on (S3's `start-after`), whatever the file's age.
//!
//! Where to list from: an index object goes up only after every segment of its batch, and
//! sorts before its own segment (`idx` < `seg`), so a look can see a segment whose index
//! object is not there yet. A look therefore starts again at the segment in which the
//! known index ends: what comes before is indexed for good, what comes after is looked
//! at again until its index object arrives. A segment that holds no whole transaction
//! (part of one larger than a segment) has no index object; it stays at or after that
//! point only until the transaction's last segment is indexed.
//!
//! A file consolidated while open (see `consolidate.rs`) is known up to its newest partial
//! manifest's end from that manifest and the index objects it names: the first look asks
//! for it (a listing of one or two keys) and lists only after it, and a follower asks for
//! a newer one once every 60 looks (`LOOKS_PER_PARTIAL`), taking its segments in place of
//! the checkpoints' ones it replaced before those are deleted.
//!
//! Segments may overlap (a batch retried after one of its uploads failed is cut anew,
//! beside what did arrive of the first try), and parallel uploads may land out of order:
//! the readable bytes are the contiguous run from 0, each byte from the first segment that
//! reaches it; a hole is waited out, not reported (the upload that fills it is in flight).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::crypt::ClientKey;
use super::crypt::check_authentic;
use super::file_segments::{Fetch, FileSegments};
use super::format::{PartialManifest, parse_index_object};
use super::keys::{self, Codec, FileObject};
use super::partial::{newest_partial, read_partial_index};
use super::store::{ListQuery, ObjectStore};
use crate::error::StorageError;
use crate::index::{FileIndex, IndexRecord};

/// What a reader knows of a file not sealed yet: its segments and its index, as far as
/// its looks have seen them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealedFile {
    epoch: String,
    name: String,
    /// Every segment seen: `(start, end, codec, key)`, sorted by start, longest first.
    segments: Vec<(u64, u64, Codec, String)>,
    /// The index objects applied, by range.
    indexed: BTreeSet<(u64, u64)>,
    /// How far the applied index objects reach without a gap: one further on waits until
    /// the ones before it are applied, so that records apply in file order.
    indexed_to: u64,
    index: FileIndex,
    /// Whether its partial manifests have been looked for.
    partial_read: bool,
    /// Where its newest partial manifest read ends: everything before is known from it,
    /// so no look lists before it.
    floor: u64,
    /// Looks since the last one that asked for a newer partial manifest.
    looks_since_partial: u32,
}

/// How many looks a follower takes between two asks for a newer partial manifest: the
/// checkpoints' segments it knows go `--delete-delay` after a consolidation replaced them,
/// so it takes the consolidated ones in their place well before (one listing of a page
/// of one or two keys).
const LOOKS_PER_PARTIAL: u32 = 60;

/// How many index objects a look fetches at once.
const INDEX_FETCHES: usize = 8;

impl UnsealedFile {
    /// A file not looked at yet.
    pub fn new(epoch: &str, name: &str) -> UnsealedFile {
        UnsealedFile {
            epoch: epoch.to_owned(),
            name: name.to_owned(),
            segments: Vec::new(),
            indexed: BTreeSet::new(),
            indexed_to: 0,
            index: FileIndex::default(),
            partial_read: false,
            floor: 0,
            looks_since_partial: 0,
        }
    }

    /// Its epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The server's name for it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its index records seen so far.
    pub fn index(&self) -> &FileIndex {
        &self.index
    }

    /// Bytes readable from 0 without a hole.
    pub fn size(&self) -> u64 {
        self.plan().last().map_or(0, |f| f.end)
    }

    /// Where the readable, indexed part ends: what a replay or a dump may use.
    pub fn indexed_end(&self) -> u64 {
        self.index.indexed_end().min(self.size())
    }

    /// The segments that make its readable bytes, in order.
    pub fn segments(&self) -> FileSegments {
        let plan = self.plan();
        FileSegments::new(&self.name, plan, false)
    }

    /// Each byte from the first segment that reaches it, from 0 up to the first hole.
    fn plan(&self) -> Vec<Fetch> {
        let mut plan = Vec::new();
        let mut offset = 0;
        for (start, end, codec, key) in &self.segments {
            if *start > offset {
                break;
            }
            if *end <= offset {
                continue;
            }
            plan.push(Fetch {
                start: *start,
                end: *end,
                codec: *codec,
                key: key.clone(),
                skip: usize::try_from(offset - start).unwrap_or(usize::MAX),
            });
            offset = *end;
        }
        plan
    }

    /// Where the next look starts listing: the start of the segment the known index ends
    /// in (see the module's docs).
    fn resume_offset(&self) -> u64 {
        let indexed_end = self.index.indexed_end();
        let after = self.segments.partition_point(|s| s.0 <= indexed_end);
        let resume = after.checked_sub(1).map_or(0, |last| self.segments[last].0);
        resume.max(self.floor)
    }

    /// Takes what a partial manifest says of `[0, partial.end)`: its segments in place of
    /// those known there, and, on a first look, its index.
    fn take_partial(&mut self, partial: &PartialManifest, records: Option<Vec<IndexRecord>>) {
        let after = self.segments.partition_point(|s| s.0 < partial.end);
        let mut segments: Vec<(u64, u64, Codec, String)> = partial
            .segments
            .iter()
            .map(|s| (s.start, s.end, s.codec, s.key.clone()))
            .collect();
        segments.extend(self.segments.drain(after..));
        self.segments = segments;
        if let Some(records) = records {
            for record in records {
                self.apply(record);
            }
            self.indexed
                .extend(partial.indexes.iter().map(|[start, end]| (*start, *end)));
            self.indexed_to = self.indexed_to.max(partial.end);
        }
        self.floor = partial.end;
    }

    /// Applies one index record, skipping a transaction the index has (index objects of
    /// overlapping segments repeat records).
    fn apply(&mut self, record: IndexRecord) {
        if let IndexRecord::Transaction(t) = &record
            && self
                .index
                .transactions
                .last()
                .is_some_and(|last| t.end <= last.end)
        {
            return;
        }
        self.index.apply(record);
    }
}

impl UnsealedFile {
    /// Looks at the file again in `store`: lists its keys from where the last look's index
    /// ends, reads the index objects not applied yet (authenticated with `client_key`),
    /// and notes new segments. Returns whether anything was new. One listing (a page or
    /// two) and a GET per new index object, however long the file has been open.
    pub async fn look_again(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        client_key: Option<&ClientKey>,
    ) -> Result<bool, StorageError> {
        let file = self;
        // A file consolidated while open is known up to its newest partial manifest's end
        // from it: asked for on the first look, then once in a while.
        // A hole the last look left (a segment seen past bytes no segment holds) is an
        // upload in flight, or checkpoints a consolidation replaced and deleted before
        // this reader saw them: the partial manifest says which.
        let hole = file
            .segments
            .last()
            .is_some_and(|last| last.1 > file.size());
        let ask_partial =
            !file.partial_read || hole || file.looks_since_partial >= LOOKS_PER_PARTIAL;
        let mut changed = false;
        if ask_partial {
            file.looks_since_partial = 0;
            if let Some(partial) = newest_partial(
                store.as_ref(),
                client_key,
                (&file.epoch, &file.name),
                file.floor,
            )
            .await?
            {
                // Its index, unless the looks so far have read that far (a follower).
                let records = if file.index.indexed_end() < partial.end {
                    Some(read_partial_index(store, client_key, &partial, 8).await?)
                } else {
                    None
                };
                file.take_partial(&partial, records);
                changed = true;
            }
            file.partial_read = true;
        } else {
            file.looks_since_partial += 1;
        }
        let shared_store = store;
        let store = store.as_ref();
        let prefix = keys::file_prefix(&file.epoch, &file.name);
        let resume = file.resume_offset();
        // Keys of segments starting at `resume` sort after this (they are longer).
        let start_after = (resume > 0).then(|| format!("{prefix}{resume:020}"));
        let listing = store
            .query(ListQuery {
                prefix: &prefix,
                start_after: start_after.as_deref(),
                ..ListQuery::default()
            })
            .await?;
        let mut new_indexes = Vec::new();
        let mut new_segments = Vec::new();
        for object in listing.objects {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            match keys::parse_file_object(leaf) {
                Some(FileObject::Segment { start, end, codec }) => {
                    // Segments are sorted by start: only those starting here can be it
                    // (a scan of all of them would grow with the file's age).
                    let from = file.segments.partition_point(|s| s.0 < start);
                    let known = file.segments[from..]
                        .iter()
                        .take_while(|s| s.0 == start)
                        .any(|(_, e, c, _)| (*e, *c) == (end, codec));
                    if !known {
                        new_segments.push((start, end, codec, object.key));
                    }
                }
                Some(FileObject::SegmentIndex { start, end })
                    if !file.indexed.contains(&(start, end)) =>
                {
                    new_indexes.push((start, end, object.key));
                }
                Some(
                    FileObject::SegmentIndex { .. }
                    | FileObject::Manifest
                    | FileObject::Partial { .. },
                )
                | None => {}
            }
        }
        changed |= !new_segments.is_empty();
        file.segments.extend(new_segments);
        file.segments
            .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        // In file order, so records apply in order; one past a gap waits for a later
        // look (its turn comes once the gap's index object arrives).
        new_indexes.sort_unstable();
        let mut next = 0;
        while next < new_indexes.len() {
            // The next few that follow on from what is applied, fetched together, then
            // applied in order.
            let mut reach = file.indexed_to;
            let batch: Vec<&(u64, u64, String)> = new_indexes[next..]
                .iter()
                .take(INDEX_FETCHES)
                .take_while(|(start, end, _)| {
                    let follows = *start <= reach;
                    reach = reach.max(*end);
                    follows
                })
                .collect();
            if batch.is_empty() {
                break;
            }
            next += batch.len();
            let mut gets = tokio::task::JoinSet::new();
            for (at, (_, _, key)) in batch.iter().enumerate() {
                let (store, key) = (Arc::clone(shared_store), key.clone());
                gets.spawn(async move { (at, store.get(&key).await) });
            }
            let mut fetched = Vec::with_capacity(batch.len());
            while let Some(done) = gets.join_next().await {
                let (at, got) = done.map_err(|e| {
                    StorageError::inconsistent(&file.name, 0, format!("index read task: {e}"))
                })?;
                fetched.push((at, got?));
            }
            fetched.sort_by_key(|(at, _)| *at);
            let mut gone = false;
            for (at, found) in fetched {
                let (start, end, key) = batch[at];
                // Deleted since the listing (replaced by a consolidation): what follows
                // waits for the next look, which starts from the partial manifest.
                let Some(found) = found else {
                    gone = true;
                    break;
                };
                let location = store.location();
                let bad = |line, message| StorageError::BadIndex {
                    path: format!("{location}/{key}").into(),
                    line,
                    message,
                };
                check_authentic(client_key, key, &found).map_err(|e| bad(0, e))?;
                let records = parse_index_object(&found.body)
                    .map_err(|(line, message)| bad(line, message))?;
                for record in records {
                    file.apply(record);
                }
                file.indexed.insert((*start, *end));
                file.indexed_to = file.indexed_to.max(*end);
                changed = true;
            }
            if gone {
                file.partial_read = false;
                break;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::TransactionEntry;

    fn file_with(segments: &[(u64, u64)]) -> UnsealedFile {
        let mut file = UnsealedFile::new("0001-server1", "b.000001");
        file.segments = segments
            .iter()
            .map(|&(start, end)| (start, end, Codec::Zst, format!("{start}-{end}")))
            .collect();
        file.segments
            .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        file
    }

    fn transaction(start: u64, end: u64) -> IndexRecord {
        IndexRecord::Transaction(TransactionEntry {
            gtid: None,
            start,
            end,
            commit_micros: 0,
            exact_time: false,
            ddl: false,
            events: 1,
            repeated: false,
        })
    }

    #[test]
    fn the_readable_bytes_end_at_the_first_hole_each_byte_from_the_first_segment() {
        // A retried batch's segment (100..300) beside what arrived of the first try
        // (100..200), and 400.. uploaded before 300..400.
        let file = file_with(&[(0, 100), (100, 200), (100, 300), (400, 500)]);
        assert_eq!(file.size(), 300);
        let plan = file.plan();
        let ranges: Vec<_> = plan.iter().map(|f| (f.start, f.end, f.skip)).collect();
        assert_eq!(ranges, [(0, 100, 0), (100, 300, 0)]);
        // The hole filled: read on, skipping what an earlier segment gave.
        let file = file_with(&[(0, 100), (100, 250), (200, 400), (400, 500)]);
        let ranges: Vec<_> = file
            .plan()
            .iter()
            .map(|f| (f.start, f.end, f.skip))
            .collect();
        assert_eq!(
            ranges,
            [(0, 100, 0), (100, 250, 0), (200, 400, 50), (400, 500, 0)]
        );
        assert_eq!(file.size(), 500);
    }

    #[test]
    fn a_look_starts_at_the_segment_the_index_ends_in() {
        let mut file = file_with(&[(0, 100), (100, 200), (200, 300)]);
        // Nothing indexed: from the start.
        assert_eq!(file.resume_offset(), 0);
        file.index.apply(transaction(100, 150));
        assert_eq!(file.resume_offset(), 100);
        // Indexed to a segment's end: the next segment's index object is what is missing.
        file.index.apply(transaction(150, 200));
        assert_eq!(file.resume_offset(), 200);
    }
}
