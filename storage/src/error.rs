//! What can go wrong in the archive, each naming the file and offset concerned.

use std::path::{Path, PathBuf};

/// An archive error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system operation failed.
    // The cause is part of the message and not a `source()`, so that a report printing
    // the error chain says it once.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("writing", "fsync of", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// An event from the source could not be framed or decoded.
    #[error("{file} at offset {offset}: {cause}")]
    Parse {
        /// The binlog file the event belongs to.
        file: String,
        /// Its offset in that file.
        offset: u64,
        /// The cause.
        cause: binlogd_parser::ParseError,
    },
    /// The source sent an event that does not continue the archived file where it ends:
    /// archiving it would leave a hole or an overlap. Resuming from the archive's end by
    /// file and position repairs this.
    #[error(
        "{file}: the source sent an event ({event_type}) at offset {offset}, but the archived copy ends at {archived}"
    )]
    Gap {
        /// The binlog file.
        file: String,
        /// Where the event sits in the source's file.
        offset: u64,
        /// Where the archived copy ends.
        archived: u64,
        /// The event's type.
        event_type: binlogd_parser::EventType,
    },
    /// A dump by GTID began in a later file than the archive's last, unfinished one: the
    /// rest of that file (its ROTATE, at least) was never received. Resuming by file and
    /// position from the archived end fetches it.
    #[error(
        "{file}: the source resumed in {resumed_in}, past the end of this file (archived to \
         {archived}); fetching the rest of it by position"
    )]
    UnfinishedFile {
        /// The archive's last file.
        file: String,
        /// Where the archived copy ends.
        archived: u64,
        /// The file the dump began in.
        resumed_in: String,
    },
    /// A dump by GTID began at the head of a file the archive does not hold yet: the
    /// server sends such a file's FORMAT_DESCRIPTION altered for a reconnecting replica
    /// (`log_pos` and `created` zeroed), so it is not the file's own bytes. Resuming by file
    /// and position from the file's start fetches them unaltered.
    #[error(
        "{file}: the source began this file with an altered format description (as it does \
         for a dump by GTID); fetching the file by position instead"
    )]
    AlteredHead {
        /// The file the dump began in.
        file: String,
    },
    /// The stream or the archive contradicts itself in a way no resume repairs.
    #[error("{file} at offset {offset}: {message}")]
    Inconsistent {
        /// The binlog file.
        file: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A segment a reader was told of is not in the store any more: a compaction or a
    /// consolidation replaced it and its deletion came (`--delete-delay` after). Asking
    /// for the file's segments again finds the ones that replaced it.
    #[error(
        "{file} at offset {offset}: segment {key} is gone (replaced by a compaction or a \
         consolidation since it was listed)"
    )]
    SegmentGone {
        /// The binlog file.
        file: String,
        /// Where the segment starts.
        offset: u64,
        /// Its key.
        key: String,
    },
    /// A directory is not an archive this binlogd can use.
    #[error("{path}: {message}")]
    NotAnArchive {
        /// The directory or marker file.
        path: PathBuf,
        /// Why not.
        message: String,
    },
    /// Another process writes this local archive (or spool) already.
    #[error(
        "{path}: another binlogd (stream or upload) is writing this directory; one writer per \
         archive: stop the other one, or give this one its own directory"
    )]
    InUse {
        /// The archive's directory.
        path: PathBuf,
    },
    /// Another writer holds the object archive's lease.
    #[error(
        "{location} is being written by {holder} (lease renewed {renewed_seconds_ago} s ago): \
         one writer per archive; stop the other one, or use another prefix"
    )]
    LeaseHeld {
        /// The archive.
        location: String,
        /// Who holds it.
        holder: String,
        /// How long ago it was renewed.
        renewed_seconds_ago: u64,
    },
    /// Another writer took this writer's lease: stop writing.
    #[error(
        "{location}: lost the archive's lease to {holder}; stopping so as not to interleave writes"
    )]
    LeaseLost {
        /// The archive.
        location: String,
        /// Who holds it now.
        holder: String,
    },
    /// The catalogue changed since this writer read it: another writer wrote it.
    #[error(
        "{location} changed since this writer read it: another writer has written the \
         archive (did this one lose its lease while paused?); stopping without overwriting it"
    )]
    CatalogueChanged {
        /// The catalogue object.
        location: String,
    },
    /// The object is authenticated with a client key this writer was not given.
    #[error(
        "{location} is authenticated with a client key (key check {key_check}): give that \
         key with --encryption-key-file to change it"
    )]
    KeyNeeded {
        /// The object.
        location: String,
        /// The key's check value.
        key_check: String,
    },
    /// The task that renews a lease failed or was gone.
    #[error("the lease's renewal task: {0}")]
    LeaseTask(String),
    /// The object store refused or failed an operation.
    #[error(transparent)]
    Store(#[from] crate::remote::store::StoreError),
    /// An index or manifest file could not be read.
    #[error("{path} line {line}: {message}")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl StorageError {
    /// Whether trying again later can succeed: the store timed out, was unreachable, or
    /// answered 5xx or "slow down". Everything else needs someone to act.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Store(e) if e.is_transient())
    }

    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |cause| StorageError::Io {
            action,
            path,
            cause,
        }
    }

    pub(crate) fn inconsistent(file: &str, offset: u64, message: impl Into<String>) -> Self {
        StorageError::Inconsistent {
            file: file.to_owned(),
            offset,
            message: message.into(),
        }
    }
}

/// An error and its causes on one line, joined by ": " as `anyhow` prints `{:#}`: what a
/// log line or a store's error message shows of an error from another crate.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
