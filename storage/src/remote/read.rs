//! Reading an object archive: what it holds, and any file back byte for byte.

use super::catalogue::{self, CatalogueVersion};
use super::crypt::{ClientKey, check_authentic};
use super::file_segments::Fetch;
pub use super::file_segments::FileSegments;
use super::format::{
    Catalogue, FORMAT_VERSION, FileRef, FileSummary, Manifest, Marker, epoch_number,
    parse_index_object, parse_manifest,
};
use super::keys::{self, FileObject};
use super::segment;
use super::store::{ListQuery, ObjectStore};
use super::unsealed::UnsealedFile;
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
        /// Its segments and index as far as they are uploaded, to be looked at again
        /// ([`RemoteArchive::look_again`]) for what comes next.
        unsealed: Box<UnsealedFile>,
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

/// An object archive opened for reading.
#[derive(Debug)]
pub struct RemoteArchive {
    store: Arc<dyn ObjectStore>,
    catalogue: Catalogue,
    catalogue_version: CatalogueVersion,
    client_key: Option<ClientKey>,
    max_parallel: usize,
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
    ///
    /// Costs what the archive's newest files cost, not its age: the catalogue names every
    /// sealed file, so only the places a file not sealed yet can be are listed (see
    /// [`RemoteArchive::unsealed_files`]), never the whole prefix.
    pub async fn files(&self) -> Result<Vec<RemoteFile>, StorageError> {
        self.files_after(Vec::new()).await
    }

    /// [`RemoteArchive::files`], given the files not sealed yet as an earlier call left
    /// them: those still not sealed are looked at again from where that look ended, so
    /// following an archive costs what is new in it.
    pub async fn files_after(
        &self,
        known: Vec<UnsealedFile>,
    ) -> Result<Vec<RemoteFile>, StorageError> {
        let mut files: Vec<RemoteFile> = self
            .catalogue
            .files
            .iter()
            .cloned()
            .map(|summary| RemoteFile::Sealed(Box::new(summary)))
            .collect();
        let mut known = known;
        for (epoch, name) in self.unsealed_files().await? {
            let mut unsealed = match known
                .iter()
                .position(|f| f.epoch() == epoch && f.name() == name)
            {
                Some(at) => known.swap_remove(at),
                None => UnsealedFile::new(&epoch, &name),
            };
            self.look_again(&mut unsealed).await?;
            let size = unsealed.size();
            if size == 0 {
                continue;
            }
            files.push(RemoteFile::Open {
                epoch,
                name,
                size,
                unsealed: Box::new(unsealed),
            });
        }
        Ok(files)
    }

    /// The files the catalogue does not name (nor a purge in progress), as `(epoch,
    /// name)` in archive order: in each epoch, the files after its last sealed one — the
    /// newest epoch's file being written, an old epoch's last file that its server never
    /// closed. One listing of the epochs and one of each epoch's tail, each a page of
    /// folder names however many segments the archive holds.
    pub async fn unsealed_files(&self) -> Result<Vec<(String, String)>, StorageError> {
        let folders = self
            .store
            .query(ListQuery {
                one_level: true,
                ..ListQuery::default()
            })
            .await?
            .folders;
        let mut epochs: Vec<(u32, &str)> = folders
            .iter()
            .map(|folder| folder.trim_end_matches('/'))
            .filter_map(|epoch| Some((epoch_number(epoch)?, epoch)))
            .collect();
        epochs.sort_unstable();
        let mut unsealed = Vec::new();
        for (_, epoch) in epochs {
            let last_sealed = self.catalogue.files.iter().rev().find(|f| f.epoch == epoch);
            // Keys sort by bytes: `NAME0` sorts after every `NAME/...` and before the
            // next file's folder, so the listing starts just after the last sealed file.
            let start_after = last_sealed.map(|f| format!("{epoch}/{}0", f.name));
            let prefix = format!("{epoch}/");
            let listing = self
                .store
                .query(ListQuery {
                    prefix: &prefix,
                    start_after: start_after.as_deref(),
                    one_level: true,
                    limit: None,
                })
                .await?;
            let mut names: Vec<String> = listing
                .folders
                .iter()
                .filter_map(|f| f.strip_prefix(&prefix)?.strip_suffix('/'))
                .map(str::to_owned)
                .collect();
            // A server's numbering can outgrow its digits (`.999999` → `.1000000`), and
            // the next file then sorts before the last sealed one: look for it by name.
            if let (Some(last), Some(after)) = (last_sealed, &start_after)
                && let Some(next) = &last.next_file
                && format!("{prefix}{next}/").as_str() < after.as_str()
                && !names.contains(next)
                && !self
                    .store
                    .query(ListQuery {
                        prefix: &keys::file_prefix(epoch, next),
                        limit: Some(1),
                        ..ListQuery::default()
                    })
                    .await?
                    .objects
                    .is_empty()
            {
                names.push(next.clone());
            }
            names.retain(|name| {
                let catalogued = self
                    .catalogue
                    .files
                    .iter()
                    .any(|f| f.epoch == epoch && &f.name == name);
                let being_purged = self
                    .catalogue
                    .purging
                    .iter()
                    .any(|f: &FileRef| f.epoch == epoch && &f.name == name);
                !catalogued && !being_purged
            });
            names.sort_by(|a, b| binlog_order(a, b));
            unsealed.extend(names.into_iter().map(|name| (epoch.to_owned(), name)));
        }
        Ok(unsealed)
    }

    /// A file's index as far as it is uploaded: a sealed file's from the chunks its
    /// manifest names (two requests for most files), else — a file still being written,
    /// or one sealed by an earlier release — from its segments' index objects.
    pub async fn file_index(&self, epoch: &str, name: &str) -> Result<FileIndex, StorageError> {
        if let Some(summary) = self
            .catalogue
            .files
            .iter()
            .find(|f| f.epoch == epoch && f.name == name)
        {
            let manifest = self.manifest(summary).await?;
            if !manifest.index.is_empty() {
                return super::whole_index::read(
                    &self.store,
                    self.client_key.as_ref(),
                    name,
                    &manifest.index,
                    summary.size,
                    self.max_parallel,
                )
                .await;
            }
            // Sealed by a release that wrote no whole index.
            return self.segment_indexes(epoch, name).await;
        }
        Ok(self.first_look(epoch, name).await?.index().clone())
    }

    /// A sealed file's index from its segments' index objects, one request each.
    async fn segment_indexes(&self, epoch: &str, name: &str) -> Result<FileIndex, StorageError> {
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

    /// A sealed file's manifest, authenticated with a client key.
    async fn manifest(&self, summary: &FileSummary) -> Result<Manifest, StorageError> {
        let (epoch, name) = (&summary.epoch, &summary.name);
        let key = keys::manifest(epoch, name);
        let object = self.store.get(&key).await?.ok_or_else(|| {
            StorageError::inconsistent(name, 0, format!("sealed, but its manifest {key} is gone"))
        })?;
        parse_manifest(
            &object,
            &key,
            self.client_key.as_ref(),
            &self.store.location(),
        )
    }

    /// A sealed file's segments, from its manifest: exactly those, in order, end to end.
    /// Neither a segment left over beside them nor one missing goes unnoticed.
    async fn sealed_plan(&self, summary: &FileSummary) -> Result<Vec<Fetch>, StorageError> {
        let (epoch, name) = (&summary.epoch, &summary.name);
        let manifest = self.manifest(summary).await?;
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

    /// A file not sealed yet: its segments from one look (see [`UnsealedFile`]), from
    /// the start to the first hole.
    async fn listed_plan(&self, epoch: &str, name: &str) -> Result<Vec<Fetch>, StorageError> {
        Ok(self.first_look(epoch, name).await?.segments().plan)
    }

    /// A file not sealed yet, looked at once: its newest partial manifest and what came
    /// after, as far as it is uploaded.
    async fn first_look(&self, epoch: &str, name: &str) -> Result<UnsealedFile, StorageError> {
        let mut file = UnsealedFile::new(epoch, name);
        self.look_again(&mut file).await?;
        Ok(file)
    }

    /// Looks at a file not sealed yet again (see [`UnsealedFile::look_again`]).
    pub async fn look_again(&self, file: &mut UnsealedFile) -> Result<bool, StorageError> {
        file.look_again(&self.store, self.client_key.as_ref()).await
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
        Ok(FileSegments::new(name, plan, sealed.is_some()))
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
    let object = store
        .get(key)
        .await?
        .ok_or_else(|| StorageError::SegmentGone {
            file: name.to_owned(),
            offset: start,
            key: key.to_owned(),
        })?;
    let length = usize::try_from(end - start).unwrap_or(usize::MAX);
    segment::unpack(key, &object, codec, length, client_key)
        .map_err(|e| StorageError::inconsistent(name, start, format!("segment {key}: {e}")))
}
