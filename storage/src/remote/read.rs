//! Reading an object archive: what it holds, and any file back byte for byte.

use super::catalogue::{self, CatalogueVersion};
use super::crypt::{ClientKey, check_authentic};
use super::format::{
    Catalogue, FORMAT_VERSION, FileSummary, Marker, parse_index_object, parse_manifest,
};
use super::keys::{self, Codec, FileObject};
use super::segment;
use super::store::ObjectStore;
use crate::error::StorageError;
use crate::index::FileIndex;
use crate::layout::binlog_order;
use std::sync::Arc;

/// A file the archive holds: sealed (from the catalogue) or still being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteFile {
    /// Closed and sealed: its catalogue entry.
    Sealed(Box<FileSummary>),
    /// Not sealed yet: how many contiguous bytes are uploaded.
    Open {
        /// Epoch directory name.
        epoch: String,
        /// The server's file name.
        name: String,
        /// Bytes readable now.
        size: u64,
    },
}

impl RemoteFile {
    /// `(epoch, name)`.
    pub fn id(&self) -> (&str, &str) {
        match self {
            RemoteFile::Sealed(s) => (&s.epoch, &s.name),
            RemoteFile::Open { epoch, name, .. } => (epoch, name),
        }
    }
}

/// A file not in the catalogue, from a listing.
struct OpenFile {
    epoch: String,
    name: String,
    segments: Vec<(u64, u64)>,
}

/// An object archive opened for reading.
#[derive(Debug)]
pub struct RemoteArchive {
    store: Arc<dyn ObjectStore>,
    catalogue: Catalogue,
    catalogue_version: CatalogueVersion,
    client_key: Option<ClientKey>,
    max_parallel: usize,
}

/// One segment to fetch for a file: its range, codec and key, and how many of its bytes
/// an earlier segment already gave.
#[derive(Debug, Clone)]
struct Fetch {
    start: u64,
    end: u64,
    codec: Codec,
    key: String,
    skip: usize,
}

impl RemoteArchive {
    /// Opens the archive: checks its marker and reads its catalogue. With `client_key`,
    /// segments are decrypted with it and every other object binlogd wrote (catalogue,
    /// manifests, index objects) must be authenticated by it; without, encrypted segments
    /// cannot be read and nothing is authenticated.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        client_key: Option<ClientKey>,
    ) -> Result<RemoteArchive, StorageError> {
        let not_archive = |message: String| StorageError::NotAnArchive {
            path: store.location().into(),
            message,
        };
        let marker = store
            .get(keys::MARKER)
            .await?
            .ok_or_else(|| not_archive(format!("no {}: not a binlogd archive", keys::MARKER)))?;
        let marker: Marker =
            serde_json::from_slice(&marker.body).map_err(|e| not_archive(e.to_string()))?;
        if marker.version > FORMAT_VERSION {
            return Err(not_archive(format!(
                "archive format version {}; this binlogd reads up to {FORMAT_VERSION}",
                marker.version
            )));
        }
        let (catalogue, catalogue_version) =
            catalogue::read(store.as_ref(), client_key.as_ref()).await?;
        Ok(RemoteArchive {
            store,
            catalogue: catalogue.unwrap_or_default(),
            catalogue_version,
            client_key,
            max_parallel: 4,
        })
    }

    /// Fetches up to this many segments at once when reading a file.
    pub fn with_max_parallel(mut self, max_parallel: usize) -> RemoteArchive {
        self.max_parallel = max_parallel.max(1);
        self
    }

    /// The catalogue as read at open.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The catalogue as read at open and the store's version of it, for a writer that
    /// changes it (see [`catalogue::write`]).
    pub fn catalogue_for_update(&self) -> (Catalogue, CatalogueVersion) {
        (self.catalogue.clone(), self.catalogue_version.clone())
    }

    /// The client key given at open.
    pub fn client_key(&self) -> Option<&ClientKey> {
        self.client_key.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store and prefix, for messages.
    pub fn location(&self) -> String {
        self.store.location().to_string()
    }

    /// Every file, in archive order: the catalogue's, then those not sealed yet.
    pub async fn files(&self) -> Result<Vec<RemoteFile>, StorageError> {
        let mut files: Vec<RemoteFile> = self
            .catalogue
            .files
            .iter()
            .cloned()
            .map(|summary| RemoteFile::Sealed(Box::new(summary)))
            .collect();
        // Whatever the catalogue does not name yet: list the keys.
        let mut open: Vec<OpenFile> = Vec::new();
        for object in self.store.list("").await? {
            let mut parts = object.key.splitn(3, '/');
            let (Some(epoch), Some(name), Some(leaf)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(FileObject::Segment { start, end, .. }) = keys::parse_file_object(leaf) else {
                continue;
            };
            let catalogued = self
                .catalogue
                .files
                .iter()
                .any(|f| f.epoch == epoch && f.name == name);
            let being_purged = self
                .catalogue
                .purging
                .iter()
                .any(|f| f.epoch == epoch && f.name == name);
            if catalogued || being_purged {
                continue;
            }
            match open.iter_mut().find(|f| f.epoch == epoch && f.name == name) {
                Some(file) => file.segments.push((start, end)),
                None => open.push(OpenFile {
                    epoch: epoch.to_owned(),
                    name: name.to_owned(),
                    segments: vec![(start, end)],
                }),
            }
        }
        open.sort_by(|a, b| {
            a.epoch
                .cmp(&b.epoch)
                .then_with(|| binlog_order(&a.name, &b.name))
        });
        for mut file in open {
            file.segments.sort_unstable();
            // Readable: the contiguous run from the start. Segments may overlap: a batch
            // retried after one upload failed is cut anew, beside what did arrive.
            let mut size = 0;
            for (start, end) in file.segments {
                if start <= size && end > size {
                    size = end;
                }
            }
            files.push(RemoteFile::Open {
                epoch: file.epoch,
                name: file.name,
                size,
            });
        }
        Ok(files)
    }

    /// A file's index as far as it is uploaded, from its segments' index objects.
    pub async fn file_index(&self, epoch: &str, name: &str) -> Result<FileIndex, StorageError> {
        let mut index = FileIndex::default();
        for object in self.store.list(&keys::file_prefix(epoch, name)).await? {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            if !matches!(
                keys::parse_file_object(leaf),
                Some(FileObject::SegmentIndex { .. })
            ) {
                continue;
            }
            let Some(found) = self.store.get(&object.key).await? else {
                continue;
            };
            check_authentic(self.client_key.as_ref(), &object.key, &found).map_err(|e| {
                StorageError::BadIndex {
                    path: format!("{}/{}", self.store.location(), object.key).into(),
                    line: 0,
                    message: e,
                }
            })?;
            let records = parse_index_object(&found.body).map_err(|(line, message)| {
                StorageError::BadIndex {
                    path: format!("{}/{}", self.store.location(), object.key).into(),
                    line,
                    message,
                }
            })?;
            for record in records {
                index.apply(record);
            }
        }
        Ok(index)
    }

    /// The bytes of a file as far as they are uploaded, checked segment by segment; a
    /// sealed file whole, as its manifest lists it, checked against its size and CRC32.
    pub async fn read_file(&self, epoch: &str, name: &str) -> Result<Vec<u8>, StorageError> {
        let sealed = self
            .catalogue
            .files
            .iter()
            .find(|f| f.epoch == epoch && f.name == name);
        let plan = match sealed {
            Some(summary) => self.sealed_plan(summary).await?,
            None => self.listed_plan(epoch, name).await?,
        };
        let bytes = self.fetch(name, plan).await?;
        if let Some(summary) = sealed {
            let crc = format!("{:08x}", crc32fast::hash(&bytes));
            if bytes.len() as u64 != summary.size || crc != summary.crc32 {
                return Err(StorageError::inconsistent(
                    name,
                    0,
                    format!(
                        "its segments make {} bytes with CRC32 {crc}; the catalogue says {} \
                         bytes with CRC32 {}",
                        bytes.len(),
                        summary.size,
                        summary.crc32
                    ),
                ));
            }
        }
        Ok(bytes)
    }

    /// A sealed file's segments, from its manifest: exactly those, in order, end to end.
    /// Neither a segment left over beside them nor one missing goes unnoticed.
    async fn sealed_plan(&self, summary: &FileSummary) -> Result<Vec<Fetch>, StorageError> {
        let (epoch, name) = (&summary.epoch, &summary.name);
        let key = keys::manifest(epoch, name);
        let object = self.store.get(&key).await?.ok_or_else(|| {
            StorageError::inconsistent(name, 0, format!("sealed, but its manifest {key} is gone"))
        })?;
        let manifest = parse_manifest(
            &object,
            &key,
            self.client_key.as_ref(),
            &self.store.location(),
        )?;
        if manifest.summary.size != summary.size || manifest.summary.crc32 != summary.crc32 {
            return Err(StorageError::inconsistent(
                name,
                0,
                format!(
                    "its manifest says {} bytes with CRC32 {}, the catalogue {} bytes with CRC32 {}",
                    manifest.summary.size, manifest.summary.crc32, summary.size, summary.crc32
                ),
            ));
        }
        let mut offset = 0;
        let mut plan = Vec::with_capacity(manifest.segments.len().min(1 << 16));
        for segment in manifest.segments {
            let expected = keys::segment(epoch, name, segment.start, segment.end, segment.codec);
            if segment.start != offset || segment.end <= segment.start || segment.key != expected {
                return Err(StorageError::inconsistent(
                    name,
                    offset,
                    format!(
                        "its manifest lists segment {} ({}..{}) where bytes from {offset} \
                         should follow",
                        segment.key, segment.start, segment.end
                    ),
                ));
            }
            offset = segment.end;
            plan.push(Fetch {
                start: segment.start,
                end: segment.end,
                codec: segment.codec,
                key: segment.key,
                skip: 0,
            });
        }
        if offset != summary.size {
            return Err(StorageError::inconsistent(
                name,
                offset,
                format!(
                    "its manifest's segments end at {offset}, but the file has {} bytes",
                    summary.size
                ),
            ));
        }
        Ok(plan)
    }

    /// A file not sealed yet: its segments from a listing, from the start to the first hole.
    async fn listed_plan(&self, epoch: &str, name: &str) -> Result<Vec<Fetch>, StorageError> {
        let mut segments = Vec::new();
        for object in self.store.list(&keys::file_prefix(epoch, name)).await? {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            if let Some(FileObject::Segment { start, end, codec }) = keys::parse_file_object(leaf) {
                segments.push((start, end, codec, object.key));
            }
        }
        // Of segments that start together, the longest first.
        segments.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        // Which segments make the file, from the listing alone. Segments may overlap: a
        // batch retried after one of its uploads failed is cut anew, and what did arrive
        // of the first try stays beside it. Each byte is taken from the first segment
        // that reaches it; what a segment repeats is skipped.
        let mut plan = Vec::new();
        let mut offset = 0;
        for (start, end, codec, key) in segments {
            if start > offset {
                return Err(StorageError::inconsistent(
                    name,
                    offset,
                    format!(
                        "the archive has no bytes from {offset} to {start} (segment {key} follows a hole)"
                    ),
                ));
            }
            if end <= offset {
                // Covered already: a leftover of an interrupted upload.
                continue;
            }
            let skip = usize::try_from(offset - start).unwrap_or(usize::MAX);
            plan.push(Fetch {
                start,
                end,
                codec,
                key,
                skip,
            });
            offset = end;
        }
        Ok(plan)
    }

    /// The source server of an epoch (its `source.json`), authenticated with a client key.
    pub async fn epoch_source(
        &self,
        epoch: &str,
    ) -> Result<crate::layout::SourceIdentity, StorageError> {
        let key = keys::source(epoch);
        let bad = |message: String| StorageError::BadIndex {
            path: format!("{}/{key}", self.store.location()).into(),
            line: 0,
            message,
        };
        let object = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| bad("missing: the epoch's source is not recorded".to_owned()))?;
        check_authentic(self.client_key.as_ref(), &key, &object).map_err(bad)?;
        crate::layout::parse_epoch_source(&object.body).map_err(|e| bad(e.to_string()))
    }

    /// A file's segments in order, to read any part of it without the rest: from its
    /// manifest when sealed, else from a listing of what is uploaded so far.
    pub async fn file_segments(
        &self,
        epoch: &str,
        name: &str,
    ) -> Result<FileSegments, StorageError> {
        let sealed = self
            .catalogue
            .files
            .iter()
            .find(|f| f.epoch == epoch && f.name == name);
        let plan = match sealed {
            Some(summary) => self.sealed_plan(summary).await?,
            None => self.listed_plan(epoch, name).await?,
        };
        Ok(FileSegments {
            name: name.to_owned(),
            size: plan.last().map_or(0, |f| f.end),
            sealed: sealed.is_some(),
            plan,
        })
    }

    /// The bytes of segment `at` of `segments` (from where the previous one ended to its
    /// end), fetched and checked (CRC32, size; with a client key, decrypted and
    /// authenticated).
    pub async fn fetch_segment(
        &self,
        segments: &FileSegments,
        at: usize,
    ) -> Result<Vec<u8>, StorageError> {
        let Some(fetch) = segments.plan.get(at) else {
            return Err(StorageError::inconsistent(
                &segments.name,
                segments.size,
                format!("no segment {at}"),
            ));
        };
        let mut plain =
            fetch_one(&self.store, self.client_key.as_ref(), &segments.name, fetch).await?;
        plain.drain(..fetch.skip.min(plain.len()));
        Ok(plain)
    }

    /// Fetches the planned segments, up to `max_parallel` at a time, and puts them
    /// together in order.
    async fn fetch(&self, name: &str, plan: Vec<Fetch>) -> Result<Vec<u8>, StorageError> {
        // Fetched up to `max_parallel` at a time, put together in order.
        let mut parts: Vec<Option<Vec<u8>>> = vec![None; plan.len()];
        let mut fetches = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut failure = None;
        loop {
            while failure.is_none() && next < plan.len() && fetches.len() < self.max_parallel.max(1)
            {
                let Fetch {
                    start,
                    end,
                    codec,
                    ref key,
                    ..
                } = plan[next];
                let fetch = Fetch {
                    start,
                    end,
                    codec,
                    key: key.clone(),
                    skip: 0,
                };
                let store = Arc::clone(&self.store);
                let client_key = self.client_key.clone();
                let name = name.to_owned();
                let slot = next;
                fetches.spawn(async move {
                    let plain = fetch_one(&store, client_key.as_ref(), &name, &fetch).await?;
                    Ok::<_, StorageError>((slot, plain))
                });
                next += 1;
            }
            let Some(done) = fetches.join_next().await else {
                break;
            };
            match done {
                Ok(Ok((slot, plain))) => parts[slot] = Some(plain),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(StorageError::inconsistent(
                        name,
                        0,
                        format!("download task: {e}"),
                    ));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Sized from what arrived, not from the keys' offsets: a key can say anything.
        let total = parts.iter().flatten().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(total);
        for (part, fetch) in parts.into_iter().zip(&plan) {
            if let Some(part) = part {
                bytes.extend_from_slice(part.get(fetch.skip..).unwrap_or_default());
            }
        }
        Ok(bytes)
    }
}

/// One segment's bytes, whole (its `skip` not applied), fetched and checked.
async fn fetch_one(
    store: &Arc<dyn ObjectStore>,
    client_key: Option<&ClientKey>,
    name: &str,
    fetch: &Fetch,
) -> Result<Vec<u8>, StorageError> {
    let Fetch {
        start,
        end,
        codec,
        ref key,
        ..
    } = *fetch;
    let object = store.get(key).await?.ok_or_else(|| {
        StorageError::inconsistent(name, start, format!("segment {key} vanished"))
    })?;
    let length = usize::try_from(end - start).unwrap_or(usize::MAX);
    segment::unpack(key, &object, codec, length, client_key)
        .map_err(|e| StorageError::inconsistent(name, start, format!("segment {key}: {e}")))
}

/// A file's segments, in order and end to end (see [`RemoteArchive::file_segments`]).
#[derive(Debug, Clone)]
pub struct FileSegments {
    name: String,
    plan: Vec<Fetch>,
    size: u64,
    sealed: bool,
}

impl FileSegments {
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
