//! Where a replay starts: the GTID state the restored server holds before it.
//!
//! A backup says it (mariadb-backup's and XtraBackup's `*_binlog_info` / `*_info` files),
//! or the user does (`--from-gtid`), or the server itself (its `gtid_binlog_pos` /
//! `gtid_slave_pos`, MySQL's `gtid_executed`, which is also how a MySQL CLONE keeps it).
//! Whichever is named, the replay never starts before what the server already holds: a
//! transaction applied twice is a corrupt restore.

use crate::apply::ServerFacts;
use crate::error::RestoreError;
use binlogd_parser::Flavour;
use binlogd_storage::GtidState;
use std::path::{Path, PathBuf};

/// What the command line says of the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartGiven {
    /// `--from-gtid`: these GTIDs.
    Gtids(GtidState),
    /// `--from-backup`: what this backup folder (or datadir restored from one, or MySQL
    /// clone) holds.
    Backup(PathBuf),
    /// `--from-archive-start`: the archive's first state, into an empty server.
    ArchiveStart,
    /// Nothing: the target server's own GTID state.
    ServerState,
}

/// The GTID state the replay starts after (`None`: the archive's first), from what was
/// given and what the target server holds. Never a state the server is past: see
/// `start_point`.
pub fn choose_start(
    given: &StartGiven,
    facts: &ServerFacts,
) -> Result<Option<GtidState>, RestoreError> {
    let named = match given {
        StartGiven::Gtids(gtids) => Some(gtids.clone()),
        StartGiven::Backup(dir) => match backup_gtids(dir)? {
            Some(gtids) => Some(gtids),
            None if facts.flavour == Flavour::MySql && !facts.executed.is_empty() => {
                tracing::info!(clone = %dir.display(), gtid_executed = %facts.executed,
                    "a MySQL clone: starting from the server's own gtid_executed");
                Some(facts.executed.clone())
            }
            None => {
                return Err(RestoreError::Start(format!(
                    "{} is a MySQL clone, whose GTID state is the server's own @@gtid_executed, \
                     and the target {}: start it on the clone",
                    dir.display(),
                    if facts.flavour == Flavour::MySql {
                        "reports none"
                    } else {
                        "is MariaDB"
                    }
                )));
            }
        },
        StartGiven::ArchiveStart => None,
        StartGiven::ServerState if !facts.executed.is_empty() => Some(facts.executed.clone()),
        StartGiven::ServerState => {
            return Err(RestoreError::Start(
                "the target server reports no GTID state (one restored from a backup does \
                 not): say where to start with --from-backup DIR or --from-gtid GTIDS, or \
                 --from-archive-start for an empty server"
                    .to_owned(),
            ));
        }
    };
    start_point(named, &facts.executed)
}

/// The GTID state a mariadb-backup backup ends at, from its folder or from a datadir
/// restored from it: `xtrabackup_binlog_info` in the folder (`mariadb-bin.000001 54057
/// 0-11-204`, tab-separated), or the `binlog_pos` line of `xtrabackup_info`, which
/// `--copy-back` also puts in the datadir (`binlog_pos = filename 'mariadb-bin.000001',
/// position '54057', GTID of the last change '0-11-204'`).
///
/// `None` for a MySQL CLONE (`CLONE LOCAL DATA DIRECTORY`, or a clone of another
/// instance): its `#clone` folder records no GTIDs for a local clone, and the datadir
/// keeps them in its `mysql.gtid_executed` table, which the server started on it reports
/// as `@@gtid_executed`.
pub fn backup_gtids(dir: &Path) -> Result<Option<GtidState>, RestoreError> {
    let (path, gtids) = if let Some(path) = ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
    {
        let text = std::fs::read_to_string(&path).map_err(RestoreError::io("reading", &path))?;
        // FILE, POSITION, then the GTIDs, which XtraBackup breaks over lines after each
        // comma when a MySQL set has several server UUIDs.
        let gtids: String = text.split_whitespace().skip(2).collect();
        (path, Some(gtids))
    } else if let Some(path) = ["xtrabackup_info", "mariadb_backup_info"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
    {
        let text = std::fs::read_to_string(&path).map_err(RestoreError::io("reading", &path))?;
        let gtids = text
            .lines()
            .find_map(|line| line.strip_prefix("binlog_pos = "))
            .and_then(|pos| pos.split("GTID of the last change '").nth(1))
            .and_then(|rest| rest.split('\'').next())
            .map(str::to_owned);
        (path, gtids)
    } else if dir.join("#clone").is_dir() {
        return Ok(None);
    } else {
        return Err(RestoreError::Start(format!(
            "{} holds neither xtrabackup_binlog_info nor xtrabackup_info (mariadb_backup_* since \
             MariaDB 11) nor #clone: is it a mariadb-backup or XtraBackup folder, a datadir \
             restored from one, or a MySQL clone?",
            dir.display()
        )));
    };
    let gtids = gtids.filter(|g| !g.is_empty()).ok_or_else(|| {
        RestoreError::Start(format!(
            "{} names no GTID (the backup was taken without GTIDs?): give the start with --from-gtid",
            path.display()
        ))
    })?;
    gtids
        .parse()
        .map(Some)
        .map_err(|e: String| RestoreError::Start(format!("{}: {e}", path.display())))
}

/// Where the replay starts: after `named` (a backup's GTIDs, or --from-gtid), unless the
/// server already holds more. A replay must never apply a transaction the server has (a
/// MariaDB applier replaying relay logs by position does not skip it, and applies it
/// twice), and a datadir restored once already still names its backup's GTIDs: the
/// server's own state is then the start. A server whose state and `named` disagree (each
/// holds what the other lacks) is refused: binlogd cannot tell which is the truth.
fn start_point(
    named: Option<GtidState>,
    server: &GtidState,
) -> Result<Option<GtidState>, RestoreError> {
    let Some(named) = named else {
        if !server.is_empty() {
            return Err(RestoreError::Start(format!(
                "--from-archive-start needs an empty server, and this one holds {server}: \
                 replaying from the start would apply those transactions again (leave it \
                 out to start from the server's own state)"
            )));
        }
        return Ok(None);
    };
    if named.includes_all(server) {
        return Ok(Some(named));
    }
    if server.includes_all(&named) {
        tracing::info!(
            server = %server, backup = %named,
            "the server holds more than the start named (restored before?): starting from \
             the server's own state"
        );
        return Ok(Some(server.clone()));
    }
    Err(RestoreError::Start(format!(
        "the server holds {server}, and the start named is {named}: each has transactions \
         the other lacks ({} and {}), so neither is a safe start. If the server's state is \
         right, leave out --from-backup and --from-gtid",
        named.describe_missing(server),
        server.describe_missing(&named)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> GtidState {
        text.parse().expect("a GTID state")
    }

    #[test]
    fn the_start_is_never_before_what_the_server_holds() {
        // The backup's state, on a server restored from it.
        assert_eq!(
            start_point(Some(state("0-1-200")), &state("0-1-200")).expect("start"),
            Some(state("0-1-200"))
        );
        // Restored once already: the server's own state, past the backup's.
        assert_eq!(
            start_point(Some(state("0-1-200")), &state("0-1-350")).expect("start"),
            Some(state("0-1-350"))
        );
        // Each holds what the other lacks: no safe start.
        let err = start_point(Some(state("0-1-200,1-2-5")), &state("0-1-350")).expect_err("both");
        assert!(err.to_string().contains("neither is a safe start"), "{err}");
        // The archive's start, only into an empty server.
        assert_eq!(start_point(None, &GtidState::None).expect("empty"), None);
        let err = start_point(None, &state("0-1-1")).expect_err("not empty");
        assert!(err.to_string().contains("needs an empty server"), "{err}");
    }

    #[test]
    fn the_start_comes_from_the_backup_folder_or_a_datadir_restored_from_it() {
        let dir = tempfile_dir("folder");
        std::fs::write(
            dir.join("xtrabackup_binlog_info"),
            "mariadb-bin.000006\t21734\t0-1-202\n",
        )
        .expect("write");
        assert_eq!(
            backup_gtids(&dir)
                .expect("gtids")
                .expect("named")
                .to_string(),
            "0-1-202"
        );
        // Percona XtraBackup of a MySQL server with two source UUIDs.
        std::fs::write(
            dir.join("xtrabackup_binlog_info"),
            "binlog.000003\t1234\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n\
             4e11fa47-71ca-11e1-9e33-c80aa9429562:1-7\n",
        )
        .expect("write");
        assert_eq!(
            backup_gtids(&dir)
                .expect("gtids")
                .expect("named")
                .to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-7"
        );
        let clone = tempfile_dir("clone");
        std::fs::create_dir(clone.join("#clone")).expect("mkdir");
        assert_eq!(backup_gtids(&clone).expect("a clone"), None);
        let _ = std::fs::remove_dir_all(clone);
        let datadir = tempfile_dir("datadir");
        std::fs::write(
            datadir.join("xtrabackup_info"),
            "tool_name = mariadb-backup\nbinlog_pos = filename 'mb.000001', position '771', \
             GTID of the last change '0-1-3,5-2-9'\ninnodb_from_lsn = 0\n",
        )
        .expect("write");
        assert_eq!(
            backup_gtids(&datadir)
                .expect("gtids")
                .expect("named")
                .to_string(),
            "0-1-3,5-2-9"
        );
        let empty = tempfile_dir("empty");
        let err = backup_gtids(&empty).expect_err("nothing there");
        assert!(
            err.to_string().contains("neither xtrabackup_binlog_info"),
            "{err}"
        );
        for dir in [dir, datadir, empty] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("binlogd-backup-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
