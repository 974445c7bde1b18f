//! The binlog archive: object layout, index and checkpointing.
//!
//! Decides where archived bytes live, how they are made durable, and the index that
//! `inspect`, `search` and `restore` read. It does not talk to MySQL (that is
//! `binlogd-protocol`) and decodes events only through `binlogd-parser`.
//!
//! - [`archive`]: one view of an archive, local or remote: its files in order, what
//!   each covers, and its index on demand.
//! - [`plan`]: from the index, which byte ranges of which files a replay from one GTID
//!   state to a target needs, and the archive's timeline (gaps, server changes).
//! - [`layout`]: the archive directory: epochs (one per source server) holding the
//!   server's binlog files byte for byte, each with its index.
//! - [`index`]: the per-file index (GTID state before, transactions with byte ranges and
//!   commit times, closed-ness), JSON lines.
//! - [`writer`]: [`ArchiveWriter`] turns a replication stream into files and index,
//!   data fsynced before the index that points at it.
//! - [`recover`](mod@recover): after a crash, cuts the last file back to a transaction boundary and
//!   says where the stream resumes.
//! - [`retention`]: which files a retention policy lets go, and deleting them so that
//!   the archive stays readable and gap-free.
//! - [`scan`]: reads an archived file event by event in bounded memory.
//! - [`remote`]: the object archive (S3): the store interface, the checkpointer that
//!   uploads the local spool as segments, and the reader.

pub mod archive;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gtids;
pub mod index;
pub mod layout;
pub mod plan;
pub mod recover;
pub mod remote;
pub mod retention;
pub mod scan;
mod syncer;
mod tracking;
pub mod writer;

pub use archive::{Archive, ArchiveFile, FileState};
pub use error::{StorageError, error_chain};
pub use gtids::GtidState;
pub use index::{
    FileIndex, IndexEnds, IndexFollower, IndexRecord, TransactionEntry, read_index, read_index_ends,
};
pub use layout::{Epoch, LocalArchive, SourceIdentity, validate_binlog_name};
pub use recover::{ResumePoint, close_abandoned, recover};
pub use syncer::Durable;
pub use writer::{ArchiveWriter, Ingested, WriterStats};
