//! What can go wrong in a restore, each naming what it concerns.

use std::path::{Path, PathBuf};

/// A restore error.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A file system operation failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause (part of the message, not a `source()`, so a chain prints it once).
        cause: std::io::Error,
    },
    /// Archived bytes are not what a replay needs.
    #[error("{file} at offset {offset}: {message}")]
    BadArchive {
        /// The archived file.
        file: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The target server said no, or could not be reached.
    #[error("{doing}: {message}")]
    Server {
        /// What binlogd was doing.
        doing: String,
        /// The server's words.
        message: String,
    },
    /// No safe start for the replay can be told from what was given.
    #[error("{0}")]
    Start(String),
    /// The target server is not fit for a restore as it is.
    #[error("the target server {0}")]
    Unfit(String),
    /// The applier stopped on an error.
    #[error(
        "the server's applier stopped at {file}:{position} (the failing transaction starts there; applied up to {at}): error {errno}: {message}"
    )]
    ApplyFailed {
        /// The master binlog file of the failing transaction.
        file: String,
        /// Where the failing transaction starts in it (the last applied one ends there).
        position: u64,
        /// The GTID state the applier reached ("nothing" when empty).
        at: String,
        /// The server's error number.
        errno: u32,
        /// The server's error text (it names the failing transaction's GTID).
        message: String,
    },
    /// A transaction of the plan failed to apply; the server holds everything before it.
    #[error(
        "transaction {gtid} ({file}:{position}) failed to apply: error {errno}: {message}; the server is left with everything before it, replication removed"
    )]
    TransactionFailed {
        /// Its GTID (`?` when the index does not say).
        gtid: String,
        /// The archived file it is in.
        file: String,
        /// Where it starts.
        position: u64,
        /// The server's error number.
        errno: u32,
        /// The server's error text.
        message: String,
    },
    /// Relay logs could not be written where the server keeps them.
    #[error("staging relay logs in {} (binlogd must run on the target's machine): {cause}", dir.display())]
    Staging {
        /// The server's relay-log folder.
        dir: PathBuf,
        /// What failed.
        cause: String,
    },
    /// A signal stopped the restore; the server is left as `outcome` says.
    #[error("interrupted by {signal}{outcome}")]
    Interrupted {
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// What was done, and the state the server is in (starts with its own separator).
        outcome: String,
    },
    /// The applier did not reach the target in time.
    #[error("the applier reached {reached} but not {target} within {seconds} s")]
    TimedOut {
        /// Where it got.
        reached: String,
        /// Where it should have got.
        target: String,
        /// How long binlogd waited without progress.
        seconds: u64,
    },
}

impl RestoreError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |cause| RestoreError::Io {
            action,
            path,
            cause,
        }
    }
}
