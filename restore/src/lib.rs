//! Point-in-time restore: archived binlogs replayed by the target server's own applier.
//!
//! `binlogd-storage` plans which bytes of which archived files a replay needs
//! (`storage::plan`); this crate turns them into what a server can apply and drives it:
//!
//! - [`relay`]: genuine relay logs made from archived bytes, and their index.
//! - [`stage`]: a plan's ranges, read from the archive, written as those relay logs.
//! - [`apply`]: the control SQL (with `mysql_async`) that points the server's replication
//!   applier at the staged relay logs, runs it with parallel workers, follows it to the
//!   target, reports the failing transaction if it stops, and cleans the channel up.
//! - [`replay`]: all of it in order for one plan — stage, apply, follow, clean up, or stop
//!   cleanly on a signal — telling an observer how far it is; or, with nothing staged,
//!   [`replay::replicate`]: the server replicates from a source that serves the plan (the
//!   binary's private `binlogd serve`, cut at the plan's end).
//! - [`pipe`]: the fallback, `mariadb-binlog FILES | mariadb`, to compare with.
//! - [`server`]: a temporary server started on a restored datadir, networking off, for a
//!   restore where no server runs yet.
//! - [`start`]: where the replay starts (a backup's GTIDs, the server's own), never before
//!   what the server holds.

pub mod apply;
mod error;
pub mod pipe;
pub mod relay;
pub mod replay;
pub mod server;
pub mod stage;
pub mod start;

pub use error::RestoreError;
