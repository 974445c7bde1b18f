//! Reading one archived file for a dump: its bytes at any offset, and what its index says,
//! whether the file lies in a local archive or in an object store.
//!
//! - Local: reads at offsets on the blocking pool, into the caller's buffer.
//! - Remote: the file's segments, fetched one at a time with the next one fetched ahead
//!   while the current one is sent, so memory holds at most two segments (16 MiB each at
//!   the stream's default `--segment-size`), whatever the file's size. Each segment is
//!   checked (CRC32 and size; decrypted and authenticated with a client key).
//!
//! The index: a local file's by its ends, or whole where the sender needs transactions
//! (followed as the stream appends); a remote file's from its index objects, looked at
//! again every second while it is not sealed (the live tail at the upload cadence).

use std::sync::Arc;
use std::time::{Duration, Instant};

use binlogd_parser::header::parse_event_header;
use binlogd_parser::{ChecksumAlgorithm, EventReader, EventType, FormatDescription, HEADER_LEN};
use binlogd_storage::remote::read::{FileSegments, RemoteArchive};
use binlogd_storage::remote::unsealed::UnsealedFile;
use binlogd_storage::{
    FileIndex, IndexEnds, IndexFollower, StorageError, TransactionEntry, read_index_ends,
};
use tokio::task::JoinHandle;

use crate::archive::{Place, ServedFile, blocking};
use crate::error::ServeError;

/// How often a remote file that is not sealed is looked at again.
const REMOTE_POLL: Duration = Duration::from_secs(1);

/// An error in an archived file, naming it and the offset.
pub(crate) fn corrupt(file: &ServedFile, offset: u64, what: &str) -> ServeError {
    ServeError::Config(format!(
        "{} at offset {offset}: {what}; `binlogd verify` checks the archive",
        file.id()
    ))
}

/// An archived file open for reading at offsets.
pub(crate) enum DataFile {
    Local(Arc<std::fs::File>),
    Remote(Box<RemoteReader>),
}

/// A segment on its way.
type SegmentFetch = JoinHandle<Result<Vec<u8>, binlogd_storage::StorageError>>;

/// A remote file's segments: the one being read, and the next one on its way.
pub(crate) struct RemoteReader {
    archive: Arc<RemoteArchive>,
    segments: FileSegments,
    /// Segment number, the file offset its bytes start at, its bytes.
    current: Option<(usize, u64, Arc<Vec<u8>>)>,
    ahead: Option<(usize, SegmentFetch)>,
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        if let Some((_, fetch)) = self.ahead.take() {
            fetch.abort();
        }
    }
}

impl DataFile {
    /// Opens `file` for reading.
    pub async fn open(file: &ServedFile) -> Result<DataFile, ServeError> {
        match &file.place {
            Place::Local { data, .. } => {
                let path = data.clone();
                let opened = blocking(move || {
                    std::fs::File::open(&path)
                        .map_err(ServeError::io(format!("opening {}", path.display())))
                })
                .await?;
                Ok(DataFile::Local(Arc::new(opened)))
            }
            Place::Remote {
                archive, unsealed, ..
            } => Ok(DataFile::Remote(Box::new(RemoteReader {
                segments: match unsealed {
                    // As the listing saw it: a dump follows it from there.
                    Some(unsealed) => unsealed.segments(),
                    None => archive.file_segments(&file.epoch, &file.name).await?,
                },
                archive: Arc::clone(archive),
                current: None,
                ahead: None,
            }))),
        }
    }

    /// Bytes readable now.
    pub async fn size(&mut self) -> Result<u64, ServeError> {
        match self {
            DataFile::Local(handle) => {
                let handle = Arc::clone(handle);
                blocking(move || {
                    handle
                        .metadata()
                        .map(|m| m.len())
                        .map_err(ServeError::io("reading a file's size"))
                })
                .await
            }
            // A file not sealed grows by its index view's looks (`IndexView::refresh`).
            DataFile::Remote(reader) => Ok(reader.segments.size()),
        }
    }

    /// Reads `len` bytes at `offset` into `buffer`, reusing its allocation.
    pub async fn read_into(
        &mut self,
        file: &ServedFile,
        offset: u64,
        len: u64,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ServeError> {
        match self {
            DataFile::Local(handle) => {
                // On the blocking pool, into `buffer` itself (tokio's own file type
                // would keep a second buffer per open file).
                use std::os::unix::fs::FileExt;
                let mut taken = std::mem::take(buffer);
                let handle = Arc::clone(handle);
                let (returned, result) = tokio::task::spawn_blocking(move || {
                    taken.clear();
                    taken.resize(len as usize, 0);
                    let result = handle.read_exact_at(&mut taken, offset);
                    (taken, result)
                })
                .await
                .map_err(|e| ServeError::Config(format!("a file read failed to run: {e}")))?;
                *buffer = returned;
                result.map_err(ServeError::io(format!(
                    "reading {len} bytes at {offset} of {}",
                    file.id()
                )))
            }
            DataFile::Remote(reader) => reader.read_into(file, offset, len, buffer).await,
        }
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read_at(
        &mut self,
        file: &ServedFile,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ServeError> {
        let mut buffer = Vec::new();
        self.read_into(file, offset, len, &mut buffer).await?;
        Ok(buffer)
    }
}

impl DataFile {
    /// A remote file not sealed yet: reads from the segments `unsealed`'s last look saw.
    fn follow(&mut self, unsealed: &UnsealedFile) {
        if let DataFile::Remote(reader) = self
            && unsealed.size() > reader.segments.size()
        {
            reader.segments = unsealed.segments();
        }
    }
}

impl RemoteReader {
    async fn read_into(
        &mut self,
        file: &ServedFile,
        offset: u64,
        len: u64,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ServeError> {
        buffer.clear();
        buffer.reserve(len as usize);
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let (segment, first, bytes) = self.segment_holding(file, at).await?;
            let from = (at - first) as usize;
            let take = ((end - at) as usize).min(bytes.len().saturating_sub(from));
            if take == 0 {
                return Err(corrupt(
                    file,
                    at,
                    &format!("segment {segment} ends before it should"),
                ));
            }
            buffer.extend_from_slice(&bytes[from..from + take]);
            at += take as u64;
        }
        Ok(())
    }

    /// The segment that holds `offset`: the current one, the one fetched ahead, or
    /// fetched now; and the next one set on its way.
    async fn segment_holding(
        &mut self,
        file: &ServedFile,
        offset: u64,
    ) -> Result<(usize, u64, Arc<Vec<u8>>), ServeError> {
        if let Some((segment, first, bytes)) = &self.current
            && offset >= *first
            && offset < first + bytes.len() as u64
        {
            return Ok((*segment, *first, Arc::clone(bytes)));
        }
        let located = match self.segments.segment_at(offset) {
            Some(found) => found,
            None if !self.segments.is_sealed() => {
                return Err(corrupt(file, offset, "past what is uploaded"));
            }
            None => return Err(corrupt(file, offset, "past the file's end")),
        };
        let (mut segment, mut first) = located;
        let fetched = match self.ahead.take() {
            Some((ahead, fetch)) if ahead == segment => fetch
                .await
                .map_err(|e| ServeError::Config(format!("a segment fetch failed to run: {e}")))?,
            other => {
                if let Some((_, fetch)) = other {
                    fetch.abort();
                }
                self.archive.fetch_segment(&self.segments, segment).await
            }
        };
        let bytes = match fetched {
            // Replaced since the file was listed (a dump that took longer than the delete
            // delay): its segments as they are now, and the one holding the offset.
            Err(gone @ StorageError::SegmentGone { .. }) => {
                tracing::info!(file = %file.id(), reason = %gone, "reading the file's segments again");
                self.segments = segments_now(file).await?;
                (segment, first) = match self.segments.segment_at(offset) {
                    Some(found) => found,
                    None => return Err(corrupt(file, offset, "past what is uploaded")),
                };
                self.archive.fetch_segment(&self.segments, segment).await?
            }
            fetched => fetched?,
        };
        let bytes = Arc::new(bytes);
        self.current = Some((segment, first, Arc::clone(&bytes)));
        if segment + 1 < self.segments.len() {
            let archive = Arc::clone(&self.archive);
            let segments = self.segments.clone();
            self.ahead = Some((
                segment + 1,
                tokio::spawn(async move { archive.fetch_segment(&segments, segment + 1).await }),
            ));
        }
        Ok((segment, first, bytes))
    }
}

/// A remote file's segments as the store holds them now: a sealed file's from its
/// manifest, one not sealed yet from a first look (its newest partial manifest on).
async fn segments_now(file: &ServedFile) -> Result<FileSegments, ServeError> {
    let Place::Remote {
        archive, unsealed, ..
    } = &file.place
    else {
        return Err(corrupt(file, 0, "not an object archive's file"));
    };
    Ok(match unsealed {
        Some(_) => {
            let mut looked = UnsealedFile::new(&file.epoch, &file.name);
            archive.look_again(&mut looked).await?;
            looked.segments()
        }
        None => archive.file_segments(&file.epoch, &file.name).await?,
    })
}

/// What the sender knows of the index of the file it sends.
pub(crate) enum IndexView {
    /// Every line of a local index, followed as the stream adds them.
    Whole(Box<IndexFollower>),
    /// A local index's first and last lines only.
    Ends(IndexEnds),
    /// A remote file's index: a sealed one's, read once; one not sealed yet followed by
    /// looks that list only what is new since the last. With how far its bytes are
    /// uploaded.
    Remote {
        index: Box<FileIndex>,
        following: Option<Box<UnsealedFile>>,
        uploaded: u64,
        sealed: bool,
        looked: Option<Instant>,
    },
}

impl IndexView {
    /// The view of `file` the sender needs: whole when it needs transactions.
    pub fn for_file(file: &ServedFile, whole: bool, ends: IndexEnds) -> IndexView {
        match &file.place {
            Place::Local { index, .. } if whole => {
                IndexView::Whole(Box::new(IndexFollower::new(index)))
            }
            Place::Local { .. } => IndexView::Ends(ends),
            Place::Remote {
                size,
                sealed,
                unsealed,
                ..
            } => IndexView::Remote {
                index: Box::default(),
                following: unsealed.as_deref().cloned().map(Box::new),
                uploaded: *size,
                sealed: *sealed,
                looked: None,
            },
        }
    }

    /// Reads what was added since the last look.
    pub async fn refresh(
        self,
        file: &ServedFile,
        data: &mut DataFile,
    ) -> Result<IndexView, ServeError> {
        match (self, &file.place) {
            (IndexView::Whole(mut follower), _) => {
                blocking(move || {
                    follower.refresh()?;
                    Ok(IndexView::Whole(follower))
                })
                .await
            }
            (IndexView::Ends(_), Place::Local { index, .. }) => {
                let path = index.clone();
                blocking(move || Ok(IndexView::Ends(read_index_ends(&path)?))).await
            }
            (
                IndexView::Remote {
                    index,
                    following,
                    uploaded,
                    sealed,
                    looked,
                },
                Place::Remote { archive, .. },
            ) => {
                let due = looked.is_none_or(|at| at.elapsed() >= REMOTE_POLL);
                if (sealed && looked.is_some()) || !due {
                    return Ok(IndexView::Remote {
                        index,
                        following,
                        uploaded,
                        sealed,
                        looked,
                    });
                }
                let Some(mut following) = following else {
                    // Sealed: its whole index, once.
                    let index = Box::new(archive.file_index(&file.epoch, &file.name).await?);
                    let uploaded = data.size().await?;
                    return Ok(IndexView::Remote {
                        index,
                        following: None,
                        uploaded,
                        sealed: true,
                        looked: Some(Instant::now()),
                    });
                };
                // A store that fails or is slow for a moment delays the tail; it does not
                // end the dump (the replica would take the error for good).
                match archive.look_again(&mut following).await {
                    Ok(_) => {}
                    Err(e) if e.is_transient() => {
                        tracing::warn!(file = %file.id(), error = %e, "the store failed a look at the live tail; trying again");
                    }
                    Err(e) => return Err(e.into()),
                }
                data.follow(&following);
                let uploaded = following.size();
                let sealed = following
                    .index()
                    .closed
                    .as_ref()
                    .is_some_and(|(size, _)| *size == uploaded);
                Ok(IndexView::Remote {
                    index: Box::default(),
                    following: Some(following),
                    uploaded,
                    sealed,
                    looked: Some(Instant::now()),
                })
            }
            (view, _) => Ok(view),
        }
    }

    /// Where the file's sendable bytes end, and whether that is its final end.
    pub fn end(&self) -> (u64, bool) {
        let (closed, indexed_end) = match self {
            IndexView::Whole(follower) => {
                (&follower.index().closed, follower.index().indexed_end())
            }
            IndexView::Ends(ends) => (&ends.closed, ends.indexed_end),
            IndexView::Remote {
                uploaded,
                sealed: true,
                ..
            } => return (*uploaded, true),
            IndexView::Remote {
                index,
                following,
                uploaded,
                ..
            } => {
                let index = following.as_ref().map_or(&**index, |f| f.index());
                return (index.indexed_end().min(*uploaded), false);
            }
        };
        match closed {
            Some((size, _)) => (*size, true),
            None => (indexed_end, false),
        }
    }

    /// The file's transactions (none are known from a local index's ends alone).
    pub fn transactions(&self) -> &[TransactionEntry] {
        match self {
            IndexView::Whole(follower) => &follower.index().transactions,
            IndexView::Ends(_) => &[],
            IndexView::Remote {
                index, following, ..
            } => {
                &following
                    .as_ref()
                    .map_or(&**index, |f| f.index())
                    .transactions
            }
        }
    }
}

/// A local file's index ends (for a remote one, what its listing said of the start).
pub(crate) async fn read_ends(file: &ServedFile) -> Result<IndexEnds, ServeError> {
    match &file.place {
        Place::Local { index, .. } => {
            let path = index.clone();
            blocking(move || Ok(read_index_ends(&path)?)).await
        }
        Place::Remote { gtids_before, .. } => Ok(IndexEnds {
            gtids_before: Some(gtids_before.clone()),
            ..IndexEnds::default()
        }),
    }
}

/// Whether the file holds its whole FORMAT_DESCRIPTION event yet.
pub(crate) async fn format_description_ready(file: &ServedFile) -> bool {
    let Ok(mut data) = DataFile::open(file).await else {
        return false;
    };
    let Ok(size) = data.size().await else {
        return false;
    };
    if size < 4 + HEADER_LEN as u64 {
        return false;
    }
    match data.read_at(file, 4, HEADER_LEN as u64).await {
        Ok(head) => parse_event_header(&head)
            .is_ok_and(|(_, header)| size >= 4 + u64::from(header.event_size)),
        Err(_) => false,
    }
}

/// The file's FORMAT_DESCRIPTION event (after the magic) and what it says.
pub(crate) async fn read_format_description(
    data: &mut DataFile,
    file: &ServedFile,
) -> Result<(Vec<u8>, FormatDescription), ServeError> {
    let head = data.read_at(file, 0, 4 + HEADER_LEN as u64).await?;
    let Ok((_, header)) = parse_event_header(&head[4..]) else {
        return Err(corrupt(file, 4, "no event header"));
    };
    if header.event_type != EventType::FORMAT_DESCRIPTION {
        return Err(corrupt(
            file,
            4,
            "the first event is not a FORMAT_DESCRIPTION",
        ));
    }
    let whole = data
        .read_at(file, 0, 4 + u64::from(header.event_size))
        .await?;
    let mut reader = EventReader::new(&whole);
    match reader.next() {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(corrupt(file, 4, &e.to_string())),
        None => return Err(corrupt(file, 4, "no FORMAT_DESCRIPTION")),
    }
    let format = reader
        .format()
        .cloned()
        .ok_or_else(|| corrupt(file, 4, "no FORMAT_DESCRIPTION"))?;
    Ok((whole[4..].to_vec(), format))
}

/// The checksum algorithm of a file, from its FORMAT_DESCRIPTION (`None` when the file
/// has none yet).
pub(crate) async fn checksum_of(
    file: &ServedFile,
) -> Result<Option<ChecksumAlgorithm>, ServeError> {
    if !format_description_ready(file).await {
        return Ok(None);
    }
    let mut data = DataFile::open(file).await?;
    Ok(Some(
        read_format_description(&mut data, file).await?.1.checksum,
    ))
}

/// Checks that `position` is where an event starts, walking the headers from `from`.
pub(crate) async fn check_event_boundary(
    data: &mut DataFile,
    file: &ServedFile,
    from: u64,
    position: u64,
) -> Result<(), ServeError> {
    let mut at = from;
    while at < position {
        let head = data.read_at(file, at, HEADER_LEN as u64).await?;
        let size = parse_event_header(&head).map_or(0, |(_, h)| u64::from(h.event_size));
        if size < HEADER_LEN as u64 {
            return Err(corrupt(file, at, "unreadable event header"));
        }
        at += size;
    }
    if at != position {
        return Err(ServeError::Refused {
            code: crate::start::FATAL_READING_BINLOG,
            message: format!(
                "Client requested master to start replication from position {position} of \
                 '{}', which is not where an event starts (the event before it ends at {at})",
                file.name
            ),
        });
    }
    Ok(())
}
