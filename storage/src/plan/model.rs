//! What a plan is: where a replay is asked to stop ([`StopAt`]), the byte ranges it
//! replays ([`Piece`]) up to its last transaction ([`StopPoint`]), the [`Plan`] itself, and
//! why none can be made ([`PlanError`]); and [`format_micros`], how plans write times.

use super::timeline::Gap;
use crate::error::StorageError;
use crate::gtids::GtidState;
use binlogd_parser::Gtid;
use serde::Serialize;
use std::fmt;

/// Where a replay is asked to stop (the command line's `--to-time`, `--to-gtid`, ...);
/// the plan works out the [`StopPoint`] in the archive that honours it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAt {
    /// Up to and including these GTIDs (`--to-gtid`).
    Gtids(GtidState),
    /// Everything before this transaction, which is left out (`--before-gtid`).
    BeforeGtid(Gtid),
    /// Every transaction up to the first one committed after this time, µs since the Unix
    /// epoch (`--to-time`, `search --time`).
    Time(u64),
    /// Up to a byte offset (a transaction boundary) of a file (`--to-position`).
    Position {
        /// The epoch, when the file name alone is ambiguous.
        epoch: Option<String>,
        /// The server's file name.
        file: String,
        /// The offset.
        offset: u64,
    },
    /// Everything archived (`--latest`).
    Latest,
}

impl fmt::Display for StopAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopAt::Gtids(state) => write!(f, "GTID {state}"),
            StopAt::BeforeGtid(gtid) => write!(f, "before GTID {gtid}"),
            StopAt::Time(micros) => write!(f, "time {}", format_micros(*micros)),
            StopAt::Position {
                epoch,
                file,
                offset,
            } => match epoch {
                Some(epoch) => write!(f, "position {epoch}/{file}:{offset}"),
                None => write!(f, "position {file}:{offset}"),
            },
            StopAt::Latest => f.write_str("the latest archived transaction"),
        }
    }
}

/// A byte range of one archived file to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// The epoch of the file.
    pub epoch: String,
    /// The file.
    pub file: String,
    /// The offset of the first event to replay; 4 (just past the magic number) when the
    /// range starts at the file's first event.
    pub start: u64,
    /// Just past the last event to replay.
    pub end: u64,
    /// How many transactions the range holds.
    pub transactions: u64,
    /// Whether the range is the whole file as archived.
    pub whole_file: bool,
    /// The first commit time in the range, µs since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_commit_micros: Option<u64>,
    /// The last commit time in the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_micros: Option<u64>,
}

/// The last transaction a plan applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopPoint {
    /// Its epoch.
    pub epoch: String,
    /// Its file.
    pub file: String,
    /// Just past its last event: where the replay stops.
    pub offset: u64,
    /// Its GTID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<Gtid>,
    /// Its commit time, µs since the Unix epoch.
    pub commit_micros: u64,
}

/// What a replay from a start state to a target needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The state the replay starts from.
    pub start: GtidState,
    /// The ranges to replay, in order.
    pub pieces: Vec<Piece>,
    /// The state after the replay.
    pub end: GtidState,
    /// The last transaction applied; `None` when nothing is to be applied.
    pub stop: Option<StopPoint>,
    /// Whether the target is inside the archive. When it is not (a time or `--latest`
    /// beyond the last archived transaction), the plan goes as far as the archive does.
    pub target_reached: bool,
    /// How many transactions the plan applies.
    pub transactions: u64,
    /// How many per-file transaction indexes were read to make the plan.
    pub indexes_read: u64,
}

/// Why no plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The archive could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The archive is empty.
    #[error("the archive holds no binlog files")]
    EmptyArchive,
    /// The start state already holds the target.
    #[error("the target ({target}) is before the start point: {detail}")]
    TargetBeforeStart {
        /// The target.
        target: StopAt,
        /// What shows it.
        detail: String,
    },
    /// The archive lacks transactions between the state reached and a file.
    #[error("{0}")]
    Gap(Box<Gap>),
    /// The target names a GTID, file or offset the archive does not have.
    #[error("{target} is not in the archive: {detail}")]
    TargetNotInArchive {
        /// The target.
        target: StopAt,
        /// What the archive has instead.
        detail: String,
    },
}

/// A time for people: RFC 3339 in UTC, to the microsecond when it has them.
pub fn format_micros(micros: u64) -> String {
    i64::try_from(micros)
        .ok()
        .and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
        .map_or_else(|| format!("{micros} µs"), |t| t.to_string())
}
