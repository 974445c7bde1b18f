//! Consolidation of a file while it is open: what a reader needs of its first bytes in a
//! few objects, so that a file open for days reads as cheaply as one open for minutes.
//!
//! While the server writes a file, each checkpoint adds a segment and an index object
//! under the file's prefix: a quiet server with the usual 256 MiB–1 GiB
//! `max_binlog_size` keeps one file open for days, and a reader that lists it from the
//! start pays a listing page per thousand checkpoints and a GET per index object. So
//! every `UploadOptions::consolidate_every` checkpoints
//! (or `--segment-size` bytes) of an open file, beside the checkpoints and never in their
//! way, the writer rewrites its part `[c, u)` since the last consolidation from the spool
//! as a few large segments with an index object each, and writes a partial manifest
//! `partial-<u>.json` ([`PartialManifest`]) naming the segments and index objects that
//! make `[0, u)`. A reader lists `partial-` (a page of one or two keys), reads the newest,
//! its index objects, and lists the file only after `u`.
//!
//! The large segments merge as a binary counter does: a new one merges with the one
//! before it while that is no larger and the two fit in a segment, so a file holds a
//! logarithmic number of small ones beside its full ones, and each byte is rewritten a
//! logarithmic number of times at most (once, on a server busy enough to fill a segment
//! between two consolidations).
//!
//! Everything written is an ordinary segment or index object: a reader of an earlier
//! release, which lists the whole file, takes each byte from the first segment that
//! reaches it and skips index records it has, as for any overlap.
//!
//! Write order, each step safe to crash after:
//! 1. the new large segments and their index objects. A crash leaves objects no partial
//!    manifest names; compaction at seal deletes them;
//! 2. a deletion record naming what they replace (the checkpoints' segments and index
//!    objects, the large ones merged, the previous partial manifest), due
//!    `--delete-delay` later;
//! 3. the partial manifest.
//!
//! A deletion record of an open file takes only what ends at or before the newest partial
//! manifest's end and that manifest does not name (see `deletion::carry_out`): a record
//! written by a writer that crashed before step 3 takes nothing its successor may be
//! using.

use super::compact::{cut_at_transactions, transaction_ends};
use super::crypt::{ClientKey, authenticated_metadata};
use super::deletion::{crash_point, record_deletion};
use super::format::{FORMAT_VERSION, PartialManifest, SegmentRecord, encode_index_object};
use super::keys::{self, Codec, FileObject};
use super::segment;
use super::store::{ListQuery, ObjectStore};
use crate::error::StorageError;
use crate::index::{FileIndex, IndexRecord};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;

/// One consolidation of an open file, planned by the writer and run beside the
/// checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct Consolidation {
    pub(crate) epoch: String,
    pub(crate) name: String,
    /// The file's segments of `[0, end)` as the writer knows them now.
    current: Vec<SegmentRecord>,
    /// The segments after the first one once consolidated, each with the index records
    /// it holds when it is new (`None`: an existing segment, kept).
    target: Vec<(u64, u64, Option<Vec<IndexRecord>>)>,
    /// The end of the previous consolidation (its partial manifest's), 0 if none.
    previous: u64,
    /// Where this one ends.
    pub(crate) end: u64,
}

/// What a finished consolidation did.
#[derive(Debug, Clone)]
pub(crate) struct Consolidated {
    /// Where the consolidated part ends.
    pub(crate) end: u64,
    /// Its segments, `[0, end)`.
    pub(crate) segments: Vec<SegmentRecord>,
    /// Bytes put.
    pub(crate) bytes_put: u64,
    /// The deletion record written, if any.
    pub(crate) deletion_record: Option<String>,
}

impl Consolidation {
    /// A consolidation of `segments` (the file's, from 0 and end to end, as the writer
    /// uploaded them) up to their end, given that `[0, previous)` was consolidated
    /// before. `None` when it would not make fewer objects.
    pub(crate) fn plan(
        (epoch, name): (&str, &str),
        segments: &[SegmentRecord],
        previous: u64,
        index: &FileIndex,
        max_segment: u64,
    ) -> Option<Consolidation> {
        let first = segments.first()?;
        let end = segments.last()?.end;
        let from = previous.max(first.end);
        let checkpoints = segments.iter().filter(|s| s.start >= from).count();
        if checkpoints < 2 || index.closed.is_some() {
            return None;
        }
        let mut ranges: Vec<(u64, u64)> = segments
            .iter()
            .skip(1)
            .filter(|s| s.end <= from)
            .map(|s| (s.start, s.end))
            .collect();
        let ends = transaction_ends(index, from, end);
        for piece in cut_at_transactions(&ends, from, end, max_segment) {
            ranges.push(piece);
            // A binary counter: merge with the one before while that is no larger and
            // both fit in a segment.
            while let [.., before, last] = ranges[..] {
                let (before_len, last_len) = (before.1 - before.0, last.1 - last.0);
                if before_len > last_len || before_len + last_len > max_segment {
                    break;
                }
                ranges.truncate(ranges.len() - 2);
                ranges.push((before.0, last.1));
            }
        }
        let target = ranges
            .into_iter()
            .map(|(start, stop)| {
                let kept = segments.iter().any(|s| (s.start, s.end) == (start, stop));
                let records = (!kept).then(|| records_of(index, start, stop, first.end));
                (start, stop, records)
            })
            .collect();
        Some(Consolidation {
            epoch: epoch.to_owned(),
            name: name.to_owned(),
            current: segments.to_vec(),
            target,
            previous,
            end,
        })
    }

    /// Binlog bytes it rewrites (at least 1: it has a partial manifest to write).
    pub(crate) fn remaining(&self) -> u64 {
        let rewritten: u64 = self
            .target
            .iter()
            .filter(|(_, _, records)| records.is_some())
            .map(|(start, end, _)| end - start)
            .sum();
        rewritten.max(1)
    }

    /// Runs it (see the module's docs for the write order), reading new segments' bytes
    /// from `data`, the spool's copy; what it replaces is due for deletion at
    /// `delete_at_micros`.
    pub(crate) async fn run(
        self,
        store: Arc<dyn ObjectStore>,
        client_key: Option<ClientKey>,
        codec: Codec,
        data: PathBuf,
        parallel: usize,
        delete_at_micros: u64,
    ) -> Result<Consolidated, StorageError> {
        let client_key = client_key.as_ref();
        let mut bytes_put = 0;
        let mut segments = vec![self.current[0].clone()];
        let mut indexes = vec![[self.current[0].start, self.current[0].end]];
        let mut puts = tokio::task::JoinSet::new();
        for (start, end, records) in &self.target {
            let Some(records) = records else {
                let kept = self
                    .current
                    .iter()
                    .find(|s| (s.start, s.end) == (*start, *end));
                segments.extend(kept.cloned());
                indexes.push([*start, *end]);
                continue;
            };
            let bytes = crate::layout::read_range(&data, *start, *end)?;
            let key = keys::segment(&self.epoch, &self.name, *start, *end, codec);
            let (packed, metadata) = segment::pack(&key, &bytes, codec, client_key)
                .map_err(StorageError::io("compressing", &data))?;
            bytes_put += packed.len() as u64;
            segments.push(SegmentRecord {
                key: key.clone(),
                start: *start,
                end: *end,
                codec,
                crc32: format!("{:08x}", crc32fast::hash(&bytes)),
            });
            if puts.len() >= parallel.max(1) {
                join_one(&mut puts, &self.name).await?;
            }
            let store_for_put = Arc::clone(&store);
            puts.spawn(async move {
                store_for_put
                    .put(&key, Bytes::from(packed), &metadata)
                    .await
            });
            if !records.is_empty() {
                let packed = encode_index_object(records, &data)?;
                bytes_put += packed.len() as u64;
                let key = keys::segment_index(&self.epoch, &self.name, *start, *end);
                let metadata = authenticated_metadata(client_key, &key, &packed);
                let store = Arc::clone(&store);
                puts.spawn(async move { store.put(&key, Bytes::from(packed), &metadata).await });
                indexes.push([*start, *end]);
            }
        }
        while !puts.is_empty() {
            join_one(&mut puts, &self.name).await?;
        }
        crash_point("consolidation:segments");
        let mut doomed: Vec<String> = Vec::new();
        for old in self.current.iter().skip(1) {
            if !segments.iter().any(|s| s.key == old.key) {
                doomed.push(old.key.clone());
                doomed.push(keys::segment_index(
                    &self.epoch,
                    &self.name,
                    old.start,
                    old.end,
                ));
            }
        }
        if self.previous > 0 {
            doomed.push(keys::partial(&self.epoch, &self.name, self.previous));
        }
        // And what a writer that crashed in a consolidation left (segments and index
        // objects no partial manifest names): one listing of the part rewritten, a page
        // or two.
        let first_end = self.current[0].end;
        let rewritten_from = self
            .target
            .iter()
            .find(|(_, _, records)| records.is_some())
            .map_or(self.end, |(start, _, _)| *start)
            .min(self.previous.max(first_end));
        let prefix = keys::file_prefix(&self.epoch, &self.name);
        let start_after = format!("{prefix}{rewritten_from:020}");
        for object in store
            .query(ListQuery {
                prefix: &prefix,
                start_after: Some(&start_after),
                ..ListQuery::default()
            })
            .await?
            .objects
        {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            let named = match keys::parse_file_object(leaf) {
                Some(FileObject::Segment { start, end, .. }) if start >= first_end => {
                    end <= self.end && !segments.iter().any(|s| s.key == object.key)
                }
                Some(FileObject::SegmentIndex { start, end }) if start >= first_end => {
                    end <= self.end && !indexes.contains(&[start, end])
                }
                _ => false,
            };
            if named && !doomed.contains(&object.key) {
                doomed.push(object.key);
            }
        }
        let deletion_record = match record_deletion(
            store.as_ref(),
            client_key,
            &self.epoch,
            &self.name,
            doomed,
            delete_at_micros,
        )
        .await?
        {
            Some((key, bytes)) => {
                bytes_put += bytes;
                Some(key)
            }
            None => None,
        };
        crash_point("consolidation:deletion-recorded");
        let partial = PartialManifest {
            version: FORMAT_VERSION,
            epoch: self.epoch.clone(),
            name: self.name.clone(),
            end: self.end,
            segments: segments.clone(),
            indexes,
        };
        let body = serde_json::to_vec(&partial)
            .map_err(|e| StorageError::inconsistent(&self.name, self.end, e.to_string()))?;
        bytes_put += body.len() as u64;
        let key = keys::partial(&self.epoch, &self.name, self.end);
        let metadata = authenticated_metadata(client_key, &key, &body);
        store.put(&key, body.into(), &metadata).await?;
        crash_point("consolidation:partial");
        Ok(Consolidated {
            end: self.end,
            segments,
            bytes_put,
            deletion_record,
        })
    }
}

/// The records an index object of the segment `[start, end)` holds: the transactions and
/// boundary that end in `(start, end]`, and the file's `gtids_before` when the segment is
/// the first after the format description (where the checkpoints put it too).
fn records_of(index: &FileIndex, start: u64, end: u64, first_end: u64) -> Vec<IndexRecord> {
    let mut records = Vec::new();
    if start == first_end
        && let Some(before) = &index.gtids_before
    {
        records.push(IndexRecord::GtidsBefore(before.clone()));
    }
    let from = index.transactions.partition_point(|t| t.end <= start);
    records.extend(
        index.transactions[from..]
            .iter()
            .take_while(|t| t.end <= end)
            .cloned()
            .map(IndexRecord::Transaction),
    );
    if let Some(boundary) = index.boundary.filter(|&b| b > start && b <= end) {
        records.push(IndexRecord::Boundary { end: boundary });
    }
    records
}

async fn join_one(
    puts: &mut tokio::task::JoinSet<Result<(), super::store::StoreError>>,
    name: &str,
) -> Result<(), StorageError> {
    match puts.join_next().await {
        Some(Ok(result)) => Ok(result?),
        Some(Err(e)) => Err(StorageError::inconsistent(
            name,
            0,
            format!("consolidation upload task: {e}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::remote::test_fixtures::segments;

    fn index(ends: &[u64]) -> FileIndex {
        crate::remote::test_fixtures::index(100, ends)
    }

    fn ranges(c: &Consolidation) -> Vec<(u64, u64, bool)> {
        c.target
            .iter()
            .map(|(s, e, records)| (*s, *e, records.is_some()))
            .collect()
    }

    #[test]
    fn checkpoints_become_a_few_segments_that_merge_as_a_binary_counter() {
        let file = ("0001-server1", "b.000001");
        // Ten checkpoints of 10 bytes after the format description.
        let small: Vec<(u64, u64)> = std::iter::once((0, 100))
            .chain((0..10).map(|i| (100 + i * 10, 110 + i * 10)))
            .collect();
        let ends: Vec<u64> = (1..=10).map(|i| 100 + i * 10).collect();
        let plan =
            Consolidation::plan(file, &segments(&small), 0, &index(&ends), 1000).expect("a plan");
        assert_eq!(ranges(&plan), [(100, 200, true)]);
        assert_eq!(plan.end, 200);
        // Consolidated, then ten more: the new piece is no larger, so they merge.
        let mut now = vec![(0, 100), (100, 200)];
        now.extend((0..10).map(|i| (200 + i * 10, 210 + i * 10)));
        let ends: Vec<u64> = (1..=20).map(|i| 100 + i * 10).collect();
        let plan =
            Consolidation::plan(file, &segments(&now), 200, &index(&ends), 1000).expect("a plan");
        assert_eq!(ranges(&plan), [(100, 300, true)]);
        // A larger one before stays: only the new part is written.
        let plan =
            Consolidation::plan(file, &segments(&now), 200, &index(&ends), 150).expect("a plan");
        assert_eq!(ranges(&plan), [(100, 200, false), (200, 300, true)]);
        // Records go with the new piece only, from the index.
        let records = plan.target[1].2.as_ref().expect("new");
        assert_eq!(records.len(), 10);
    }

    #[test]
    fn nothing_to_gain_or_a_closed_file_is_left_alone() {
        let file = ("0001-server1", "b.000001");
        let one = segments(&[(0, 100), (100, 200)]);
        assert!(Consolidation::plan(file, &one, 0, &index(&[200]), 1000).is_none());
        let mut closed = index(&[150, 200, 250]);
        closed.closed = Some((250, None));
        let two = segments(&[(0, 100), (100, 200), (200, 250)]);
        assert!(Consolidation::plan(file, &two, 0, &closed, 1000).is_none());
    }
}
