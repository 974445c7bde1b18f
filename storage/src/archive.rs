//! One view of an archive, wherever it is kept: the files it holds, in archive order, with
//! what each one covers, and each file's transaction index on demand.
//!
//! `list`, `search`, `timeline`, `purge` and `restore` read archives through [`Archive`];
//! the backends differ in where a file's facts come from. A local archive reads each
//! file's index (`layout`, `index`); an object archive reads its catalogue for sealed files
//! and the uploaded index objects only for files still being written (`remote::read`), so
//! answering "which files" costs a GET and a few listings of folder names however long
//! the archive is and however many objects it has written.

use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::{FileIndex, read_index};
use crate::layout::LocalArchive;
use crate::remote::format::{FileSummary, epoch_name};
use crate::remote::read::{RemoteArchive, RemoteFile};
use serde::Serialize;

/// An archive to read.
#[derive(Debug)]
pub enum Archive {
    /// A directory on this machine.
    Local(LocalArchive),
    /// An object store prefix.
    Remote(RemoteArchive),
}

/// Whether a file can still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// The server may still be writing it.
    Open,
    /// The server rotated away from it (local archive).
    Closed,
    /// Closed and sealed with a manifest (object archive).
    Sealed,
}

impl FileState {
    /// `open`, `closed` or `sealed`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Open => "open",
            FileState::Closed => "closed",
            FileState::Sealed => "sealed",
        }
    }

    /// Whether the file is final.
    pub fn is_complete(self) -> bool {
        self != FileState::Open
    }
}

/// What an archive says about one of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveFile {
    /// The epoch (`0001-server1`): the files of one source server.
    pub epoch: String,
    /// The server's name for the file.
    pub name: String,
    /// Open, closed or sealed.
    pub state: FileState,
    /// Bytes archived (readable) now.
    pub size: u64,
    /// Where its last indexed transaction (or trailing whole event) ends: the end of what
    /// a replay may use. Equals `size` for a complete file.
    pub indexed_end: u64,
    /// How many transactions it holds.
    pub transactions: u64,
    /// The GTID state before its first transaction.
    pub gtids_before: GtidState,
    /// The GTID state after its last indexed transaction.
    pub gtids_after: GtidState,
    /// First commit time, µs since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_commit_micros: Option<u64>,
    /// Last commit time, µs since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_micros: Option<u64>,
    /// `@@server_id` of the source server.
    pub source_server_id: u32,
}

impl ArchiveFile {
    fn from_index(
        epoch: String,
        name: String,
        size: u64,
        index: &FileIndex,
        source_server_id: u32,
        complete_state: FileState,
    ) -> ArchiveFile {
        let state = if index.closed.is_some() {
            complete_state
        } else {
            FileState::Open
        };
        ArchiveFile {
            epoch,
            name,
            state,
            size,
            indexed_end: if index.closed.is_some() {
                size
            } else {
                index.indexed_end().min(size)
            },
            transactions: index.transactions.len() as u64,
            gtids_before: index.gtids_before.clone().unwrap_or_default(),
            gtids_after: index.gtids_after(),
            first_commit_micros: index.transactions.first().map(|t| t.commit_micros),
            last_commit_micros: index.transactions.last().map(|t| t.commit_micros),
            source_server_id,
        }
    }
}

impl From<FileSummary> for ArchiveFile {
    fn from(summary: FileSummary) -> ArchiveFile {
        ArchiveFile {
            state: FileState::Sealed,
            size: summary.size,
            indexed_end: summary.size,
            transactions: summary.transactions,
            first_commit_micros: summary.first_commit_micros,
            last_commit_micros: summary.last_commit_micros,
            source_server_id: summary.source.server_id,
            epoch: summary.epoch,
            name: summary.name,
            gtids_before: summary.gtids_before,
            gtids_after: summary.gtids_after,
        }
    }
}

impl Archive {
    /// Every file, oldest epoch first and in the server's order within an epoch.
    pub async fn files(&self) -> Result<Vec<ArchiveFile>, StorageError> {
        match self {
            Archive::Local(archive) => local_files(archive),
            Archive::Remote(archive) => {
                let mut files = Vec::new();
                for file in archive.files().await? {
                    match file {
                        RemoteFile::Sealed(summary) => files.push((*summary).into()),
                        RemoteFile::Open {
                            epoch,
                            name,
                            size,
                            unsealed,
                        } => {
                            let index = unsealed.index();
                            let server_id = server_id_of_epoch(&epoch);
                            // Uploaded but not sealed: the manifest, not the index's
                            // closing line, is what makes a remote file complete.
                            let mut file = ArchiveFile::from_index(
                                epoch,
                                name,
                                size,
                                index,
                                server_id,
                                FileState::Open,
                            );
                            file.indexed_end = index.indexed_end().min(size);
                            files.push(file);
                        }
                    }
                }
                Ok(files)
            }
        }
    }

    /// The transaction index of one file.
    pub async fn file_index(&self, file: &ArchiveFile) -> Result<FileIndex, StorageError> {
        match self {
            Archive::Local(archive) => {
                let path = archive.root().join(&file.epoch).join(format!(
                    "{}{}",
                    file.name,
                    crate::index::INDEX_SUFFIX
                ));
                read_index(&path)
            }
            Archive::Remote(archive) => archive.file_index(&file.epoch, &file.name).await,
        }
    }

    /// A file's archived bytes, whole (checked segment by segment on an object archive).
    pub async fn read_file(&self, epoch: &str, name: &str) -> Result<Vec<u8>, StorageError> {
        match self {
            Archive::Local(archive) => {
                let path = archive.root().join(epoch).join(name);
                std::fs::read(&path).map_err(StorageError::io("reading", &path))
            }
            Archive::Remote(archive) => archive.read_file(epoch, name).await,
        }
    }

    /// Where the archive is, for messages.
    pub fn location(&self) -> String {
        match self {
            Archive::Local(archive) => archive.root().display().to_string(),
            Archive::Remote(archive) => archive.location(),
        }
    }
}

/// Every file of a local archive, in archive order (what [`Archive::files`] returns for
/// one, without a runtime).
pub fn local_files(archive: &LocalArchive) -> Result<Vec<ArchiveFile>, StorageError> {
    let mut files = Vec::new();
    for epoch in archive.epochs()? {
        let epoch_dir = epoch_name(&epoch);
        for name in epoch.binlog_files()? {
            let index = read_index(&epoch.index_path(&name))?;
            let path = epoch.data_path(&name);
            let size = match std::fs::metadata(&path) {
                Ok(metadata) => metadata.len(),
                // Purged since the directory was listed: no longer part of the archive.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("reading", &path)(e)),
            };
            files.push(ArchiveFile::from_index(
                epoch_dir.clone(),
                name,
                size,
                &index,
                epoch.source.server_id,
                FileState::Closed,
            ));
        }
    }
    Ok(files)
}

/// The server id an epoch name carries (`0003-server42` → 42).
pub fn server_id_of_epoch(epoch: &str) -> u32 {
    epoch
        .split_once("-server")
        .and_then(|(_, id)| id.parse().ok())
        .unwrap_or(0)
}
