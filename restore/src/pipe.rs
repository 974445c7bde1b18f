//! The fallback replay: `mariadb-binlog FILES | mariadb`, what people did before binlogd,
//! for a server where relay-log replay is not possible, and to compare the two.
//!
//! The plan's ranges are written out as plain binlog files (each cut at the range's end,
//! so the last transaction applied is the target's), `mariadb-binlog` (or `mysqlbinlog`)
//! turns them into SQL from the range's start, and one `mariadb` (or `mysql`) client
//! session runs it all in order. The SQL sets each transaction's GTID, so a target with
//! its binary log on records them; into MariaDB binlogd also sets `gtid_slave_pos` to the
//! plan's end at the end, as a relay-log replay leaves it, so the next restore knows where
//! this one stopped (MySQL's `gtid_executed` has them already). One thread of SQL, parsed twice: slower, which is the point of comparing.

use crate::apply::{Endpoint, ServerAddress};
use crate::error::RestoreError;
use binlogd_parser::Flavour;
use binlogd_storage::Archive;
use binlogd_storage::plan::Plan;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The two programs of the pipe.
#[derive(Debug, Clone)]
pub struct PipePrograms {
    /// `mariadb-binlog` or `mysqlbinlog`.
    pub binlog_reader: PathBuf,
    /// `mariadb` or `mysql`.
    pub client: PathBuf,
}

/// Replays `plan` into the server at `address` through the pipe; a temporary folder holds
/// one plain binlog file at a time. `on_file` hears of each range replayed with its size
/// in bytes.
pub async fn replay_through_pipe(
    archive: &Archive,
    plan: &Plan,
    address: &ServerAddress,
    programs: &PipePrograms,
    target: Flavour,
    mut on_file: impl FnMut(&str, u64),
) -> Result<(), RestoreError> {
    let work = tempfile::Builder::new()
        .prefix("binlogd-pipe-")
        .tempdir()
        .map_err(RestoreError::io(
            "creating a folder in",
            &std::env::temp_dir(),
        ))?;
    let work_dir = work.path();
    let mut client = Command::new(&programs.client);
    client.args(client_args(address)).arg("--binary-mode");
    if let Some(password) = &address.password {
        client.env("MYSQL_PWD", password);
    }
    let mut client = client
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RestoreError::io("starting", &programs.client))?;
    let mut sql = client.stdin.take().ok_or_else(|| RestoreError::Server {
        doing: "starting the client".into(),
        message: "no stdin".into(),
    })?;
    let mut fed: Result<(), RestoreError> = Ok(());
    for piece in &plan.pieces {
        let bytes = match archive.read_file(&piece.epoch, &piece.file).await {
            Ok(bytes) => bytes,
            Err(e) => {
                fed = Err(RestoreError::BadArchive {
                    file: format!("{}/{}", piece.epoch, piece.file),
                    offset: 0,
                    message: e.to_string(),
                });
                break;
            }
        };
        let end = usize::try_from(piece.end)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        // The name comes from the archive's catalogue: a plain file name, or refused.
        if let Err(message) = binlogd_storage::validate_binlog_name(&piece.file) {
            fed = Err(RestoreError::BadArchive {
                file: format!("{}/{}", piece.epoch, piece.file),
                offset: 0,
                message,
            });
            break;
        }
        let path = work_dir.join(&piece.file);
        if let Err(e) = std::fs::write(&path, &bytes[..end]) {
            fed = Err(RestoreError::io("writing", &path)(e));
            break;
        }
        let result = feed_one(&programs.binlog_reader, &path, piece.start, &mut sql);
        let _ = std::fs::remove_file(&path);
        if let Err(e) = result {
            fed = Err(e);
            break;
        }
        on_file(&piece.file, piece.end - piece.start);
    }
    drop(sql);
    let output = client
        .wait_with_output()
        .map_err(RestoreError::io("waiting for", &programs.client))?;
    if !output.status.success() {
        return Err(RestoreError::Server {
            doing: format!(
                "{} fed by {}",
                programs.client.display(),
                programs.binlog_reader.display()
            ),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    fed?;
    if target == Flavour::MySql {
        // Each transaction's GTID is in @@gtid_executed already, as after a replay.
        return Ok(());
    }
    // As a relay-log replay leaves it: the next restore starts from here.
    let set_position = format!("SET GLOBAL gtid_slave_pos = '{}'", plan.end);
    let status = Command::new(&programs.client)
        .args(client_args(address))
        .args(["-e", &set_position])
        .envs(address.password.iter().map(|p| ("MYSQL_PWD", p)))
        .output()
        .map_err(RestoreError::io("starting", &programs.client))?;
    if !status.status.success() {
        return Err(RestoreError::Server {
            doing: set_position,
            message: String::from_utf8_lossy(&status.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Runs the binlog reader on `file` from `start` and copies its SQL into the client.
fn feed_one(
    reader: &Path,
    file: &Path,
    start: u64,
    sql: &mut impl Write,
) -> Result<(), RestoreError> {
    let mut command = Command::new(reader);
    if start > 4 {
        command.arg(format!("--start-position={start}"));
    }
    let mut child = command
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RestoreError::io("starting", reader))?;
    let mut out = child.stdout.take().ok_or_else(|| RestoreError::Server {
        doing: format!("starting {}", reader.display()),
        message: "no stdout".into(),
    })?;
    let copied = std::io::copy(&mut out, sql);
    let output = child
        .wait_with_output()
        .map_err(RestoreError::io("waiting for", reader))?;
    if !output.status.success() {
        return Err(RestoreError::BadArchive {
            file: file.display().to_string(),
            offset: start,
            message: format!(
                "{} failed: {}",
                reader.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    // The client went away (it failed on a statement): its own words follow.
    copied.map(drop).map_err(|e| RestoreError::Server {
        doing: "feeding the client".into(),
        message: e.to_string(),
    })
}

fn client_args(address: &ServerAddress) -> Vec<String> {
    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--user={}", address.user),
    ];
    match &address.endpoint {
        Endpoint::Tcp { host, port } => {
            args.push(format!("--host={host}"));
            args.push(format!("--port={port}"));
            args.push("--protocol=tcp".to_owned());
        }
        Endpoint::Socket(path) => {
            args.push(format!("--socket={}", path.display()));
            args.push("--protocol=socket".to_owned());
        }
    }
    args
}
