//! The protocol crate's one error type.

/// A failure talking to a MySQL or MariaDB server.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection in the middle of a response.
    #[error("the server closed the connection")]
    Closed,
    /// Nothing arrived from the server for this long (see
    /// [`crate::Connection::set_read_timeout`]): the connection is taken as dead.
    #[error("the server sent nothing for {0:?}")]
    TimedOut(std::time::Duration),
    /// The server answered with an ERR packet.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A packet arrived with an unexpected sequence id.
    #[error("packet out of order: expected sequence id {expected}, got {got}")]
    PacketOutOfOrder {
        /// The id the protocol requires.
        expected: u8,
        /// The id that arrived.
        got: u8,
    },
    /// A message larger than any the servers send.
    #[error("message of {size} bytes exceeds the maximum of {maximum}")]
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        maximum: usize,
    },
    /// A packet that does not have the layout its position in the conversation requires.
    #[error("malformed {what} packet: {detail}")]
    Malformed {
        /// Which packet.
        what: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
    /// TLS could not be set up (configuration, handshake or certificate check).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server asks for something this client does not do.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str, detail: &'static str) -> Self {
        ProtocolError::Malformed { what, detail }
    }

    /// Whether retrying the same request on a new connection cannot help (bad
    /// credentials, missing privilege, purged binlog, ...), as opposed to a lost
    /// connection.
    pub fn is_fatal(&self) -> bool {
        match self {
            ProtocolError::Io(_) | ProtocolError::Closed | ProtocolError::TimedOut(_) => false,
            ProtocolError::Server(e) => e.is_fatal(),
            _ => true,
        }
    }
}

/// An ERR packet from the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server error {code} ({state}): {message}")]
pub struct ServerError {
    /// The server's error number (e.g. 1045 access denied, 1236 binlog read failure).
    pub code: u16,
    /// SQLSTATE.
    pub state: String,
    /// The server's message.
    pub message: String,
}

/// What kind of refusal a server error is, for the messages and retry decisions of a
/// replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong user or password (1045).
    AccessDenied,
    /// The user lacks a replication privilege (1227).
    MissingPrivilege,
    /// The binlog asked for is not on the server: purged, or never existed (1236).
    BinlogNotAvailable,
    /// Another replica connected with the same server id (MariaDB 4052; MySQL 1236).
    DuplicateServerId,
    /// Anything else.
    Other,
}

impl ServerError {
    /// Classifies the error.
    pub fn refusal(&self) -> Refusal {
        match self.code {
            1045 => Refusal::AccessDenied,
            1227 => Refusal::MissingPrivilege,
            4052 => Refusal::DuplicateServerId,
            1236 if self.message.contains("same server_uuid")
                || self.message.contains("same server_id") =>
            {
                Refusal::DuplicateServerId
            }
            1236 if self.message.contains("Could not find first log")
                || self.message.contains("purged") =>
            {
                Refusal::BinlogNotAvailable
            }
            _ => Refusal::Other,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.refusal() {
            Refusal::AccessDenied => "check the replication user and its password",
            Refusal::MissingPrivilege => {
                "grant the replication user REPLICATION SLAVE and REPLICATION CLIENT (BINLOG MONITOR on MariaDB 10.5+) ON *.*"
            }
            Refusal::BinlogNotAvailable => {
                "the server no longer has this binlog (see SHOW BINARY LOGS): the archive cannot continue \
                 without a gap; raise the server's binlog retention"
            }
            Refusal::DuplicateServerId => {
                "another replica uses the same server id: give binlogd a server id of its own"
            }
            Refusal::Other => return None,
        })
    }

    /// Errors that a new connection would meet again.
    pub fn is_fatal(&self) -> bool {
        if self.refusal() == Refusal::DuplicateServerId {
            // Fatal for this replica identity: reconnecting would cut the other replica.
            return true;
        }
        !matches!(
            self.code,
            // Too many connections, server shutdown in progress, query interrupted,
            // lock wait / deadlock: transient.
            1040 | 1053 | 1317 | 1205 | 1213 | 2013
        )
    }
}
