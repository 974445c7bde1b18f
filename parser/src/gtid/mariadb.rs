//! MariaDB GTIDs: `domain_id-server_id-sequence_number`.
//!
//! Reference: <https://mariadb.com/kb/en/gtid/>. Within a replication domain the sequence
//! numbers grow; the server id says which server wrote the transaction.

use std::fmt;
use std::str::FromStr;

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MariadbGtid {
    /// Replication domain.
    pub domain_id: u32,
    /// Server that wrote the transaction.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub sequence: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.sequence)
    }
}

/// A GTID or GTID set in text form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GTID {text:?}: {reason}")]
pub struct ParseGtidError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for MariadbGtid {
    type Err = ParseGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseGtidError {
            text: text.to_owned(),
            reason,
        };
        let mut parts = text.trim().splitn(3, '-');
        let (Some(domain), Some(server), Some(sequence)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected domain-server-sequence"));
        };
        Ok(MariadbGtid {
            domain_id: domain
                .parse()
                .map_err(|_| fail("domain id is not a 32-bit number"))?,
            server_id: server
                .parse()
                .map_err(|_| fail("server id is not a 32-bit number"))?,
            sequence: sequence
                .parse()
                .map_err(|_| fail("sequence is not a 64-bit number"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let gtid: MariadbGtid = "0-1-194961".parse().expect("parse");
        assert_eq!(
            gtid,
            MariadbGtid {
                domain_id: 0,
                server_id: 1,
                sequence: 194_961
            }
        );
        assert_eq!(gtid.to_string(), "0-1-194961");
        assert!("0-1".parse::<MariadbGtid>().is_err());
        assert!("0-1-x".parse::<MariadbGtid>().is_err());
        assert!("0-1--1".parse::<MariadbGtid>().is_err());
        assert!("4294967296-1-1".parse::<MariadbGtid>().is_err());
    }
}
