//! What the engine tells whoever watches it (metrics, a progress line), so that the
//! engine itself neither serves HTTP nor draws on a terminal. Every method has a default
//! that ignores it.

use binlogd_storage::remote::upload::UploadStats;
use binlogd_storage::{SourceIdentity, TransactionEntry};
use std::time::Duration;

/// What became durable in the archive since the last report.
#[derive(Debug, Clone, Copy)]
pub struct Archived<'a> {
    /// Events made durable since the last report.
    pub new_events: u64,
    /// Bytes made durable since the last report.
    pub new_bytes: u64,
    /// Transactions indexed since the last report.
    pub new_transactions: u64,
    /// Transactions indexed since this connection began.
    pub session_transactions: u64,
    /// Bytes archived since this connection began.
    pub session_bytes: u64,
    /// The last durable transaction.
    pub last_transaction: Option<&'a TransactionEntry>,
    /// How far behind the source the archive is: zero when everything the source sent
    /// is durable and nothing more is coming; otherwise now minus the last durable
    /// transaction's commit time. `None` before the first transaction.
    pub lag: Option<Duration>,
    /// The file the stream writes and how far its copy reaches.
    pub position: Option<(&'a str, u64)>,
}

/// Hears what the engine does. Called on the engine's task: keep it quick.
pub trait Observer: Send + Sync {
    /// A connection was made (`true`) or lost (`false`).
    fn connected(&self, _connected: bool) {}
    /// The server that answers at the source's address (after a failover, another one).
    fn source(&self, _identity: &SourceIdentity) {}
    /// The source was heard from: an event or a heartbeat.
    fn heard(&self) {}
    /// New data is durable, or the stream caught up.
    fn archived(&self, _archived: &Archived<'_>) {}
    /// How many bytes of its current file the source has that are not durable here yet,
    /// as of its last heartbeat.
    fn behind_by(&self, _bytes: u64) {}
    /// The stream fails again and again at one place (`Some(why)`), or moves again.
    fn stuck(&self, _reason: Option<&str>) {}
    /// The engine lost the source and will connect again.
    fn reconnecting(&self) {}
    /// Everything the source committed before this time (µs since the epoch) can be
    /// restored from the archive — for an object archive, from the object store. It is
    /// "now" while the stream is caught up and its copy stored, else the commit time of
    /// the last transaction stored: a quiet source does not make it fall behind, and a
    /// source or store that is away does.
    fn recoverable(&self, _until_micros: u64) {}
    /// A checkpoint to the object store succeeded.
    fn checkpointed(&self, _stats: &UploadStats, _backlog: u64) {}
    /// A checkpoint failed and will be retried; `backlog` durable bytes wait for it.
    fn checkpoint_failed(&self, _backlog: u64) {}
    /// Until when this writer's lease on the object archive holds (µs since the epoch;
    /// 0 once lost), as of the last renewal.
    fn lease(&self, _valid_until_micros: u64) {}
    /// A retention pass deleted `files` files (`Ok`), or failed (`Err(why)`).
    fn purged(&self, _outcome: Result<usize, &str>) {}
    /// The engine stopped: "caught up", "stopped", "stuck" or "failed".
    fn ended(&self, _how: &str) {}
}

/// Watches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {}
