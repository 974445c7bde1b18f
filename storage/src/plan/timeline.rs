//! The archive's timeline: what can be recovered from a start state, told as continuous
//! stretches of history and the gaps and server changes between them.
//!
//! [`super::timeline()`] makes one: the planner's walk over the archive to its end,
//! recording instead of failing (a gap is noted and the walk goes on past it, and what a
//! failover dropped is named). This file holds only what it records, so it depends on
//! nothing of the planner; `binlogd timeline` prints it.

use crate::gtids::GtidState;
use binlogd_parser::Gtid;
use serde::Serialize;

/// Transactions missing from the archive: the replay cannot cross this point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "transactions are missing before {epoch}/{file}: the replay has reached {reached}, but the file follows {needed} (missing {missing})"
)]
pub struct Gap {
    /// The epoch of the file after the gap.
    pub epoch: String,
    /// The file after the gap.
    pub file: String,
    /// The state reached before it.
    pub reached: GtidState,
    /// The state the file continues.
    pub needed: GtidState,
    /// What is missing, in words.
    pub missing: String,
}

/// A continuous stretch of history in one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stretch {
    /// The epoch.
    pub epoch: String,
    /// Its source server.
    pub source_server_id: u32,
    /// The first file holding transactions of the stretch.
    pub first_file: String,
    /// The last file.
    pub last_file: String,
    /// The state at its start.
    pub from: GtidState,
    /// The state at its end.
    pub to: GtidState,
    /// The first commit time in it, µs since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_commit_micros: Option<u64>,
    /// The last commit time in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_micros: Option<u64>,
    /// How many transactions it holds (counting only those after the start).
    pub transactions: u64,
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Continuous history from one server.
    Stretch(Stretch),
    /// Transactions are missing: the history cannot be replayed across this point.
    Gap(Gap),
    /// The source server changed (a failover or switchover).
    ServerChange {
        /// The epoch that ended.
        from_epoch: String,
        /// The epoch that began.
        to_epoch: String,
        /// The new server's id.
        to_server_id: u32,
        /// The state the new server began with.
        at: GtidState,
        /// Transactions of the old server the new one never had (empty when none).
        lost: String,
        /// The first commit archived from the new server.
        #[serde(skip_serializing_if = "Option::is_none")]
        first_commit_micros: Option<u64>,
    },
}

/// What can be recovered from a start state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The start.
    pub start: GtidState,
    /// Stretches of history, and the gaps and server changes between them, in order.
    pub history: Vec<Event>,
    /// The latest state a replay from the start reaches without crossing a gap.
    pub recoverable_to: GtidState,
    /// The commit time of the last transaction that replay applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_recoverable_micros: Option<u64>,
}

/// Lists `gtids` compactly: runs of consecutive MariaDB sequence numbers of one server
/// as `0-1-5..9`, MySQL GTIDs as a set.
pub(super) fn describe_gtids(gtids: &[Gtid]) -> String {
    let mut mysql = binlogd_parser::MysqlGtidSet::new();
    let mut runs: Vec<(binlogd_parser::MariadbGtid, u64)> = Vec::new();
    for gtid in gtids {
        match gtid {
            Gtid::Mysql(g) => mysql.insert(*g),
            Gtid::Mariadb(g) => match runs.last_mut() {
                Some((first, last))
                    if first.domain_id == g.domain_id
                        && first.server_id == g.server_id
                        && *last + 1 == g.sequence =>
                {
                    *last = g.sequence;
                }
                _ => runs.push((*g, g.sequence)),
            },
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .map(|(first, last)| {
            if first.sequence == *last {
                first.to_string()
            } else {
                format!("{first}..{last}")
            }
        })
        .collect();
    if !mysql.is_empty() {
        parts.push(mysql.to_string());
    }
    parts.join(",")
}
