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
            ProtocolError::Io(_) | ProtocolError::Closed => false,
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

impl ServerError {
    /// Errors that a new connection would meet again.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self.code,
            // Too many connections, server shutdown in progress, query interrupted,
            // lock wait / deadlock: transient.
            1040 | 1053 | 1317 | 1205 | 1213 | 2013
        )
    }
}
