//! Global transaction identifiers of both flavours.
//!
//! MariaDB: `domain-server-sequence` ([`MariadbGtid`]) and positions of one GTID per
//! domain ([`MariadbGtidPos`]). MySQL: `uuid[:tag]:number` ([`MysqlGtid`]) and GTID sets
//! ([`MysqlGtidSet`]) with their set algebra, text and binary forms. All text forms are
//! also the serde forms.

mod mariadb;
mod mysql;
mod mysql_set;

pub use mariadb::{MariadbGtid, MariadbGtidPos, ParseGtidError};
pub use mysql::{MAX_TAG_LEN, MysqlGtid, Tag, Uuid};
pub use mysql_set::MysqlGtidSet;

/// A transaction's identity, whichever server wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MariaDB `domain-server-seq`.
    Mariadb(MariadbGtid),
    /// MySQL `uuid[:tag]:gno`.
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
