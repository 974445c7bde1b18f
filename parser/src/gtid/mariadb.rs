//! MariaDB GTIDs: `domain_id-server_id-sequence_number`.
//!
//! Reference: <https://mariadb.com/kb/en/gtid/>. Within a replication domain the sequence
//! numbers grow; the server id says which server wrote the transaction.

use std::collections::BTreeMap;
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

/// A MariaDB replication position: the last GTID of each domain, as in
/// `@@gtid_binlog_pos`, `@@gtid_slave_pos` and GTID_LIST events (`0-1-100,7-2-5`).
///
/// A position *includes* a GTID when the GTID's domain is in it with a sequence number at
/// or below the position's: within a domain, sequence numbers only grow.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct MariadbGtidPos {
    domains: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidPos {
    /// The empty position (nothing replicated yet).
    pub fn new() -> Self {
        MariadbGtidPos::default()
    }

    /// Whether no domain has a GTID.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The last GTID of a domain.
    pub fn get(&self, domain_id: u32) -> Option<&MariadbGtid> {
        self.domains.get(&domain_id)
    }

    /// The GTIDs, one per domain, by domain.
    pub fn iter(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.domains.values()
    }

    /// Records `gtid` as the last of its domain.
    pub fn advance(&mut self, gtid: MariadbGtid) {
        self.domains.insert(gtid.domain_id, gtid);
    }

    /// Whether `gtid` is at or before this position.
    pub fn includes(&self, gtid: &MariadbGtid) -> bool {
        self.domains
            .get(&gtid.domain_id)
            .is_some_and(|last| gtid.sequence <= last.sequence)
    }

    /// Whether every domain of `other` is at or before this position.
    pub fn includes_pos(&self, other: &MariadbGtidPos) -> bool {
        other.iter().all(|gtid| self.includes(gtid))
    }

    /// Per domain, the later of the two positions.
    pub fn union(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        let mut out = self.clone();
        for gtid in other.iter() {
            if !out.includes(gtid) {
                out.advance(*gtid);
            }
        }
        out
    }
}

impl FromIterator<MariadbGtid> for MariadbGtidPos {
    fn from_iter<I: IntoIterator<Item = MariadbGtid>>(iter: I) -> Self {
        let mut pos = MariadbGtidPos::new();
        for gtid in iter {
            pos.advance(gtid);
        }
        pos
    }
}

impl fmt::Display for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MariadbGtidPos({self})")
    }
}

impl FromStr for MariadbGtidPos {
    type Err = ParseGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut pos = MariadbGtidPos::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid: MariadbGtid = part.parse()?;
            if pos.domains.insert(gtid.domain_id, gtid).is_some() {
                return Err(ParseGtidError {
                    text: text.to_owned(),
                    reason: "two GTIDs for one domain",
                });
            }
        }
        Ok(pos)
    }
}

impl serde::Serialize for MariadbGtidPos {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MariadbGtidPos {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_per_domain() {
        let pos: MariadbGtidPos = "7-2-5, 0-1-100".parse().expect("parse");
        assert_eq!(pos.to_string(), "0-1-100,7-2-5");
        assert!(
            pos.includes(&"0-3-100".parse().expect("gtid")),
            "server id does not matter"
        );
        assert!(!pos.includes(&"0-1-101".parse().expect("gtid")));
        assert!(
            !pos.includes(&"1-1-1".parse().expect("gtid")),
            "unknown domain"
        );
        let later: MariadbGtidPos = "0-1-150,1-1-1".parse().expect("parse");
        assert_eq!(pos.union(&later).to_string(), "0-1-150,1-1-1,7-2-5");
        assert!(pos.union(&later).includes_pos(&pos));
        assert!(!pos.includes_pos(&later));
        assert!("0-1-1,0-1-2".parse::<MariadbGtidPos>().is_err());
        assert_eq!(
            "".parse::<MariadbGtidPos>().expect("empty"),
            MariadbGtidPos::new()
        );
        let json = serde_json::to_string(&pos).expect("json");
        assert_eq!(json, "\"0-1-100,7-2-5\"");
        assert_eq!(
            serde_json::from_str::<MariadbGtidPos>(&json).expect("back"),
            pos
        );
    }

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
