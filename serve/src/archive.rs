//! The archive as `binlogd serve` reads it, wherever it is: a directory (which a `binlogd
//! stream` may be writing: the live tail) or an object store (`s3://`: sealed files and,
//! at the upload cadence, the one being written). Every epoch's files in order, and what
//! the setup queries and the start of a dump need to know of them.
//!
//! A local listing is a directory walk; indexes are read only by their ends unless a dump
//! needs transactions. A remote listing is the catalogue (one GET) plus a look at the files
//! not sealed yet, listing only their keys after the last look's (see
//! `binlogd_storage::remote::unsealed`); it is shared by every session and taken again at
//! most once a second, so logins and dumps cost the store what is new in the archive,
//! not its age.

use std::path::PathBuf;
use std::sync::Arc;

use binlogd_storage::archive::server_id_of_epoch;
use binlogd_storage::remote::crypt::ClientKey;
use binlogd_storage::remote::format::epoch_name;
use binlogd_storage::remote::read::{RemoteArchive, RemoteFile};
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::remote::unsealed::UnsealedFile;
use binlogd_storage::{GtidState, LocalArchive, SourceIdentity, read_index, read_index_ends};

use crate::error::ServeError;
use crate::start::FileFacts;

/// The archive being served: where it is, and where serving ends, if it does.
#[derive(Debug)]
pub(crate) struct ArchiveSource {
    store: Store,
    until: Option<Until>,
    /// An object archive's last listing, shared by every session.
    remote_listing: Arc<tokio::sync::Mutex<RemoteListing>>,
}

/// How often an object archive is listed again at most: sessions that ask sooner share
/// the last listing.
const REMOTE_LISTING_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// How old a listing may be and still be served while a new one is taken in the
/// background: one older than this (nobody asked for a while) is taken anew first, so
/// that what a session is told is never more than this behind the archive.
const REMOTE_LISTING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// How recent a listing must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// The last one, refreshed in the background (unless too old).
    Shared,
    /// At most a second old.
    Recent,
    /// Taken now.
    Now,
}

/// An object archive's last listing, and what the next one starts from.
#[derive(Debug, Default)]
struct RemoteListing {
    taken: Option<std::time::Instant>,
    /// Whether a listing is being taken in the background.
    refreshing: bool,
    files: Vec<ServedFile>,
    /// Epoch sources read so far (they never change).
    sources: Vec<(String, SourceIdentity)>,
}

/// Where the archive is.
#[derive(Debug)]
enum Store {
    /// A directory.
    Local(LocalArchive),
    /// An object store prefix.
    Remote(RemoteSource),
}

/// Where a `binlogd serve` stops serving: nothing after this offset of this file, as if
/// the archive ended there and its source were idle. A restore's private instance serves
/// up to the restore's target and no further, so that its replica cannot apply a
/// transaction beyond the target whatever its `UNTIL` clause does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Until {
    /// The file's epoch (`0002-server7`).
    pub epoch: String,
    /// The file.
    pub file: String,
    /// Just past the last event to serve (an event boundary: a transaction's end).
    pub end: u64,
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
        /// A file not sealed yet: its segments and index as the listing saw them, for a
        /// dump to follow from there.
        unsealed: Option<Arc<UnsealedFile>>,
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
    /// A directory, served to its end and on.
    pub(crate) fn local(archive: LocalArchive, until: Option<Until>) -> ArchiveSource {
        ArchiveSource {
            store: Store::Local(archive),
            until,
            remote_listing: Default::default(),
        }
    }

    /// An object store, served to its end and on.
    pub(crate) fn remote(remote: RemoteSource, until: Option<Until>) -> ArchiveSource {
        ArchiveSource {
            store: Store::Remote(remote),
            until,
            remote_listing: Default::default(),
        }
    }

    /// Where the archive is, for messages.
    pub fn location(&self) -> String {
        match &self.store {
            Store::Local(archive) => archive.root().display().to_string(),
            Store::Remote(remote) => remote.store.location(),
        }
    }

    /// Whether it is in an object store (listing it costs a request).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.store, Store::Remote(_))
    }

    /// How far `file` may be sent, given how far it is readable (`end`) and whether it is
    /// complete (`closed`): the same, unless serving stops in this file — then up to the
    /// stop and never complete, so a dump waits there.
    pub(crate) fn servable(&self, file: &ServedFile, (end, closed): (u64, bool)) -> (u64, bool) {
        match &self.until {
            Some(until) if until.epoch == file.epoch && until.file == file.name => {
                (end.min(until.end), false)
            }
            _ => (end, closed),
        }
    }

    /// Lists the archive (up to the file serving stops in). An object archive's last
    /// listing is answered at once and, when older than a second, taken again in the
    /// background (one older than [`REMOTE_LISTING_MAX_AGE`] first): what a login asks
    /// costs the store little.
    pub(crate) async fn list(&self) -> Result<Listing, ServeError> {
        self.list_as(Freshness::Shared).await
    }

    /// Lists the archive as it is now, an object archive listed anew if its last listing
    /// is older than a second (a dump's start: where the replica's position is).
    pub(crate) async fn list_fresh(&self) -> Result<Listing, ServeError> {
        self.list_as(Freshness::Recent).await
    }

    /// Lists the archive anew, however recent the last listing: for what must not be
    /// answered from a listing that found nothing.
    pub(crate) async fn list_now(&self) -> Result<Listing, ServeError> {
        self.list_as(Freshness::Now).await
    }

    async fn list_as(&self, freshness: Freshness) -> Result<Listing, ServeError> {
        let mut listing = self.list_all(freshness).await?;
        if let Some(until) = &self.until
            && let Some(last) = listing
                .files
                .iter()
                .position(|f| f.epoch == until.epoch && f.name == until.file)
        {
            listing.files.truncate(last + 1);
        }
        Ok(listing)
    }

    async fn list_all(&self, freshness: Freshness) -> Result<Listing, ServeError> {
        match &self.store {
            Store::Local(archive) => {
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
            Store::Remote(remote) => {
                let mut last = self.remote_listing.lock().await;
                let age = last.taken.map(|at| at.elapsed());
                let stale = age.is_none_or(|age| age >= REMOTE_LISTING_AGE);
                let too_old = age.is_none_or(|age| age >= REMOTE_LISTING_MAX_AGE);
                let relist_now = match freshness {
                    Freshness::Shared => too_old,
                    Freshness::Recent => stale,
                    Freshness::Now => true,
                };
                if relist_now {
                    let (files, sources) = relist(remote, &last).await?;
                    last.files = files;
                    last.sources = sources;
                    last.taken = Some(std::time::Instant::now());
                } else if stale && !last.refreshing {
                    last.refreshing = true;
                    let shared = Arc::clone(&self.remote_listing);
                    let remote = remote.clone();
                    let since = RemoteListing {
                        files: last.files.clone(),
                        sources: last.sources.clone(),
                        ..RemoteListing::default()
                    };
                    tokio::spawn(async move {
                        let relisted = relist(&remote, &since).await;
                        let mut last = shared.lock().await;
                        last.refreshing = false;
                        match relisted {
                            Ok((files, sources)) => {
                                last.files = files;
                                last.sources = sources;
                                last.taken = Some(std::time::Instant::now());
                            }
                            Err(e) => tracing::warn!(error = %e,
                                "listing the archive failed; serving from the last listing"),
                        }
                    });
                }
                let files = last.files.clone();
                let source = files.last().and_then(|newest| {
                    last.sources
                        .iter()
                        .find(|(epoch, _)| *epoch == newest.epoch)
                        .map(|(_, source)| source.clone())
                });
                Ok(Listing { files, source })
            }
        }
    }
}

/// Lists an object archive again: its catalogue read anew, the files not sealed yet looked
/// at from where the last listing's look ended.
async fn relist(
    remote: &RemoteSource,
    last: &RemoteListing,
) -> Result<(Vec<ServedFile>, Vec<(String, SourceIdentity)>), ServeError> {
    let archive = remote.open().await?;
    let known = last
        .files
        .iter()
        .filter_map(|f| match &f.place {
            Place::Remote {
                unsealed: Some(unsealed),
                ..
            } => Some(UnsealedFile::clone(unsealed)),
            _ => None,
        })
        .collect();
    let mut files = Vec::new();
    for file in archive.files_after(known).await? {
        let served = match file {
            RemoteFile::Sealed(summary) => ServedFile {
                server_id: summary.source.server_id,
                place: Place::Remote {
                    archive: Arc::clone(&archive),
                    size: summary.size,
                    gtids_before: summary.gtids_before.clone(),
                    gtids_after: summary.gtids_after.clone(),
                    sealed: true,
                    unsealed: None,
                },
                epoch: summary.epoch,
                name: summary.name,
            },
            RemoteFile::Open {
                epoch,
                name,
                size,
                unsealed,
            } => ServedFile {
                server_id: server_id_of_epoch(&epoch),
                place: Place::Remote {
                    archive: Arc::clone(&archive),
                    size,
                    gtids_before: unsealed.index().gtids_before.clone().unwrap_or_default(),
                    gtids_after: unsealed.index().gtids_after(),
                    sealed: false,
                    unsealed: Some(Arc::from(unsealed)),
                },
                epoch,
                name,
            },
        };
        files.push(served);
    }
    let mut sources = last.sources.clone();
    if let Some(newest) = files.last()
        && !sources.iter().any(|(epoch, _)| *epoch == newest.epoch)
    {
        let source = archive.epoch_source(&newest.epoch).await?;
        sources.push((newest.epoch.clone(), source));
    }
    Ok((files, sources))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(epoch: &str, name: &str) -> ServedFile {
        ServedFile {
            epoch: epoch.to_owned(),
            name: name.to_owned(),
            server_id: 1,
            place: Place::Local {
                data: PathBuf::from(name),
                index: PathBuf::from(name),
            },
        }
    }

    #[test]
    fn serving_stops_inside_the_file_it_is_told_and_never_calls_it_complete() {
        let dir = tempfile::tempdir().expect("dir");
        let archive = LocalArchive::open(dir.path()).expect("archive");
        let until = Until {
            epoch: "0002-server7".to_owned(),
            file: "b.000003".to_owned(),
            end: 900,
        };
        let source = ArchiveSource::local(archive, Some(until));
        let cut = file("0002-server7", "b.000003");
        assert_eq!(source.servable(&cut, (5000, true)), (900, false));
        assert_eq!(source.servable(&cut, (400, false)), (400, false));
        // The same name in another epoch, and other files, are served as they are.
        assert_eq!(
            source.servable(&file("0001-server1", "b.000003"), (5000, true)),
            (5000, true)
        );
        assert_eq!(
            source.servable(&file("0002-server7", "b.000002"), (70, true)),
            (70, true)
        );
    }
}
