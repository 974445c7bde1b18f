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

impl std::str::FromStr for Gtid {
    type Err = ParseGtidError;

    /// Reads either text form: a MySQL GTID has a colon, a MariaDB GTID has none.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.contains(':') {
            text.parse().map(Gtid::Mysql)
        } else {
            text.parse().map(Gtid::Mariadb)
        }
    }
}

impl serde::Serialize for Gtid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Gtid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_text_form_reads_back_as_its_flavour() {
        for text in ["0-1-42", "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"] {
            let gtid: Gtid = text.parse().expect("valid");
            assert_eq!(gtid.to_string(), text);
            let json = serde_json::to_string(&gtid).expect("serialize");
            assert_eq!(serde_json::from_str::<Gtid>(&json).expect("read"), gtid);
        }
        assert!(matches!("0-1-42".parse(), Ok(Gtid::Mariadb(_))));
        assert!("0-1".parse::<Gtid>().is_err());
    }
}
