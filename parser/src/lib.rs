//! Binlog parsing for MySQL and MariaDB: events, transactions and GTID sets.
//!
//! Takes bytes, gives typed views that borrow them. Does no I/O, spawns nothing, knows
//! nothing of sockets or files: the stream, the archive and the restore all feed it bytes.
