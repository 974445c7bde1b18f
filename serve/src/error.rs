//! The serve crate's error type.

use std::path::PathBuf;

use binlogd_protocol::ProtocolError;
use binlogd_storage::StorageError;

/// Why `binlogd serve` cannot start, or why one replica's session ended.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or socket operation failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The wire protocol with a client failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reading the archive failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A line of the users file is wrong.
    #[error("{}{}: {message}", path.display(), if *line > 0 { format!(" line {line}") } else { String::new() })]
    UsersFile {
        /// The file.
        path: PathBuf,
        /// Its line, from 1 (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// The client did not finish logging in in time.
    #[error("the client did not log in within {0:?}")]
    LoginTimedOut(std::time::Duration),
    /// The replica read nothing for this long while there was data for it.
    #[error("the replica read nothing for {0:?} (--write-timeout): its connection is closed")]
    ReplicaStalled(std::time::Duration),
    /// The client was refused with this MySQL error (also sent to it).
    #[error("refused the client: error {code}: {message}")]
    Refused {
        /// The MySQL error number.
        code: u16,
        /// The message.
        message: String,
    },
}

impl ServeError {
    /// Whether the client just went away (a TCP health check, a port scan, a replica
    /// stopped while it was being sent events): nothing to warn about.
    pub fn is_hang_up(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            ServeError::Protocol(ProtocolError::Closed) => true,
            ServeError::Protocol(ProtocolError::Io(e)) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// Whether the archive's store failed in a way that trying again can mend (a
    /// timeout, a 503): a replica is better off reconnecting than told of a fatal error.
    pub fn is_transient(&self) -> bool {
        matches!(self, ServeError::Storage(e) if e.is_transient())
    }

    pub(crate) fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
        let doing = doing.into();
        move |source| ServeError::Io { doing, source }
    }
}
