//! Where a dump starts: the file and offset a replica's request comes to in the archive,
//! or the refusal the server it stands in for would give.
//!
//! - By file and position (`COM_BINLOG_DUMP`): that file (the newest of that name, should
//!   two epochs share it), or the first file when the name is empty, from that offset.
//! - By GTIDs (MariaDB's `@slave_connect_state`, MySQL's `COM_BINLOG_DUMP_GTID`): the
//!   newest file whose GTID state at its start the replica already has, from its start;
//!   the sender then skips what the replica has. As MariaDB's `gtid_find_binlog_file` and
//!   MySQL's `find_first_log_not_in_gtid_set` do, with their errors: the replica needs
//!   what the archive no longer holds (purged), or (MariaDB) the replica is ahead of it.
//!
//! References: MariaDB `sql/sql_repl.cc` (`gtid_find_binlog_file`,
//! `check_slave_start_position`), MySQL `sql/rpl_binlog_sender.cc`.

use binlogd_parser::Flavour;
use binlogd_storage::GtidState;

/// What the archive says of one file, as far as choosing a start needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// The server's name for it.
    pub name: String,
    /// The GTID state before its first transaction.
    pub gtids_before: GtidState,
    /// Its size now.
    pub size: u64,
}

/// What a replica asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `COM_BINLOG_DUMP` without GTIDs: a file (empty: the first) and an offset.
    Position {
        /// The file.
        file: String,
        /// The offset.
        position: u64,
    },
    /// Everything the replica does not have.
    Gtids(GtidState),
}

/// Where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Index of the file in archive order.
    pub file: usize,
    /// Offset in it (4: from its first event).
    pub position: u64,
    /// The transactions the replica has, to skip (`None` for a position dump).
    pub replica_has: GtidState,
}

/// A refusal in the words of the server `binlogd serve` stands in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// MySQL error number (1236, `ER_MASTER_FATAL_ERROR_READING_BINLOG`, makes a replica
    /// stop instead of retrying).
    pub code: u16,
    /// The message.
    pub message: String,
}

/// `ER_MASTER_FATAL_ERROR_READING_BINLOG`.
pub const FATAL_READING_BINLOG: u16 = 1236;

fn refuse(message: String) -> Refusal {
    Refusal {
        code: FATAL_READING_BINLOG,
        message,
    }
}

/// Where the dump `request` starts in `files` (archive order); `archive_has` is the GTID
/// state after the whole archive.
pub fn find_start(
    flavour: Flavour,
    files: &[FileFacts],
    archive_has: &GtidState,
    request: &Request,
) -> Result<Start, Refusal> {
    match request {
        Request::Position { file, position } => {
            let index = if file.is_empty() {
                (!files.is_empty()).then_some(0)
            } else {
                files.iter().rposition(|f| &f.name == file)
            };
            let Some(index) = index else {
                return Err(refuse(
                    "Could not find first log file name in binary log index file".to_owned(),
                ));
            };
            let size = files[index].size;
            if *position < 4 || *position > size {
                let name = &files[index].name;
                return Err(refuse(match flavour {
                    Flavour::MariaDb => format!(
                        "Client requested master to start replication from impossible \
                         position; the first event '{name}' at {position}, the last event \
                         read from '{name}' at 4, the last byte read from '{name}' at 4."
                    ),
                    Flavour::MySql if *position < 4 => {
                        "Client requested source to start replication from position < 4.".to_owned()
                    }
                    Flavour::MySql => {
                        "Client requested source to start replication from position > file \
                         size"
                            .to_owned()
                    }
                }));
            }
            Ok(Start {
                file: index,
                position: *position,
                replica_has: GtidState::None,
            })
        }
        Request::Gtids(replica_has) => {
            if let (GtidState::Mariadb(replica), GtidState::Mariadb(archive)) =
                (replica_has, archive_has)
            {
                // A domain the archive has, at a sequence number it never reached: the
                // replica is ahead (it has transactions this archive's server never wrote).
                if let Some(ahead) = replica.iter().find(|g| {
                    archive
                        .get(g.domain_id)
                        .is_some_and(|last| last.sequence < g.sequence)
                }) {
                    return Err(refuse(format!(
                        "Error: connecting slave requested to start from GTID {ahead}, which \
                         is not in the master's binlog"
                    )));
                }
            }
            if flavour == Flavour::MySql
                && let Some(first) = files.first()
                && !replica_has.includes_all(&first.gtids_before)
            {
                return Err(refuse(format!(
                    "Cannot replicate because the source purged required binary logs. \
                     Replicate the missing transactions from elsewhere, or provision a new \
                     replica from backup. Consider increasing the source's binary log \
                     expiration period. The GTID set sent by the replica is '{replica_has}', \
                     and the missing transactions are '{}'",
                    replica_has.describe_missing(&first.gtids_before)
                )));
            }
            match files
                .iter()
                .rposition(|f| replica_has.includes_all(&f.gtids_before))
            {
                Some(file) => Ok(Start {
                    file,
                    position: 4,
                    replica_has: replica_has.clone(),
                }),
                None if files.is_empty() => Err(refuse(
                    "Could not find first log file name in binary log index file".to_owned(),
                )),
                None => Err(refuse(
                    "Could not find GTID state requested by slave in any binlog files. \
                     Probably the slave state is too old and required binlog files have been \
                     purged."
                        .to_owned(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, before: &str, size: u64) -> FileFacts {
        FileFacts {
            name: name.into(),
            gtids_before: before.parse().expect("state"),
            size,
        }
    }

    fn state(text: &str) -> GtidState {
        text.parse().expect("state")
    }

    #[test]
    fn mariadb_gtids_start_in_the_newest_file_the_replica_is_past() {
        let files = [
            file("b.000001", "", 1000),
            file("b.000002", "0-1-10", 1000),
            file("b.000003", "0-1-20", 500),
        ];
        let after = state("0-1-25");
        let start = |replica: &str| {
            find_start(
                Flavour::MariaDb,
                &files,
                &after,
                &Request::Gtids(state(replica)),
            )
        };
        assert_eq!(start("").expect("empty").file, 0);
        assert_eq!(start("0-1-9").expect("9").file, 0);
        assert_eq!(start("0-1-10").expect("10").file, 1);
        let at = start("0-1-22").expect("22");
        assert_eq!((at.file, at.position), (2, 4));
        assert_eq!(at.replica_has, state("0-1-22"));
        // A domain the archive never had does not hold the start back.
        assert_eq!(start("0-1-22,5-9-3").expect("other domain").file, 2);
        let ahead = start("0-1-30").expect_err("ahead");
        assert_eq!(
            ahead.message,
            "Error: connecting slave requested to start from GTID 0-1-30, which is not in \
             the master's binlog"
        );
        // Purged: the oldest file starts after what the replica has.
        let purged = [file("b.000002", "0-1-10", 1000)];
        let err = find_start(
            Flavour::MariaDb,
            &purged,
            &after,
            &Request::Gtids(state("0-1-5")),
        )
        .expect_err("purged");
        assert_eq!(err.code, 1236);
        assert!(
            err.message
                .starts_with("Could not find GTID state requested by slave")
        );
    }

    #[test]
    fn mysql_gtids_refuse_what_was_purged_naming_it() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let files = [
            file("binlog.000002", &format!("{uuid}:1-10"), 900),
            file("binlog.000003", &format!("{uuid}:1-20"), 900),
        ];
        let after = state(&format!("{uuid}:1-30"));
        let request = |replica: String| Request::Gtids(state(&replica));
        let start = find_start(
            Flavour::MySql,
            &files,
            &after,
            &request(format!("{uuid}:1-15")),
        )
        .expect("start");
        assert_eq!(start.file, 0);
        let err = find_start(
            Flavour::MySql,
            &files,
            &after,
            &request(format!("{uuid}:1-5")),
        )
        .expect_err("purged");
        assert!(
            err.message.ends_with(&format!(
                "The GTID set sent by the replica is '{uuid}:1-5', and the missing \
                 transactions are '{uuid}:6-10'"
            )),
            "{}",
            err.message
        );
    }

    #[test]
    fn positions_name_a_file_and_an_offset_inside_it() {
        let files = [file("b.000001", "", 1000), file("b.000002", "", 300)];
        let none = GtidState::None;
        let at = |file: &str, position| {
            find_start(
                Flavour::MariaDb,
                &files,
                &none,
                &Request::Position {
                    file: file.into(),
                    position,
                },
            )
        };
        assert_eq!(at("", 4).expect("first").file, 0);
        let start = at("b.000002", 120).expect("inside");
        assert_eq!((start.file, start.position), (1, 120));
        assert!(
            at("b.000002", 301)
                .expect_err("past")
                .message
                .contains("impossible position")
        );
        assert!(
            at("b.000009", 4)
                .expect_err("unknown")
                .message
                .contains("Could not find first log")
        );
        assert!(at("b.000001", 2).is_err());
    }
}
