//! Compaction of a sealed file: its many small segments (one per checkpoint, one a second
//! on a busy server) rewritten as a few large ones, so that reading it costs a request
//! per `--segment-size` of data rather than one per second of the file's life.
//!
//! A sealed file is still in the spool until it is compacted, so the large segments are
//! cut from the spool's bytes (no download), at transaction ends as the writer cuts them
//! (the first segment — the magic and the format description — stays as it is). They
//! have ordinary segment names (`<start>-<end>.seg.<codec>`): a reader that lists (an
//! earlier release, or a look at a file it takes for unsealed) takes each byte from the
//! first segment that reaches it, as for any overlap.
//!
//! Write order, each step safe to crash after:
//! 1. the large segments (`max_parallel` per checkpoint, after the checkpoint's own
//!    uploads, so compaction never delays the recovery point). A crash after leaves large
//!    segments no manifest names: the next run, finding the file uncompacted in its
//!    spool, cuts the same ones again;
//! 2. a deletion record `deletions/<due>-<epoch>-<file>.json` naming the small segments
//!    and their index objects, due `--delete-delay` later, so that a reader that read the
//!    old manifest finishes with it;
//! 3. the manifest, rewritten to list the large segments (`compacted: true`; the summary,
//!    and so the catalogue, unchanged);
//! 4. once due: the objects the record names, except any the file's manifest lists then
//!    (so a record written before a crash that kept the old manifest takes only the
//!    per-segment index objects), in batches; then the record. A crash in between leaves
//!    the record: the next run deletes again (deleting what is gone is nothing).
//!
//! The spool's copy goes only after step 3.

use super::crypt::{ClientKey, authenticated_metadata};
use super::deletion::{crash_point, record_deletion};
use super::format::{Manifest, SegmentRecord};
use super::keys::{self, Codec};
use super::segment;
use super::store::{ListQuery, ObjectStore};
use crate::error::StorageError;
use crate::index::FileIndex;
use bytes::Bytes;
use std::path::Path;

/// A sealed file on its way to being compacted.
#[derive(Debug, Clone)]
pub(crate) struct Compaction {
    pub(crate) epoch: String,
    pub(crate) name: String,
    /// The manifest as sealed, rewritten at the end.
    manifest: Manifest,
    /// The large segments' ranges, in order.
    plan: Vec<(u64, u64)>,
    /// Those uploaded so far.
    done: Vec<SegmentRecord>,
}

/// What compaction cost (bytes put, objects deleted), for the uploader's counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompactionCost {
    pub(crate) bytes_put: u64,
    pub(crate) finished: bool,
    /// The deletion record written, when the compaction finished.
    pub(crate) deletion_record: Option<String>,
}

/// Where a sealed file's large segments go: the first segment as it is, the segments up to
/// `kept_until` (an open file's consolidated part, see `consolidate.rs`) as they are, then
/// runs of at most `max_segment` bytes ending at a transaction's end (or `max_segment`
/// bytes into a transaction larger than that). `None` when that would not make fewer
/// segments and nothing else of the file needs to go (`kept_until` 0).
pub(crate) fn plan(
    index: &FileIndex,
    segments: &[SegmentRecord],
    max_segment: u64,
    kept_until: u64,
) -> Option<Vec<(u64, u64)>> {
    let first = segments.first()?;
    let size = segments.last()?.end;
    let from = kept_until.max(first.end).min(size);
    let ends = transaction_ends(index, from, size);
    let mut plan: Vec<(u64, u64)> = segments
        .iter()
        .take_while(|s| s.end <= from)
        .map(|s| (s.start, s.end))
        .collect();
    plan.extend(cut_at_transactions(&ends, from, size, max_segment));
    (plan.len() < segments.len() || kept_until > 0).then_some(plan)
}

/// Where transactions (and the boundary) end in `(from, to]`, in order: found by binary
/// search, so that a consolidation of a file open for a week does not walk the whole
/// week's index each time.
pub(crate) fn transaction_ends(index: &FileIndex, from: u64, to: u64) -> Vec<u64> {
    let first = index.transactions.partition_point(|t| t.end <= from);
    let mut ends: Vec<u64> = index.transactions[first..]
        .iter()
        .map(|t| t.end)
        .take_while(|&end| end <= to)
        .collect();
    if let Some(boundary) = index.boundary.filter(|&b| b > from && b <= to) {
        ends.push(boundary);
        ends.sort_unstable();
    }
    ends
}

/// `[start, size)` cut into runs of at most `max_segment` bytes, each ending at one of
/// `ends` (sorted transaction ends) when one is in reach, else `max_segment` bytes on.
pub(crate) fn cut_at_transactions(
    ends: &[u64],
    start: u64,
    size: u64,
    max_segment: u64,
) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut start = start;
    while start < size {
        let limit = start.saturating_add(max_segment.max(1));
        let end = if size <= limit {
            size
        } else {
            let at = ends.partition_point(|&end| end <= limit);
            match at.checked_sub(1).map(|i| ends[i]) {
                Some(end) if end > start => end,
                _ => limit,
            }
        };
        runs.push((start, end));
        start = end;
    }
    runs
}

impl Compaction {
    /// Binlog bytes still to be rewritten.
    pub(crate) fn remaining(&self) -> u64 {
        self.plan
            .iter()
            .skip(self.done.len())
            .map(|(start, end)| end - start)
            .sum()
    }

    /// A compaction of the file `manifest` describes, along `plan`.
    pub(crate) fn new(manifest: Manifest, plan: Vec<(u64, u64)>) -> Compaction {
        Compaction {
            epoch: manifest.summary.epoch.clone(),
            name: manifest.summary.name.clone(),
            manifest,
            plan,
            done: Vec::new(),
        }
    }

    /// Uploads the next `parallel` large segments from `data` (the spool's copy); once
    /// all are up, rewrites the manifest and records the small objects for deletion at
    /// `delete_at_micros`.
    pub(crate) async fn step(
        &mut self,
        store: &std::sync::Arc<dyn ObjectStore>,
        client_key: Option<&ClientKey>,
        codec: Codec,
        data: &Path,
        parallel: usize,
        delete_at_micros: u64,
    ) -> Result<CompactionCost, StorageError> {
        let mut cost = CompactionCost::default();
        let todo: Vec<(u64, u64)> = self
            .plan
            .iter()
            .skip(self.done.len())
            .take(parallel.max(1))
            .copied()
            .collect();
        let mut puts = tokio::task::JoinSet::new();
        let mut uploading = Vec::new();
        for (start, end) in todo {
            // A segment the file has already (the first, a consolidated one) is kept.
            if let Some(kept) = self
                .manifest
                .segments
                .iter()
                .find(|s| (s.start, s.end) == (start, end))
            {
                uploading.push(kept.clone());
                continue;
            }
            let bytes = crate::layout::read_range(data, start, end)?;
            let crc32 = format!("{:08x}", crc32fast::hash(&bytes));
            let key = keys::segment(&self.epoch, &self.name, start, end, codec);
            let (packed, metadata) = segment::pack(&key, &bytes, codec, client_key)
                .map_err(StorageError::io("compressing", data))?;
            cost.bytes_put += packed.len() as u64;
            uploading.push(SegmentRecord {
                key: key.clone(),
                start,
                end,
                codec,
                crc32,
            });
            let store = std::sync::Arc::clone(store);
            puts.spawn(async move { store.put(&key, Bytes::from(packed), &metadata).await });
        }
        while let Some(done) = puts.join_next().await {
            done.map_err(|e| {
                StorageError::inconsistent(&self.name, 0, format!("compaction upload task: {e}"))
            })??;
        }
        // Only what is surely up counts as done: a failed batch is cut and sent again.
        self.done.extend(uploading);
        crash_point("compaction:segments");
        if self.done.len() < self.plan.len() {
            return Ok(cost);
        }
        // Every large segment is up. First the record of what they replace (the small
        // segments and the per-segment index objects, which the manifest's index chunks
        // stand for), then the manifest that lists them: a record never names a key the
        // manifest lists when it is carried out, so it is safe to write it first, and a
        // crash between the two leaves nothing behind for good.
        let mut manifest = self.manifest.clone();
        manifest.segments = self.done.clone();
        manifest.compacted = true;
        let mut doomed: Vec<String> = self
            .manifest
            .segments
            .iter()
            .filter(|old| !self.done.iter().any(|new| new.key == old.key))
            .map(|old| old.key.clone())
            .collect();
        let prefix = keys::file_prefix(&self.epoch, &self.name);
        for object in store
            .query(ListQuery {
                prefix: &prefix,
                ..ListQuery::default()
            })
            .await?
            .objects
        {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            let is_small = match keys::parse_file_object(leaf) {
                Some(keys::FileObject::SegmentIndex { .. }) => !manifest.index.is_empty(),
                Some(keys::FileObject::Segment { .. }) => {
                    !manifest.segments.iter().any(|s| s.key == object.key)
                }
                // What the file's consolidations wrote while it was open.
                Some(keys::FileObject::Partial { .. }) => true,
                _ => false,
            };
            if is_small && !doomed.contains(&object.key) {
                doomed.push(object.key);
            }
        }
        if let Some((key, bytes)) = record_deletion(
            store.as_ref(),
            client_key,
            &self.epoch,
            &self.name,
            doomed,
            delete_at_micros,
        )
        .await?
        {
            cost.bytes_put += bytes;
            cost.deletion_record = Some(key);
        }
        crash_point("compaction:deletion-recorded");
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::inconsistent(&self.name, 0, e.to_string()))?;
        cost.bytes_put += body.len() as u64;
        let key = keys::manifest(&self.epoch, &self.name);
        let metadata = authenticated_metadata(client_key, &key, &body);
        store.put(&key, body.into(), &metadata).await?;
        crash_point("compaction:manifest");
        cost.finished = true;
        Ok(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::remote::test_fixtures::segments;

    fn index(ends: &[u64]) -> FileIndex {
        crate::remote::test_fixtures::index(256, ends)
    }

    #[test]
    fn large_segments_end_at_transactions_and_keep_the_first_as_it_is() {
        let small = segments(&[(0, 256), (256, 400), (400, 700), (700, 900), (900, 1000)]);
        let index = index(&[400, 700, 900, 1000]);
        assert_eq!(
            plan(&index, &small, 500, 0),
            Some(vec![(0, 256), (256, 700), (700, 1000)])
        );
        // A transaction larger than a segment is cut inside.
        let index = self::index(&[1000]);
        assert_eq!(
            plan(&index, &small, 300, 0),
            Some(vec![(0, 256), (256, 556), (556, 856), (856, 1000)])
        );
        // An open file's consolidated part is kept as it is; the rest is cut.
        assert_eq!(
            plan(&index, &small, 300, 700),
            Some(vec![(0, 256), (256, 400), (400, 700), (700, 1000)])
        );
        // Nothing to gain: left alone.
        let big = segments(&[(0, 256), (256, 1000)]);
        assert_eq!(plan(&self::index(&[1000]), &big, 1 << 20, 0), None);
    }
}
