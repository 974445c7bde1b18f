//! What ends a replica session, typed so that the reconnect loop can tell what retrying
//! fixes (a lost connection, a gap the next dump repairs) from what it cannot (a refusal,
//! corrupt data), without reading messages.

use binlogd_protocol::{ProtocolError, Refusal};
use binlogd_storage::StorageError;

/// A failure of the replication engine. Its `Display` says what was being done; the
/// cause (`source()`) says what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// Talking to the source failed.
    #[error("{doing}")]
    Protocol {
        /// What binlogd was doing, e.g. "registering as a replica".
        doing: String,
        /// What the connection or the server said.
        #[source]
        source: ProtocolError,
    },
    /// The archive (local or object store) failed.
    #[error("{doing}")]
    Storage {
        /// What binlogd was doing, e.g. "uploading to the object archive".
        doing: String,
        /// What the archive said.
        #[source]
        source: StorageError,
    },
    /// The binlog stream failed (the connection, or the server mid-dump).
    #[error(transparent)]
    Stream(#[from] ProtocolError),
    /// Writing the archive failed (a disk error, or an event that does not land where the
    /// archived copy ends).
    #[error(transparent)]
    Archive(#[from] StorageError),
    /// The source ended a dump that was to go on for ever: the server is shutting down or
    /// restarting, or binlogd's connection was killed. Reconnecting follows it again.
    #[error(
        "the source ended the binlog dump (shutting down or restarting, or binlogd's \
         connection was killed)"
    )]
    DumpEnded,
    /// The source answered without its `@@server_id`.
    #[error("the source did not say its @@server_id")]
    NoServerId,
    /// `SHOW BINARY LOGS` listed nothing.
    #[error("the source has no binlogs: is log_bin on?")]
    NoBinlogs,
    /// Another server answers at the source's address and the archive has no GTID state
    /// to find its place on it.
    #[error(
        "the source is now server {now} (was server {was}), and the archive has no GTIDs to \
         find its place on the new server: start a new archive for it"
    )]
    NewServerWithoutGtids {
        /// The server that answers now.
        now: u32,
        /// The server the archive's last epoch followed.
        was: u32,
    },
    /// The archive's copy of a file ends where a position dump cannot start.
    #[error("{file}: position {position} is past what COM_BINLOG_DUMP can ask for (4 GiB)")]
    PositionTooFar {
        /// The binlog file.
        file: String,
        /// Where its archived copy ends.
        position: u64,
    },
    /// A dump by GTID was to start from an empty GTID state.
    #[error("no GTID state to start from")]
    NoGtidState,
    /// The server refused to send the binlog a dump asked for.
    #[error("the dump {start}")]
    DumpRefused {
        /// Where the dump was to start, e.g. "at b.000001:4".
        start: String,
        /// The server's refusal.
        #[source]
        source: Box<ReplicaError>,
    },
    /// The stream failed again and again at the same place (with `exit_at_end`).
    #[error("the stream is stuck: {reason}")]
    Stuck {
        /// What a user should know about it.
        reason: String,
        /// The last failure.
        #[source]
        source: Box<ReplicaError>,
    },
    /// An object archive cannot take what the spool holds (see `checkpoint::drain`).
    #[error(
        "{backlog} bytes of the spool {spool} did not go up in three checkpoints; they stay \
         there (see binlogd verify and binlogd list)"
    )]
    SpoolWillNotDrain {
        /// Bytes left behind.
        backlog: u64,
        /// The spool directory.
        spool: String,
    },
    /// A stopped stream's spool could not be uploaded at all.
    #[error("nothing was uploaded; the spool {spool} keeps everything")]
    NothingUploaded {
        /// The spool directory.
        spool: String,
        /// Why the archive could not be opened.
        #[source]
        source: Box<ReplicaError>,
    },
    /// A task of the engine ended abnormally.
    #[error("the {0} task failed")]
    Task(&'static str, #[source] tokio::task::JoinError),
}

impl ReplicaError {
    pub(crate) fn protocol(doing: impl Into<String>) -> impl FnOnce(ProtocolError) -> Self {
        let doing = doing.into();
        move |source| ReplicaError::Protocol { doing, source }
    }

    pub(crate) fn storage(doing: impl Into<String>) -> impl FnOnce(StorageError) -> Self {
        let doing = doing.into();
        move |source| ReplicaError::Storage { doing, source }
    }

    /// The failure a wrapping variant adds its words to.
    fn wrapped(&self) -> Option<&ReplicaError> {
        match self {
            ReplicaError::DumpRefused { source, .. }
            | ReplicaError::Stuck { source, .. }
            | ReplicaError::NothingUploaded { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The protocol error at the root, if that is what failed.
    pub fn protocol_cause(&self) -> Option<&ProtocolError> {
        match self {
            ReplicaError::Protocol { source, .. } | ReplicaError::Stream(source) => Some(source),
            _ => self.wrapped()?.protocol_cause(),
        }
    }

    /// The storage error at the root, if that is what failed.
    pub fn storage_cause(&self) -> Option<&StorageError> {
        match self {
            ReplicaError::Storage { source, .. } | ReplicaError::Archive(source) => Some(source),
            _ => self.wrapped()?.storage_cause(),
        }
    }

    /// Whether reconnecting cannot help: refusals, bad configuration, corrupt data.
    pub fn is_fatal(&self) -> bool {
        if matches!(self, ReplicaError::DumpEnded) {
            return false;
        }
        if let Some(e) = self.protocol_cause() {
            return e.is_fatal();
        }
        match self.storage_cause() {
            // A gap is repaired by resuming by position; the disk may get space back.
            Some(
                StorageError::Gap { .. }
                | StorageError::UnfinishedFile { .. }
                | StorageError::AlteredHead { .. }
                | StorageError::Io { .. },
            ) => false,
            Some(_) => true,
            // Anything else (our own checks) would fail the same way again.
            None => true,
        }
    }

    /// Whether trying again later can succeed, for an object store's failures.
    pub fn is_transient(&self) -> bool {
        self.storage_cause().is_some_and(StorageError::is_transient)
    }

    /// Whether the archived copy and the source disagree about where an event goes: the
    /// next dump goes by file and position, which is exact.
    pub(crate) fn is_gap(&self) -> bool {
        matches!(
            self.storage_cause(),
            Some(
                StorageError::Gap { .. }
                    | StorageError::UnfinishedFile { .. }
                    | StorageError::AlteredHead { .. }
            )
        )
    }

    /// Whether the session ended only so that the next one resumes by file and position.
    pub(crate) fn is_resume_by_position(&self) -> bool {
        matches!(
            self.storage_cause(),
            Some(StorageError::UnfinishedFile { .. } | StorageError::AlteredHead { .. })
        )
    }

    /// Whether the server said it no longer has the binlog the dump asked for.
    pub(crate) fn is_binlog_unavailable(&self) -> bool {
        matches!(self.protocol_cause(), Some(ProtocolError::Server(e))
            if e.refusal() == Refusal::BinlogNotAvailable)
    }

    /// What the user can do about a server refusal.
    pub fn hint(&self) -> Option<&'static str> {
        match self.protocol_cause() {
            Some(ProtocolError::Server(e)) => e.hint(),
            _ => None,
        }
    }

    /// Where in the source's binlog a session failed, when the failure is about a place
    /// in it (an event that does not land where the archived copy ends).
    pub(crate) fn place(&self) -> Option<(String, u64)> {
        match self.storage_cause()? {
            StorageError::Gap { file, offset, .. } => Some((file.clone(), *offset)),
            _ => None,
        }
    }

    /// What a user should know about a stream stuck on this failure.
    pub(crate) fn stuck_reason(&self) -> String {
        match self.storage_cause() {
            Some(StorageError::Gap {
                file,
                offset,
                archived,
                event_type,
            }) if offset > archived => format!(
                "{file}: every dump leaves out {} bytes before the {event_type} event at offset \
                 {offset} (the archived copy ends at {archived}): the source filters events out \
                 of binlogd's dump. Likely causes: events written with @@skip_replication=1 \
                 while the source's init_connect sets skip_replication for binlogd's account, \
                 or a server that omits events a replica did not ask for. The archive keeps \
                 everything before {archived}; binlogd keeps retrying",
                offset - archived
            ),
            Some(StorageError::Gap {
                file,
                offset,
                archived,
                event_type,
            }) => format!(
                "{file}: the source sends a {event_type} event at offset {offset}, inside what \
                 the archived copy already holds (up to {archived}), and it is not the same \
                 event: the source's file is not the one archived (RESET MASTER, or a different \
                 server behind the same address with the same server_id). Move the archive's \
                 last epoch aside or give binlogd a new archive; binlogd keeps retrying"
            ),
            _ => chain(self),
        }
    }
}

pub(crate) use binlogd_storage::error_chain as chain;

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(offset: u64, archived: u64) -> ReplicaError {
        ReplicaError::storage("archiving")(StorageError::Gap {
            file: "b.000001".into(),
            offset,
            archived,
            event_type: binlogd_parser::EventType::QUERY,
        })
    }

    #[test]
    fn a_gap_is_retried_by_position_and_names_its_place() {
        let err = gap(900, 500);
        assert!(!err.is_fatal());
        assert!(err.is_gap());
        assert!(!err.is_resume_by_position());
        assert_eq!(err.place(), Some(("b.000001".to_owned(), 900)));
        assert!(err.stuck_reason().contains("leaves out 400 bytes"));
        assert!(
            gap(100, 500)
                .stuck_reason()
                .contains("not the one archived")
        );
    }

    #[test]
    fn a_lost_connection_is_retried_and_a_refusal_is_not() {
        let lost = ReplicaError::protocol("reading")(ProtocolError::Closed);
        assert!(!lost.is_fatal());
        assert_eq!(chain(&lost), "reading: the server closed the connection");
        let refused = ReplicaError::protocol("starting the binlog dump at b.000001:4")(
            ProtocolError::Server(binlogd_protocol::ServerError {
                code: 1236,
                state: "HY000".into(),
                message: "Could not find first log file name in binary log index file".into(),
            }),
        );
        assert!(refused.is_fatal());
        assert!(refused.is_binlog_unavailable());
        assert!(
            refused
                .hint()
                .is_some_and(|h| h.contains("SHOW BINARY LOGS"))
        );
        assert!(ReplicaError::NoBinlogs.is_fatal());
    }
}
