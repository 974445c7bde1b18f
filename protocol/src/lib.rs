//! The MySQL client/server protocol as a binlog replica speaks it.
//!
//! Wire framing, the connection handshake, authentication plugins, TLS, and the replica
//! commands (`COM_REGISTER_SLAVE`, `COM_BINLOG_DUMP`, `COM_BINLOG_DUMP_GTID`). It hands the
//! event bytes it receives to the caller untouched; it does not parse events (that is
//! `binlogd-parser`) and does not store them (that is `binlogd-storage`).
//!
//! The implementation arrives with the replication-client issue; this crate holds its place
//! in the workspace so the crate graph in `ARCHITECTURE.md` is true from the start.
