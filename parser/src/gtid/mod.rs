//! Global transaction identifiers of both flavours.
//!
//! MariaDB: `domain-server-sequence` ([`MariadbGtid`]). MySQL: `uuid:number`
//! ([`MysqlGtid`], with [`Uuid`]).

mod mariadb;
mod mysql;

pub use mariadb::{MariadbGtid, ParseGtidError};
pub use mysql::{MysqlGtid, Uuid};

/// A transaction's identity, whichever server wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MariaDB `domain-server-seq`.
    Mariadb(MariadbGtid),
    /// MySQL `uuid:gno` (tag not yet carried).
    Mysql(MysqlGtid),
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gtid::Mariadb(g) => g.fmt(f),
            Gtid::Mysql(g) => g.fmt(f),
        }
    }
}
