//! The binlog archive: object layout, index and checkpointing.
//!
//! Decides where archived bytes live (a local directory or an S3 bucket), how an open binlog
//! file is checkpointed, and the index that `search` and `restore` read. It does not talk to
//! MySQL (that is `binlogd-protocol`) and does not decode events itself beyond asking
//! `binlogd-parser` for transaction boundaries.
//!
//! The implementation arrives with the streaming and storage issues; this crate holds its
//! place in the workspace so the crate graph in `ARCHITECTURE.md` is true from the start.
