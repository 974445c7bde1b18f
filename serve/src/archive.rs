//! The archive as `binlogd serve` reads it, wherever it is: a directory (which a `binlogd
//! stream` may be writing: the live tail) or an object store (`s3://`: sealed files and,
//! at the upload cadence, the one being written). Every epoch's files in order, and what
//! the setup queries and the start of a dump need to know of them.
//!
//! A local listing is a directory walk; indexes are read only by their ends unless a dump
//! needs transactions. A remote listing is the catalogue (one GET) plus a listing of the
//! files not sealed yet.

use std::path::PathBuf;
use std::sync::Arc;

use binlogd_storage::archive::server_id_of_epoch;
use binlogd_storage::remote::crypt::ClientKey;
use binlogd_storage::remote::format::epoch_name;
use binlogd_storage::remote::read::{RemoteArchive, RemoteFile};
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::{GtidState, LocalArchive, SourceIdentity, read_index, read_index_ends};

use crate::error::ServeError;
use crate::start::FileFacts;

/// Where the archive is.
#[derive(Debug)]
pub enum ArchiveSource {
    /// A directory.
    Local(LocalArchive),
    /// An object store prefix.
    Remote(RemoteSource),
}

/// An object archive: the store and how to read it.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    /// The store, at the archive's prefix.
    pub store: Arc<dyn ObjectStore>,
    /// The client key, if segments are encrypted.
    pub key: Option<ClientKey>,
}

impl RemoteSource {
    /// Opens the archive as it stands now (its catalogue read again).
    pub(crate) async fn open(&self) -> Result<Arc<RemoteArchive>, ServeError> {
        Ok(Arc::new(
            RemoteArchive::open(Arc::clone(&self.store), self.key.clone()).await?,
        ))
    }
}

/// Where one file's bytes and index are.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    /// In a local archive.
    Local { data: PathBuf, index: PathBuf },
    /// In an object archive, as listed.
    Remote {
        archive: Arc<RemoteArchive>,
        /// Bytes readable when listed.
        size: u64,
        gtids_before: GtidState,
        gtids_after: GtidState,
        sealed: bool,
    },
}

/// One file of the archive.
#[derive(Debug, Clone)]
pub(crate) struct ServedFile {
    /// Its epoch's directory name (`0002-server7`).
    pub epoch: String,
    /// The server's name for it.
    pub name: String,
    /// `@@server_id` of the server that wrote it.
    pub server_id: u32,
    /// Where it is.
    pub place: Place,
}

impl ServedFile {
    /// `epoch/name`, for messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.epoch, self.name)
    }

    /// Whether `other` is the same file of the archive.
    pub fn is(&self, other: &ServedFile) -> bool {
        self.epoch == other.epoch && self.name == other.name
    }
}

/// The archive's files, oldest epoch first, in the server's order within an epoch, and
/// the newest epoch's source server.
#[derive(Debug)]
pub(crate) struct Listing {
    pub files: Vec<ServedFile>,
    pub source: Option<SourceIdentity>,
}

impl ArchiveSource {
    /// Where the archive is, for messages.
    pub fn location(&self) -> String {
        match self {
            ArchiveSource::Local(archive) => archive.root().display().to_string(),
            ArchiveSource::Remote(remote) => remote.store.location(),
        }
    }

    /// Lists the archive as it is now.
    pub(crate) async fn list(&self) -> Result<Listing, ServeError> {
        match self {
            ArchiveSource::Local(archive) => {
                let mut files = Vec::new();
                let mut source = None;
                for epoch in archive.epochs()? {
                    let name = epoch_name(&epoch);
                    for file in epoch.binlog_files()? {
                        files.push(ServedFile {
                            epoch: name.clone(),
                            place: Place::Local {
                                data: epoch.data_path(&file),
                                index: epoch.index_path(&file),
                            },
                            server_id: epoch.source.server_id,
                            name: file,
                        });
                    }
                    source = Some(epoch.source);
                }
                Ok(Listing { files, source })
            }
            ArchiveSource::Remote(remote) => {
                let archive = remote.open().await?;
                let mut files = Vec::new();
                for file in archive.files().await? {
                    let served = match file {
                        RemoteFile::Sealed(summary) => ServedFile {
                            server_id: summary.source.server_id,
                            place: Place::Remote {
                                archive: Arc::clone(&archive),
                                size: summary.size,
                                gtids_before: summary.gtids_before.clone(),
                                gtids_after: summary.gtids_after.clone(),
                                sealed: true,
                            },
                            epoch: summary.epoch,
                            name: summary.name,
                        },
                        RemoteFile::Open { epoch, name, size } => {
                            let index = archive.file_index(&epoch, &name).await?;
                            ServedFile {
                                server_id: server_id_of_epoch(&epoch),
                                place: Place::Remote {
                                    archive: Arc::clone(&archive),
                                    size,
                                    gtids_before: index.gtids_before.clone().unwrap_or_default(),
                                    gtids_after: index.gtids_after(),
                                    sealed: false,
                                },
                                epoch,
                                name,
                            }
                        }
                    };
                    files.push(served);
                }
                let source = match files.last() {
                    Some(last) => Some(archive.epoch_source(&last.epoch).await?),
                    None => None,
                };
                Ok(Listing { files, source })
            }
        }
    }
}

/// What choosing a start needs of each file (locally, from the first line of each index).
pub(crate) async fn start_facts(files: &[ServedFile]) -> Result<Vec<FileFacts>, ServeError> {
    let mut facts = Vec::with_capacity(files.len());
    for file in files {
        facts.push(match &file.place {
            Place::Local { data, index } => {
                let (data, index) = (data.clone(), index.clone());
                let (ends, size) = blocking(move || {
                    Ok((
                        read_index_ends(&index)?,
                        std::fs::metadata(&data).map_or(0, |m| m.len()),
                    ))
                })
                .await?;
                FileFacts {
                    name: file.name.clone(),
                    gtids_before: ends.gtids_before.unwrap_or_default(),
                    size,
                }
            }
            Place::Remote {
                size, gtids_before, ..
            } => FileFacts {
                name: file.name.clone(),
                gtids_before: gtids_before.clone(),
                size: *size,
            },
        });
    }
    Ok(facts)
}

/// The GTID state after the whole archive: the newest file's (a local one's from its
/// whole index).
pub(crate) async fn gtids_after(files: &[ServedFile]) -> Result<GtidState, ServeError> {
    match files.last().map(|f| &f.place) {
        None => Ok(GtidState::None),
        Some(Place::Local { index, .. }) => {
            let index = index.clone();
            blocking(move || Ok(read_index(&index)?.gtids_after())).await
        }
        Some(Place::Remote { gtids_after, .. }) => Ok(gtids_after.clone()),
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServeError::Config(format!("reading the archive failed to run: {e}")))?
}
