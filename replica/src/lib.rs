//! The replication engine: follows a MySQL or MariaDB server like a replica into a
//! byte-exact, indexed archive, and checkpoints that archive to an object store.
//!
//! It joins `binlogd-protocol` (the connection, the dump) to `binlogd-storage` (the
//! writer, recovery, the uploader) and decides what neither can alone: where a dump
//! starts, when data is made durable, when to reconnect, and what stops the stream.
//!
//! - [`config`]: how to follow a source ([`ReplicaConfig`]) and the
//!   [`DurabilityPolicy`] that says when to sync.
//! - `session`: one connection: identify the server, choose the epoch and the start
//!   ([`Start`]), register, start the dump.
//! - `pump`: events into the writer, syncs on the policy, semi-sync acknowledgements
//!   once durable, a full spool pausing the stream.
//! - `follow`: sessions one after another with backoff; a stream stuck at one place.
//! - [`checkpoint`]: uploads a spool to its object archive beside a stream, or
//!   [`checkpoint::drain`]s a stopped stream's spool.
//! - [`stream`]: all of it for one archive.
//! - [`Observer`]: what the engine reports (metrics, a progress line), and
//!   [`ReplicaError`], typed so that callers never read messages to decide.
//!
//! The engine is async (tokio) and logs with `tracing`; it serves nothing and draws
//! nothing itself.

pub mod checkpoint;
pub mod config;
mod error;
mod follow;
mod observer;
mod pump;
mod purge;
mod run;
mod session;

pub use config::{DurabilityPolicy, ReplicaConfig, ResumeBy, default_server_id, server_id_from};
pub use error::ReplicaError;
pub use observer::{Archived, Observer, Unobserved};
pub use pump::SessionEnd;
pub use run::{RemoteArchive, StreamConfig, stream};
pub use session::Start;
