//! The checkpointer: ships what the local spool holds durably to the object archive.
//!
//! `binlogd stream` writes the local archive (the spool) exactly as without an object
//! store. Each [`Uploader::checkpoint`] reads the spool's index files from where it left
//! off (index lines are written only once their bytes are durable, so the last indexed
//! transaction's end is a safe point), uploads the bytes since the previous checkpoint as
//! one new segment (several for a backlog, each at most [`UploadOptions::max_segment`]),
//! then that range's index records, and seals a closed file with its manifest and a
//! catalogue entry. Every byte is uploaded once. What was uploaded before a restart is
//! found again by listing the file's keys.

use super::catalogue::{self, CatalogueVersion};
use super::compact::{self, Compaction, CompactionCost};
use super::consolidate::{Consolidated, Consolidation};
use super::crypt::{ClientKey, SCHEME, authenticated_metadata};
use super::format::{
    Catalogue, EncryptionRecord, FORMAT_VERSION, FileSummary, Manifest, Marker, SegmentRecord,
    ServerSide, encode_index_object, epoch_name, parse_manifest,
};
use super::keys::{self, Codec, FileObject};
use super::segment;
use super::store::{Metadata, ObjectStore};
use crate::error::StorageError;
use crate::index::{FileIndex, IndexRecord};
use crate::layout::read_range;
use crate::layout::{Epoch, LocalArchive, binlog_order};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Segment compression.
    pub codec: Codec,
    /// The largest segment: a backlog (or a huge transaction) is cut into pieces this big.
    pub max_segment: u64,
    /// How many segments may be uploading at once.
    pub max_parallel: usize,
    /// Client-side encryption of segments.
    pub client_key: Option<ClientKey>,
    /// What the store is asked to do (recorded in manifests; the store does it).
    pub server_side: Option<ServerSide>,
    /// How long the small segments a compaction replaced stay before they are deleted,
    /// so that a reader that read the file's old manifest finishes with them.
    pub delete_delay: std::time::Duration,
    /// Every this many segments of a file still open (or `max_segment` of its bytes),
    /// its part so far is consolidated (see `consolidate.rs`).
    pub consolidate_every: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            codec: Codec::Zst,
            max_segment: 16 << 20,
            max_parallel: 4,
            client_key: None,
            server_side: None,
            delete_delay: std::time::Duration::from_secs(15 * 60),
            consolidate_every: 300,
        }
    }
}

/// Counters since the uploader started.
#[derive(Debug, Clone, Default)]
pub struct UploadStats {
    /// Bytes sent in PUTs (segments, index objects, manifests, catalogue).
    pub bytes_put: u64,
    /// Binlog bytes shipped (uncompressed).
    pub binlog_bytes: u64,
    /// Segments uploaded.
    pub segments: u64,
    /// Files sealed.
    pub sealed: u64,
    /// Bytes sent in PUTs by compaction (large segments, rewritten manifests, deletion
    /// records): beside, not in, the recovery point's path.
    pub compaction_bytes_put: u64,
    /// Files compacted.
    pub compacted: u64,
    /// Objects deleted after a compaction or a consolidation.
    pub deleted_objects: u64,
    /// Consolidations of open files (their bytes are counted in `compaction_bytes_put`).
    pub consolidations: u64,
}

/// The object archive's writer side.
#[derive(Debug)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    spool: LocalArchive,
    options: UploadOptions,
    catalogue: Catalogue,
    /// What the store held when the catalogue was read or last written.
    catalogue_version: CatalogueVersion,
    files: HashMap<(String, String), FileProgress>,
    epochs_described: Vec<String>,
    stats: UploadStats,
    /// Sealed files the catalogue in the store does not list yet.
    catalogue_dirty: bool,
    /// The spool's files when the uploader opened: only they can have been uploaded in
    /// part by an earlier run; files that appear later are new.
    present_at_start: Vec<(String, String)>,
    /// Sealed files still in the spool, waiting to be compacted (the front one first).
    compactions: std::collections::VecDeque<Compaction>,
    /// The compaction step running beside the checkpoints, if one is.
    compacting: Option<RunningCompaction>,
    /// Deletion records not carried out yet, `(due, key)`; `None` until listed.
    deletions: Option<Vec<(u64, String)>>,
    /// The consolidation of an open file running beside the checkpoints, if one is.
    consolidating: Option<RunningConsolidation>,
}

/// Where one file stands.
#[derive(Debug)]
struct FileProgress {
    uploaded_end: u64,
    segments: Vec<SegmentRecord>,
    sealed: bool,
    /// Bytes of the local index file read so far.
    index_read: u64,
    /// Records read but not yet uploaded in a segment's index object.
    pending: Vec<IndexRecord>,
    /// Everything read so far, for the manifest.
    index: FileIndex,
    /// Where the last record read ends: how far the spool is durable.
    durable_end: u64,
    /// Where the file's last consolidation ends (its newest partial manifest's), 0 if
    /// none: `segments` before it are the consolidated ones.
    consolidated_to: u64,
}

impl Uploader {
    /// Opens the object archive in `store` for writing from `spool`: creates the marker
    /// in an empty prefix, refuses a prefix that holds something else or a newer format,
    /// and reads the catalogue.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        spool: LocalArchive,
        options: UploadOptions,
    ) -> Result<Uploader, StorageError> {
        let mut stats = UploadStats::default();
        match store.get(keys::MARKER).await? {
            Some(object) => {
                let marker: Marker = serde_json::from_slice(&object.body).map_err(|e| {
                    StorageError::NotAnArchive {
                        path: format!("{}/{}", store.location(), keys::MARKER).into(),
                        message: e.to_string(),
                    }
                })?;
                if marker.format != "binlogd-archive" || marker.version > FORMAT_VERSION {
                    return Err(StorageError::NotAnArchive {
                        path: store.location().into(),
                        message: format!(
                            "a {} archive of version {}; this binlogd reads version {FORMAT_VERSION}",
                            marker.format, marker.version
                        ),
                    });
                }
            }
            None => {
                // The lease is taken before the archive is created: any other key (two
                // are enough to find one) means the prefix holds something else.
                let existing = first_keys(store.as_ref(), 2).await?;
                if let Some(other) = existing.iter().find(|o| o.key != keys::LEASE) {
                    return Err(StorageError::NotAnArchive {
                        path: store.location().into(),
                        message: format!(
                            "not empty ({} is there) and no {}: refusing to write into it",
                            other.key,
                            keys::MARKER
                        ),
                    });
                }
                let body = serde_json::to_vec(&Marker {
                    format: "binlogd-archive".to_owned(),
                    version: FORMAT_VERSION,
                })
                .map_err(|e| StorageError::inconsistent(keys::MARKER, 0, e.to_string()))?;
                stats.bytes_put += body.len() as u64;
                store
                    .put(keys::MARKER, body.into(), &Metadata::new())
                    .await?;
            }
        }
        let (catalogue, catalogue_version) =
            catalogue::read(store.as_ref(), options.client_key.as_ref()).await?;
        let catalogue = catalogue.unwrap_or(Catalogue {
            version: FORMAT_VERSION,
            ..Catalogue::default()
        });
        check_same_encryption(&catalogue, &options, &store.location())?;
        // What the spool holds now; files that appear later are this run's own.
        let mut present = Vec::new();
        for epoch in spool.epochs()? {
            let name = epoch_name(&epoch);
            for file in epoch.binlog_files()? {
                present.push((name.clone(), file));
            }
        }
        if present.is_empty() {
            // Beside the marker, the catalogue and the lease, one key (four are enough
            // to find it) means an archive is there; not a listing of all of it.
            let held = first_keys(store.as_ref(), 4).await?;
            if let Some(data) = held
                .iter()
                .find(|o| o.key != keys::MARKER && o.key != keys::LEASE && o.key != keys::CATALOGUE)
            {
                return Err(StorageError::NotAnArchive {
                    path: spool.root().to_owned(),
                    message: format!(
                        "this spool is empty, but {} already holds an archive ({} is there): \
                         binlogd continues an object archive only from the spool that fed it. \
                         Point --spool-dir at that spool, or use a new prefix",
                        store.location(),
                        data.key
                    ),
                });
            }
        }
        Ok(Uploader {
            store,
            spool,
            options,
            catalogue,
            catalogue_version,
            files: HashMap::new(),
            epochs_described: Vec::new(),
            stats,
            catalogue_dirty: false,
            present_at_start: present,
            compactions: std::collections::VecDeque::new(),
            compacting: None,
            deletions: None,
            consolidating: None,
        })
    }

    /// Counters.
    pub fn stats(&self) -> &UploadStats {
        &self.stats
    }

    /// Spool bytes durable but not yet uploaded, as of the last checkpoint.
    pub fn backlog(&self) -> u64 {
        self.files
            .values()
            .map(|f| f.durable_end.saturating_sub(f.uploaded_end))
            .sum()
    }

    /// Binlog bytes of sealed files not compacted yet, and of an open file's
    /// consolidation under way.
    pub fn compaction_backlog(&self) -> u64 {
        let running = self.compacting.as_ref().map_or(0, |r| r.remaining)
            + self.consolidating.as_ref().map_or(0, |r| r.remaining);
        running
            + self
                .compactions
                .iter()
                .map(Compaction::remaining)
                .sum::<u64>()
    }

    /// Waits for the compaction step running beside the checkpoints, if one is, and
    /// takes its result (for `binlogd upload`, which finishes compactions before it
    /// exits).
    pub async fn settle_compaction(&mut self) -> Result<(), StorageError> {
        if let Some(running) = self.consolidating.take() {
            let outcome = running.task.await;
            self.take_consolidation_outcome(
                running.epoch,
                running.name,
                running.delete_at,
                outcome,
            )?;
        }
        if let Some(running) = self.compacting.take() {
            let outcome = running.task.await;
            self.take_compaction_outcome(running.epoch, running.name, running.delete_at, outcome)?;
        }
        Ok(())
    }

    /// Uploads everything the spool holds durably and seals what is closed; then takes
    /// one step of compaction and deletes what is due. Returns the number of binlog bytes
    /// shipped. A store error leaves the state consistent: the next checkpoint carries on
    /// from the last object written.
    pub async fn checkpoint(&mut self) -> Result<u64, StorageError> {
        let mut shipped = 0;
        let epochs = self.spool.epochs()?;
        let newest_epoch = epochs.last().map(|e| e.number);
        let mut releasable = Vec::new();
        for epoch in &epochs {
            let epoch_name = epoch_name(epoch);
            let names = epoch.binlog_files()?;
            let newest_file = names.last().cloned();
            for name in &names {
                if !self.epochs_described.contains(&epoch_name) {
                    self.describe_epoch(epoch, &epoch_name).await?;
                }
                shipped += self.ship_file(epoch, &epoch_name, name).await?;
                let keep = Some(epoch.number) == newest_epoch && Some(name) == newest_file.as_ref();
                if !keep {
                    releasable.push((epoch, epoch_name.clone(), name.clone()));
                }
            }
        }
        // One catalogue write for all the files sealed by this checkpoint, and only then
        // may their spool copies go.
        if self.catalogue_dirty {
            self.stats.bytes_put += catalogue::write(
                self.store.as_ref(),
                &self.catalogue,
                &mut self.catalogue_version,
                self.options.client_key.as_ref(),
            )
            .await?;
            self.catalogue_dirty = false;
        }
        // Consolidation and compaction run beside the checkpoints, never in their way.
        self.consolidate_step(&epochs).await?;
        self.compact_step(&epochs).await?;
        for (epoch, epoch_name, name) in releasable {
            let compacting = self
                .compactions
                .iter()
                .map(|c| (&c.epoch, &c.name))
                .chain(self.compacting.as_ref().map(|r| (&r.epoch, &r.name)))
                .any(|(e, n)| *e == epoch_name && *n == name);
            if !compacting {
                self.release_from_spool(epoch, &epoch_name, &name)?;
            }
        }
        self.delete_due().await?;
        Ok(shipped)
    }

    /// Takes the result of the compaction step running beside the checkpoints if it has
    /// finished, and starts the next step if none is running: the next large segments of
    /// the file at the front of the queue, and its finish when they are all up.
    async fn compact_step(&mut self, epochs: &[Epoch]) -> Result<(), StorageError> {
        if self
            .compacting
            .as_ref()
            .is_some_and(|r| r.task.is_finished())
            && let Some(running) = self.compacting.take()
        {
            // Finished: this await returns at once.
            let outcome = running.task.await;
            self.take_compaction_outcome(running.epoch, running.name, running.delete_at, outcome)?;
        }
        if self.compacting.is_some() {
            return Ok(());
        }
        // A file's consolidation writes under it: its compaction lists it after.
        if let (Some(front), Some(running)) = (self.compactions.front(), &self.consolidating)
            && (front.epoch == running.epoch && front.name == running.name)
        {
            return Ok(());
        }
        let Some(mut compaction) = self.compactions.pop_front() else {
            return Ok(());
        };
        let Some(epoch) = epochs.iter().find(|e| epoch_name(e) == compaction.epoch) else {
            // Its spool copy is gone: nothing to cut from.
            return Ok(());
        };
        let delete_at =
            crate::index::now_micros().saturating_add(self.options.delete_delay.as_micros() as u64);
        let (store, client_key, codec, parallel) = (
            Arc::clone(&self.store),
            self.options.client_key.clone(),
            self.options.codec,
            self.options.max_parallel,
        );
        let data = epoch.data_path(&compaction.name);
        let (epoch_name, name, remaining) = (
            compaction.epoch.clone(),
            compaction.name.clone(),
            compaction.remaining(),
        );
        let task = tokio::spawn(async move {
            let result = compaction
                .step(
                    &store,
                    client_key.as_ref(),
                    codec,
                    &data,
                    parallel,
                    delete_at,
                )
                .await;
            (compaction, result)
        });
        self.compacting = Some(RunningCompaction {
            epoch: epoch_name,
            name,
            remaining,
            delete_at,
            task,
        });
        Ok(())
    }

    /// What a finished compaction step did: its cost counted, the file back at the front
    /// of the queue unless it is done. A failed step is tried again later (it fails
    /// nothing else: compaction is beside the recovery point's path).
    fn take_compaction_outcome(
        &mut self,
        epoch: String,
        name: String,
        delete_at: u64,
        outcome: Result<(Compaction, Result<CompactionCost, StorageError>), tokio::task::JoinError>,
    ) -> Result<(), StorageError> {
        let (compaction, result) = outcome.map_err(|e| {
            StorageError::inconsistent(&name, 0, format!("compaction task of {epoch}: {e}"))
        })?;
        match result {
            Ok(cost) => {
                self.stats.compaction_bytes_put += cost.bytes_put;
                // Not listed yet: the first listing will find the record.
                if let (Some(record), Some(deletions)) =
                    (cost.deletion_record, self.deletions.as_mut())
                {
                    deletions.push((delete_at, record));
                    deletions.sort();
                }
                if cost.finished {
                    self.stats.compacted += 1;
                } else {
                    self.compactions.push_front(compaction);
                }
            }
            Err(e) => {
                tracing::warn!(file = %format!("{epoch}/{name}"), error = %e,
                    "compacting a sealed file failed; trying again at a later checkpoint");
                self.compactions.push_front(compaction);
            }
        }
        Ok(())
    }

    /// Takes the result of the consolidation running beside the checkpoints if it has
    /// finished, and starts one if none is running and an open file has
    /// `consolidate_every` segments (or `max_segment` bytes) since its last.
    async fn consolidate_step(&mut self, epochs: &[Epoch]) -> Result<(), StorageError> {
        if self
            .consolidating
            .as_ref()
            .is_some_and(|r| r.task.is_finished())
            && let Some(running) = self.consolidating.take()
        {
            // Finished: this await returns at once.
            let outcome = running.task.await;
            self.take_consolidation_outcome(
                running.epoch,
                running.name,
                running.delete_at,
                outcome,
            )?;
        }
        if self.consolidating.is_some() {
            return Ok(());
        }
        let every = self.options.consolidate_every.max(2);
        let due = self.files.iter().find(|(_, p)| {
            if p.sealed || p.index.closed.is_some() {
                return false;
            }
            let since = p.segments.iter().filter(|s| s.start >= p.consolidated_to);
            let (count, bytes) = since.fold((0, 0), |(n, b), s| (n + 1, b + s.end - s.start));
            count >= every || (count >= 2 && bytes >= self.options.max_segment)
        });
        let Some(((epoch_name, name), progress)) = due else {
            return Ok(());
        };
        let Some(epoch) = epochs.iter().find(|e| epoch_name == &self::epoch_name(e)) else {
            return Ok(());
        };
        let Some(consolidation) = Consolidation::plan(
            (epoch_name, name),
            &progress.segments,
            progress.consolidated_to,
            &progress.index,
            self.options.max_segment,
        ) else {
            return Ok(());
        };
        let delete_at =
            crate::index::now_micros().saturating_add(self.options.delete_delay.as_micros() as u64);
        let remaining = consolidation.remaining();
        let task = tokio::spawn(consolidation.run(
            Arc::clone(&self.store),
            self.options.client_key.clone(),
            self.options.codec,
            epoch.data_path(name),
            self.options.max_parallel,
            delete_at,
        ));
        self.consolidating = Some(RunningConsolidation {
            epoch: epoch_name.clone(),
            name: name.clone(),
            remaining,
            delete_at,
            task,
        });
        Ok(())
    }

    /// What a finished consolidation did: the file's segments up to its end replaced by
    /// the consolidated ones (unless the file was sealed meanwhile: its manifest stands),
    /// its cost counted. A failed one is tried again at a later checkpoint.
    fn take_consolidation_outcome(
        &mut self,
        epoch: String,
        name: String,
        delete_at: u64,
        outcome: Result<Result<Consolidated, StorageError>, tokio::task::JoinError>,
    ) -> Result<(), StorageError> {
        let result = outcome.map_err(|e| {
            StorageError::inconsistent(&name, 0, format!("consolidation task of {epoch}: {e}"))
        })?;
        match result {
            Ok(done) => {
                self.stats.compaction_bytes_put += done.bytes_put;
                self.stats.consolidations += 1;
                if let (Some(record), Some(deletions)) =
                    (done.deletion_record, self.deletions.as_mut())
                {
                    deletions.push((delete_at, record));
                    deletions.sort();
                }
                if let Some(progress) = self.files.get_mut(&(epoch, name))
                    && !progress.sealed
                {
                    let after = progress.segments.partition_point(|s| s.end <= done.end);
                    let mut segments = done.segments;
                    segments.extend(progress.segments.drain(after..));
                    progress.segments = segments;
                    progress.consolidated_to = done.end;
                }
            }
            Err(e) => tracing::warn!(file = %format!("{epoch}/{name}"), error = %e,
                "consolidating an open file failed; trying again at a later checkpoint"),
        }
        Ok(())
    }

    /// Carries out the deletion records that are due (listed once, then kept in memory).
    async fn delete_due(&mut self) -> Result<(), StorageError> {
        if self.deletions.is_none() {
            self.deletions = Some(super::deletion::pending_deletions(self.store.as_ref()).await?);
        }
        let now = crate::index::now_micros();
        while let Some((due, key)) = self.deletions.as_ref().and_then(|d| d.first()).cloned() {
            if due > now {
                break;
            }
            self.stats.deleted_objects += super::deletion::carry_out(
                self.store.as_ref(),
                self.options.client_key.as_ref(),
                &key,
            )
            .await? as u64;
            if let Some(deletions) = self.deletions.as_mut() {
                deletions.retain(|(_, k)| *k != key);
            }
        }
        Ok(())
    }

    async fn describe_epoch(
        &mut self,
        epoch: &Epoch,
        epoch_name: &str,
    ) -> Result<(), StorageError> {
        let key = keys::source(epoch_name);
        if self.store.get(&key).await?.is_none() {
            let body = std::fs::read(epoch.dir.join(crate::layout::SOURCE_FILE))
                .map_err(StorageError::io("reading", &epoch.dir))?;
            self.stats.bytes_put += body.len() as u64;
            let metadata = authenticated_metadata(self.options.client_key.as_ref(), &key, &body);
            self.store.put(&key, body.into(), &metadata).await?;
        }
        self.epochs_described.push(epoch_name.to_owned());
        Ok(())
    }

    /// Uploads the durable, not yet uploaded bytes of one file; seals it when closed.
    async fn ship_file(
        &mut self,
        epoch: &Epoch,
        epoch_name: &str,
        name: &str,
    ) -> Result<u64, StorageError> {
        let id = (epoch_name.to_owned(), name.to_owned());
        if !self.files.contains_key(&id) {
            let progress = self.find_progress(epoch, epoch_name, name).await?;
            self.files.insert(id.clone(), progress);
        }
        let store = Arc::clone(&self.store);
        let options = self.options.clone();
        let Some(progress) = self.files.get_mut(&id) else {
            return Ok(0);
        };
        if progress.sealed {
            return Ok(0);
        }
        progress.read_new_index_lines(&epoch.index_path(name))?;
        let mut shipped = 0;
        let parallel = options.max_parallel.max(1);
        while progress.uploaded_end < progress.durable_end {
            // Up to `parallel` segments go up at once; their index objects only after all
            // of them, so an index object never names bytes the store lacks.
            let mut batch: Vec<PackedSegment> = Vec::new();
            let mut cursor = progress.uploaded_end;
            while batch.len() < parallel && cursor < progress.durable_end {
                let start = cursor;
                let end = if start == 0 {
                    // The first segment is the magic and the format description alone:
                    // the one part of a file the server changes later (it clears the "in
                    // use" flag on close), so the one segment rewritten at seal.
                    match format_description_end(&epoch.data_path(name))? {
                        Some(end) if end <= progress.durable_end => end,
                        _ => break,
                    }
                } else {
                    progress.cut_point(start, options.max_segment)
                };
                let bytes = read_range(&epoch.data_path(name), start, end)?;
                let crc = crc32fast::hash(&bytes);
                let key = keys::segment(epoch_name, name, start, end, options.codec);
                let (packed, metadata) =
                    segment::pack(&key, &bytes, options.codec, options.client_key.as_ref())
                        .map_err(StorageError::io("compressing", &epoch.data_path(name)))?;
                batch.push(PackedSegment {
                    key,
                    start,
                    end,
                    crc,
                    body: Bytes::from(packed),
                    metadata,
                });
                cursor = end;
            }
            if batch.is_empty() {
                break;
            }
            let mut puts = tokio::task::JoinSet::new();
            for segment in &batch {
                self.stats.bytes_put += segment.body.len() as u64;
                let (store, key, body, metadata) = (
                    Arc::clone(&store),
                    segment.key.clone(),
                    segment.body.clone(),
                    segment.metadata.clone(),
                );
                puts.spawn(async move { store.put(&key, body, &metadata).await });
            }
            join_all_puts(puts).await?;
            let mut index_puts = tokio::task::JoinSet::new();
            for segment in &batch {
                let records = progress.take_records_until(segment.end);
                if !records.is_empty() {
                    let packed =
                        Bytes::from(encode_index_object(&records, &epoch.index_path(name))?);
                    self.stats.bytes_put += packed.len() as u64;
                    let store = Arc::clone(&store);
                    let key = keys::segment_index(epoch_name, name, segment.start, segment.end);
                    let metadata =
                        authenticated_metadata(options.client_key.as_ref(), &key, &packed);
                    index_puts.spawn(async move { store.put(&key, packed, &metadata).await });
                }
            }
            join_all_puts(index_puts).await?;
            for segment in batch {
                progress.segments.push(SegmentRecord {
                    key: segment.key,
                    start: segment.start,
                    end: segment.end,
                    codec: options.codec,
                    crc32: format!("{:08x}", segment.crc),
                });
                progress.uploaded_end = segment.end;
                self.stats.segments += 1;
                self.stats.binlog_bytes += segment.end - segment.start;
                shipped += segment.end - segment.start;
            }
        }
        if let Some((size, _)) = progress.index.closed.clone()
            && progress.uploaded_end == size
        {
            self.seal(epoch, epoch_name, name).await?;
        }
        Ok(shipped)
    }

    /// What an earlier run uploaded of this file, from a listing, and the file's local
    /// index up to there.
    async fn find_progress(
        &mut self,
        epoch: &Epoch,
        epoch_name: &str,
        name: &str,
    ) -> Result<FileProgress, StorageError> {
        let fresh = !self
            .present_at_start
            .iter()
            .any(|(e, n)| e == epoch_name && n == name);
        // A file consolidated while open: its newest partial manifest says what makes its
        // first bytes, and only what came after is listed.
        let partial = if fresh {
            None
        } else {
            super::partial::newest_partial(
                self.store.as_ref(),
                self.options.client_key.as_ref(),
                (epoch_name, name),
                0,
            )
            .await?
        };
        let listed = if fresh {
            // Created by this run's stream: nothing of it can be in the store yet.
            Vec::new()
        } else {
            let prefix = keys::file_prefix(epoch_name, name);
            let start_after = partial.as_ref().map(|p| format!("{prefix}{:020}", p.end));
            self.store
                .query(super::store::ListQuery {
                    prefix: &prefix,
                    start_after: start_after.as_deref(),
                    ..super::store::ListQuery::default()
                })
                .await?
                .objects
        };
        let mut segments = Vec::new();
        let mut indexed_segments = Vec::new();
        let mut sealed = false;
        for object in &listed {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            match keys::parse_file_object(leaf) {
                Some(FileObject::Segment { start, end, codec }) => {
                    segments.push((start, end, codec, object.key.clone()))
                }
                Some(FileObject::SegmentIndex { start, end }) => {
                    indexed_segments.push((start, end))
                }
                Some(FileObject::Manifest) => sealed = true,
                Some(FileObject::Partial { .. }) | None => {}
            }
        }
        let mut progress = FileProgress {
            uploaded_end: 0,
            segments: Vec::new(),
            sealed,
            index_read: 0,
            pending: Vec::new(),
            index: FileIndex::default(),
            durable_end: 0,
            consolidated_to: 0,
        };
        if let Some(partial) = partial.filter(|_| !sealed) {
            progress.uploaded_end = partial.end;
            progress.consolidated_to = partial.end;
            progress.segments = partial.segments;
        }
        if sealed {
            let key = keys::manifest(epoch_name, name);
            if let Some(object) = self.store.get(&key).await? {
                let mut manifest = parse_manifest(
                    &object,
                    &key,
                    self.options.client_key.as_ref(),
                    &self.store.location(),
                )?;
                // Sealed by an earlier run that may have stopped before the catalogue
                // named the file: name it now.
                if !self.is_catalogued(epoch_name, name) {
                    self.add_to_catalogue(manifest.summary.clone());
                }
                // ... or before it compacted the file, which is still in the spool.
                if !manifest.compacted {
                    let index = crate::index::read_index(&epoch.index_path(name))?;
                    if let Some(plan) =
                        compact::plan(&index, &manifest.segments, self.options.max_segment, 0)
                    {
                        if manifest.index.is_empty() {
                            // Sealed by a release that wrote no whole index.
                            let (chunks, bytes) = super::whole_index::upload(
                                self.store.as_ref(),
                                self.options.client_key.as_ref(),
                                (epoch_name, name),
                                &epoch.index_path(name),
                                manifest.summary.size,
                            )
                            .await?;
                            self.stats.compaction_bytes_put += bytes;
                            manifest.index = chunks;
                        }
                        self.compactions.push_back(Compaction::new(manifest, plan));
                    }
                }
            }
            return Ok(progress);
        }
        // The contiguous chain from the start (or the consolidated part), the longest
        // segment at each offset (a retried batch's beside what arrived of the first try);
        // anything past a hole is a leftover of an interrupted run and is uploaded again.
        segments.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for (start, end, codec, key) in segments {
            if start != progress.uploaded_end {
                continue;
            }
            // Its CRC is filled in from the spool's bytes at seal: reading it back from
            // the store would download every segment of the file.
            progress.segments.push(SegmentRecord {
                key,
                start,
                end,
                codec,
                crc32: String::new(),
            });
            progress.uploaded_end = end;
        }
        progress.read_new_index_lines(&epoch.index_path(name))?;
        // Records of uploaded segments are uploaded, unless a crash came between a
        // segment and its index object: then write that index object now.
        let uploaded_end = progress.uploaded_end;
        let mut records = progress.take_records_until(uploaded_end);
        for segment in progress.segments.clone() {
            let mut in_segment = Vec::new();
            records.retain(|record| {
                let inside = match record {
                    IndexRecord::GtidsBefore(_) => segment.start == 0,
                    IndexRecord::Transaction(t) => t.end > segment.start && t.end <= segment.end,
                    IndexRecord::Boundary { end } => *end > segment.start && *end <= segment.end,
                    IndexRecord::Closed { size, .. } => *size == segment.end,
                };
                if inside {
                    in_segment.push(record.clone());
                }
                !inside
            });
            let consolidated = segment.end <= progress.consolidated_to;
            if !in_segment.is_empty()
                && !consolidated
                && !indexed_segments.contains(&(segment.start, segment.end))
            {
                let packed = encode_index_object(&in_segment, &epoch.index_path(name))?;
                self.stats.bytes_put += packed.len() as u64;
                let key = keys::segment_index(epoch_name, name, segment.start, segment.end);
                let metadata =
                    authenticated_metadata(self.options.client_key.as_ref(), &key, &packed);
                self.store.put(&key, Bytes::from(packed), &metadata).await?;
            }
        }
        Ok(progress)
    }

    async fn seal(
        &mut self,
        epoch: &Epoch,
        epoch_name: &str,
        name: &str,
    ) -> Result<(), StorageError> {
        let id = (epoch_name.to_owned(), name.to_owned());
        let Some(progress) = self.files.get_mut(&id) else {
            return Ok(());
        };
        // Segments an earlier run uploaded: their CRCs, from the same bytes in the spool.
        for segment in progress.segments.iter_mut().skip(1) {
            if segment.crc32.is_empty() {
                let bytes = read_range(&epoch.data_path(name), segment.start, segment.end)?;
                segment.crc32 = format!("{:08x}", crc32fast::hash(&bytes));
            }
        }
        // The first segment went up while the file was open, with the "in use" flag the
        // server has cleared since: upload it again as the closed file has it.
        if let Some(first) = progress.segments.first_mut() {
            let bytes = read_range(&epoch.data_path(name), first.start, first.end)?;
            let crc = format!("{:08x}", crc32fast::hash(&bytes));
            if crc != first.crc32 {
                let (packed, metadata) = segment::pack(
                    &first.key,
                    &bytes,
                    first.codec,
                    self.options.client_key.as_ref(),
                )
                .map_err(StorageError::io("compressing", &epoch.data_path(name)))?;
                self.stats.bytes_put += packed.len() as u64;
                self.store
                    .put(&first.key, Bytes::from(packed), &metadata)
                    .await?;
                first.crc32 = crc;
            }
        }
        let mut summary = summarise(epoch, epoch_name, name, progress);
        let encryption = EncryptionRecord {
            client: self.options.client_key.as_ref().map(|_| SCHEME.to_owned()),
            key_check: self
                .options
                .client_key
                .as_ref()
                .map(|k| k.check().to_owned()),
            server: self.options.server_side.clone(),
        };
        summary.encryption = (encryption != EncryptionRecord::default()).then_some(encryption);
        // The whole index in a few objects, before the manifest that names them.
        let (index, index_bytes) = super::whole_index::upload(
            self.store.as_ref(),
            self.options.client_key.as_ref(),
            (epoch_name, name),
            &epoch.index_path(name),
            summary.size,
        )
        .await?;
        // Consolidation, not the recovery point: counted with compaction.
        self.stats.compaction_bytes_put += index_bytes;
        let manifest = Manifest {
            version: FORMAT_VERSION,
            summary: summary.clone(),
            segments: progress.segments.clone(),
            index,
            compacted: false,
        };
        let compaction = compact::plan(
            &progress.index,
            &progress.segments,
            self.options.max_segment,
            progress.consolidated_to,
        )
        .map(|plan| Compaction::new(manifest.clone(), plan));
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::inconsistent(name, 0, e.to_string()))?;
        self.stats.bytes_put += body.len() as u64;
        let key = keys::manifest(epoch_name, name);
        let metadata = authenticated_metadata(self.options.client_key.as_ref(), &key, &body);
        self.store.put(&key, body.into(), &metadata).await?;
        progress.sealed = true;
        progress.pending.clear();
        progress.index = FileIndex::default();
        self.add_to_catalogue(summary);
        self.stats.sealed += 1;
        self.compactions.extend(compaction);
        Ok(())
    }

    fn is_catalogued(&self, epoch_name: &str, name: &str) -> bool {
        self.catalogue
            .files
            .iter()
            .any(|f| f.epoch == epoch_name && f.name == name)
    }

    /// Names a sealed file in the catalogue (written at the end of the checkpoint).
    fn add_to_catalogue(&mut self, summary: FileSummary) {
        self.catalogue
            .files
            .retain(|f| !(f.epoch == summary.epoch && f.name == summary.name));
        self.catalogue.files.push(summary);
        self.catalogue.files.sort_by(|a, b| {
            a.epoch
                .cmp(&b.epoch)
                .then_with(|| binlog_order(&a.name, &b.name))
        });
        self.catalogue_dirty = true;
    }

    /// Deletes what `retention` lets go among the sealed files (never the newest one),
    /// finishing any purge a crash interrupted. Returns the files deleted and their bytes.
    pub async fn purge(
        &mut self,
        retention: &crate::retention::Retention,
        now_micros: u64,
    ) -> Result<(Vec<crate::ArchiveFile>, u64), StorageError> {
        let files: Vec<crate::ArchiveFile> = self
            .catalogue
            .files
            .iter()
            .cloned()
            .map(crate::ArchiveFile::from)
            .collect();
        // The catalogue lists sealed files only: a file the stream still writes (in the
        // spool, not catalogued) is newer than all of them.
        let newer_follows = self
            .files
            .keys()
            .any(|(epoch, name)| !self.is_catalogued(epoch, name));
        let victims = retention
            .purgeable_before(&files, now_micros, newer_follows)
            .to_vec();
        let bytes = crate::retention::purge_remote(
            self.store.as_ref(),
            &mut self.catalogue,
            &mut self.catalogue_version,
            self.options.client_key.as_ref(),
            &victims,
        )
        .await?;
        Ok((victims, bytes))
    }

    /// Removes a sealed, catalogued file from the spool: the object archive has it.
    fn release_from_spool(
        &mut self,
        epoch: &Epoch,
        epoch_name: &str,
        name: &str,
    ) -> Result<(), StorageError> {
        if !self.is_catalogued(epoch_name, name) {
            return Ok(());
        }
        for path in [epoch.index_path(name), epoch.data_path(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("removing", &path)(e)),
            }
        }
        self.files.remove(&(epoch_name.to_owned(), name.to_owned()));
        Ok(())
    }
}

impl FileProgress {
    /// Reads the complete lines appended to the local index since the last call.
    fn read_new_index_lines(&mut self, path: &std::path::Path) -> Result<(), StorageError> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io("opening", path)(e)),
        };
        file.seek(SeekFrom::Start(self.index_read))
            .map_err(StorageError::io("reading", path))?;
        let mut appended = Vec::new();
        file.read_to_end(&mut appended)
            .map_err(StorageError::io("reading", path))?;
        // Only whole lines: the writer may be appending the next one.
        let whole = appended
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        for (number, line) in appended[..whole].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: IndexRecord =
                serde_json::from_slice(line).map_err(|e| StorageError::BadIndex {
                    path: path.to_owned(),
                    line: number + 1,
                    message: format!("{e} (after byte {} of the index)", self.index_read),
                })?;
            match &record {
                IndexRecord::Transaction(t) => self.durable_end = self.durable_end.max(t.end),
                IndexRecord::Closed { size, .. } => self.durable_end = self.durable_end.max(*size),
                IndexRecord::Boundary { end } => self.durable_end = self.durable_end.max(*end),
                IndexRecord::GtidsBefore(_) => {}
            }
            self.index.apply(record.clone());
            self.pending.push(record);
        }
        self.index_read += whole as u64;
        Ok(())
    }

    /// Where the segment starting at `start` ends: at the durable end if that is near,
    /// else at the last transaction end within `max` bytes, else (one transaction larger
    /// than `max`) after `max` bytes.
    fn cut_point(&self, start: u64, max: u64) -> u64 {
        let limit = start.saturating_add(max);
        if self.durable_end <= limit {
            return self.durable_end;
        }
        self.pending
            .iter()
            .filter_map(|record| match record {
                IndexRecord::Transaction(t) if t.end > start && t.end <= limit => Some(t.end),
                IndexRecord::Boundary { end } if *end > start && *end <= limit => Some(*end),
                _ => None,
            })
            .max()
            .unwrap_or(limit)
    }

    /// Removes and returns the pending records that a segment ending at `end` covers.
    fn take_records_until(&mut self, end: u64) -> Vec<IndexRecord> {
        let (covered, rest): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|record| match record {
                // Goes with the file's first segment, whatever it ends at.
                IndexRecord::GtidsBefore(_) => end > 0,
                IndexRecord::Transaction(t) => t.end <= end,
                IndexRecord::Boundary { end: at } => *at <= end,
                IndexRecord::Closed { size, .. } => *size <= end,
            });
        self.pending = rest;
        covered
    }
}

/// The first `count` keys of the store, in key order (one request, whatever the prefix
/// holds).
async fn first_keys(
    store: &dyn ObjectStore,
    count: usize,
) -> Result<Vec<super::store::Listed>, StorageError> {
    let mut objects = store
        .query(super::store::ListQuery {
            limit: Some(count),
            ..super::store::ListQuery::default()
        })
        .await?
        .objects;
    objects.truncate(count);
    Ok(objects)
}

/// A consolidation running beside the checkpoints.
#[derive(Debug)]
struct RunningConsolidation {
    epoch: String,
    name: String,
    /// Binlog bytes it rewrites.
    remaining: u64,
    delete_at: u64,
    task: tokio::task::JoinHandle<Result<Consolidated, StorageError>>,
}

/// A compaction step running beside the checkpoints.
#[derive(Debug)]
struct RunningCompaction {
    epoch: String,
    name: String,
    /// Binlog bytes its file had left to rewrite when it started.
    remaining: u64,
    delete_at: u64,
    task: tokio::task::JoinHandle<(Compaction, Result<CompactionCost, StorageError>)>,
}

/// A segment read from the spool and packed, ready to go up.
struct PackedSegment {
    key: String,
    start: u64,
    end: u64,
    crc: u32,
    body: Bytes,
    metadata: Metadata,
}

/// Waits for every PUT; the first failure is the answer (the rest are still awaited, so
/// none outlives the checkpoint).
async fn join_all_puts(
    mut puts: tokio::task::JoinSet<Result<(), super::store::StoreError>>,
) -> Result<(), StorageError> {
    let mut first_error = None;
    while let Some(done) = puts.join_next().await {
        let failed = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(StorageError::from(e)),
            Err(e) => Some(StorageError::inconsistent(
                "upload",
                0,
                format!("upload task: {e}"),
            )),
        };
        if first_error.is_none() {
            first_error = failed;
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn summarise(epoch: &Epoch, epoch_name: &str, name: &str, progress: &FileProgress) -> FileSummary {
    let index = &progress.index;
    let mut crc = crc32fast::Hasher::new();
    for segment in &progress.segments {
        let value = u32::from_str_radix(&segment.crc32, 16).unwrap_or(0);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            value,
            segment.end - segment.start,
        ));
    }
    let (size, next_file) = index
        .closed
        .clone()
        .unwrap_or((progress.uploaded_end, None));
    FileSummary {
        name: name.to_owned(),
        epoch: epoch_name.to_owned(),
        source: epoch.source.clone(),
        size,
        crc32: format!("{:08x}", crc.finalize()),
        gtids_before: index.gtids_before.clone().unwrap_or_default(),
        gtids_after: index.gtids_after(),
        first_commit_micros: index.transactions.first().map(|t| t.commit_micros),
        last_commit_micros: index.transactions.last().map(|t| t.commit_micros),
        transactions: index.transactions.len() as u64,
        next_file,
        encryption: None,
    }
}

/// Refuses to go on with other encryption than the archive's newest sealed file has: a
/// reader holds one client key and one SSE-C key, and a file half in one and half in
/// another could not be read back whole.
fn check_same_encryption(
    catalogue: &Catalogue,
    options: &UploadOptions,
    location: &str,
) -> Result<(), StorageError> {
    let Some(newest) = catalogue.files.last() else {
        return Ok(());
    };
    let recorded = newest.encryption.clone().unwrap_or_default();
    let archived = recorded.key_check.as_deref();
    let given = options.client_key.as_ref().map(ClientKey::check);
    let client_problem = match (archived, given) {
        (Some(archived), Some(given)) if archived != given => Some(format!(
            "its files are encrypted with another key (key check {archived}; the key given \
             has {given}): one archive, one key"
        )),
        (Some(archived), None) => Some(format!(
            "its files are encrypted (key check {archived}): give the same --encryption-key-file"
        )),
        _ => None,
    };
    let sse_c = |sse: &Option<ServerSide>| {
        sse.as_ref()
            .filter(|s| s.mode == "sse-c")
            .and_then(|s| s.key.clone())
    };
    let server_problem = match (sse_c(&recorded.server), sse_c(&options.server_side)) {
        (Some(archived), Some(given)) if archived != given => Some(format!(
            "its segments are SSE-C encrypted with another key (key MD5 {archived}; the key \
             given has {given}): one archive, one key"
        )),
        (Some(archived), None) => Some(format!(
            "its segments are SSE-C encrypted (key MD5 {archived}): give the same \
             --sse-c-key-file"
        )),
        _ => None,
    };
    match client_problem.or(server_problem) {
        None => Ok(()),
        Some(message) => Err(StorageError::NotAnArchive {
            path: location.into(),
            message,
        }),
    }
}

/// Where the file's format description (the event after the magic) ends; `None` while
/// its header is not all there.
fn format_description_end(path: &std::path::Path) -> Result<Option<u64>, StorageError> {
    let mut file = std::fs::File::open(path).map_err(StorageError::io("opening", path))?;
    let mut head = [0u8; 4 + binlogd_parser::HEADER_LEN];
    match file.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StorageError::io("reading", path)(e)),
    }
    let size = u32::from_le_bytes([head[13], head[14], head[15], head[16]]);
    Ok(Some(4 + u64::from(size)))
}
