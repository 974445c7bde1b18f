//! What an archive holds, in GTIDs: the state before and after each file.
//!
//! MariaDB states are positions (the last GTID of each domain, what
//! `@slave_connect_state` takes); MySQL states are GTID sets (what
//! `COM_BINLOG_DUMP_GTID` takes). A server without GTIDs has neither.

use binlogd_parser::{Gtid, MariadbGtidPos, MysqlGtidSet};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The transactions an archive (or a prefix of it) holds, as the source's GTIDs say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "flavour", content = "gtids", rename_all = "lowercase")]
pub enum GtidState {
    /// No GTID seen yet (or a server without GTIDs).
    #[default]
    None,
    /// A MariaDB position.
    Mariadb(MariadbGtidPos),
    /// A MySQL GTID set.
    Mysql(MysqlGtidSet),
}

impl GtidState {
    /// Adds one transaction.
    pub fn add(&mut self, gtid: Gtid) {
        match (&mut *self, gtid) {
            (GtidState::Mariadb(pos), Gtid::Mariadb(g)) => {
                if !pos.includes(&g) {
                    pos.advance(g);
                }
            }
            (GtidState::Mysql(set), Gtid::Mysql(g)) => set.insert(g),
            (GtidState::None, Gtid::Mariadb(g)) => {
                *self = GtidState::Mariadb(std::iter::once(g).collect());
            }
            (GtidState::None, Gtid::Mysql(g)) => {
                let mut set = MysqlGtidSet::new();
                set.insert(g);
                *self = GtidState::Mysql(set);
            }
            // A flavour change inside one archive cannot happen with a real source; the
            // newer flavour wins rather than mixing two kinds of state.
            (state, gtid) => {
                *state = GtidState::None;
                state.add(gtid);
            }
        }
    }

    /// Whether the state already holds `gtid`.
    pub fn includes(&self, gtid: &Gtid) -> bool {
        match (self, gtid) {
            (GtidState::Mariadb(pos), Gtid::Mariadb(g)) => pos.includes(g),
            (GtidState::Mysql(set), Gtid::Mysql(g)) => set.contains(g),
            _ => false,
        }
    }

    /// Whether no GTID is known.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::None => true,
            GtidState::Mariadb(pos) => pos.is_empty(),
            GtidState::Mysql(set) => set.is_empty(),
        }
    }

    /// Whether every transaction of `other` is in this state (`other` ⊆ `self`).
    pub fn includes_all(&self, other: &GtidState) -> bool {
        match (self, other) {
            (_, GtidState::None) => true,
            (GtidState::Mariadb(a), GtidState::Mariadb(b)) => a.includes_pos(b),
            (GtidState::Mysql(a), GtidState::Mysql(b)) => b.is_subset(a),
            (_, other) => other.is_empty(),
        }
    }

    /// What `other` holds that this state does not, in words: the MySQL GTID set
    /// difference, or per MariaDB domain the sequence numbers missing (`0-1-41..57`).
    pub fn describe_missing(&self, other: &GtidState) -> String {
        match (self, other) {
            (GtidState::Mysql(a), GtidState::Mysql(b)) => b.difference(a).to_string(),
            (GtidState::Mariadb(a), GtidState::Mariadb(b)) => b
                .iter()
                .filter(|gtid| !a.includes(gtid))
                .map(|gtid| {
                    let first = a.get(gtid.domain_id).map_or(1, |have| have.sequence + 1);
                    if first == gtid.sequence {
                        gtid.to_string()
                    } else {
                        format!(
                            "{}-{}-{first}..{}",
                            gtid.domain_id, gtid.server_id, gtid.sequence
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
            (_, other) => other.to_string(),
        }
    }

    /// The later of two states (per MariaDB domain; the union of MySQL sets).
    pub fn union(&self, other: &GtidState) -> GtidState {
        match (self, other) {
            (GtidState::Mariadb(a), GtidState::Mariadb(b)) => GtidState::Mariadb(a.union(b)),
            (GtidState::Mysql(a), GtidState::Mysql(b)) => GtidState::Mysql(a.union(b)),
            (GtidState::None, other) => other.clone(),
            (this, _) => this.clone(),
        }
    }
}

/// Parses what a user writes: a MySQL GTID set (`uuid:1-5,uuid2:7`) when it has a colon,
/// else a MariaDB position (`0-1-41,1-2-7`); an empty string is no GTID at all.
impl std::str::FromStr for GtidState {
    type Err = String;

    fn from_str(text: &str) -> Result<GtidState, String> {
        let text = text.trim();
        if text.is_empty() {
            Ok(GtidState::None)
        } else if text.contains(':') {
            text.parse()
                .map(GtidState::Mysql)
                .map_err(|e| format!("{text:?} is not a MySQL GTID set: {e}"))
        } else {
            text.parse()
                .map(GtidState::Mariadb)
                .map_err(|e| format!("{text:?} is not a MariaDB GTID position: {e}"))
        }
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::None => Ok(()),
            GtidState::Mariadb(pos) => pos.fmt(f),
            GtidState::Mysql(set) => set.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gtid(text: &str) -> Gtid {
        text.parse().expect("gtid")
    }

    #[test]
    fn a_mariadb_state_keeps_the_last_gtid_per_domain() {
        let mut state = GtidState::None;
        for text in ["0-1-5", "0-1-6", "1-2-3", "0-1-4"] {
            state.add(gtid(text));
        }
        assert_eq!(state.to_string(), "0-1-6,1-2-3");
        assert!(state.includes(&gtid("0-1-1")));
        assert!(!state.includes(&gtid("1-2-4")));
        let json = serde_json::to_string(&state).expect("json");
        assert_eq!(json, r#"{"flavour":"mariadb","gtids":"0-1-6,1-2-3"}"#);
        assert_eq!(
            serde_json::from_str::<GtidState>(&json).expect("read"),
            state
        );
    }

    #[test]
    fn inclusion_and_what_is_missing() {
        let state = |text: &str| GtidState::Mariadb(text.parse().expect("pos"));
        let have = state("0-1-40,1-2-7");
        assert!(have.includes_all(&state("0-1-40")));
        assert!(have.includes_all(&GtidState::None));
        assert!(!have.includes_all(&state("0-1-41,1-2-7")));
        assert!(!have.includes_all(&state("2-1-1")));
        assert_eq!(
            have.describe_missing(&state("0-1-57,1-2-8,2-3-4")),
            "0-1-41..57,1-2-8,2-3-1..4"
        );

        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |text: &str| GtidState::Mysql(text.parse().expect("set"));
        let have = set(&format!("{uuid}:1-10"));
        assert!(have.includes_all(&set(&format!("{uuid}:3-5"))));
        assert!(!have.includes_all(&set(&format!("{uuid}:3-12"))));
        assert_eq!(
            have.describe_missing(&set(&format!("{uuid}:3-12"))),
            format!("{uuid}:11-12")
        );
        assert!(!GtidState::None.includes_all(&have));
    }

    #[test]
    fn a_mysql_state_is_a_set() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut state = GtidState::None;
        for n in [1, 2, 3, 7] {
            state.add(gtid(&format!("{uuid}:{n}")));
        }
        assert_eq!(state.to_string(), format!("{uuid}:1-3:7"));
        assert!(!state.includes(&gtid(&format!("{uuid}:5"))));
        assert_eq!(
            serde_json::to_string(&GtidState::None).expect("json"),
            r#"{"flavour":"none"}"#
        );
    }
}
