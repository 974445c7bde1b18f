//! `kubectl binlogd` (the binary `kubectl-binlogd` on PATH): the operator's resources from a
//! terminal.
//!
//! - `status`: every BinlogServer with how far its archive reaches, and the restores.
//! - `restore`: creates a PointInTimeRestore and follows it to its end.
//! - `search`: what a restore to a target would replay, by running `binlogd search` here on
//!   the BinlogServer's archive (with this machine's S3 credentials).
//!
//! The functions take a client and a writer, so a test can run them against a scripted API
//! server and read what they print.

use crate::crd::{
    BinlogServer, DatabaseSpec, PointInTimeRestore, PointInTimeRestoreSpec,
    PointInTimeRestoreStatus, RestoreMethod, RestorePhase, RestoreTarget,
};
use crate::workloads::archive_url;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use std::io::Write;
use std::time::Duration;

/// Why a plugin command failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Printing failed.
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    /// The restore ended in failure.
    #[error("restore {name} failed: {message}")]
    RestoreFailed {
        /// The PointInTimeRestore.
        name: String,
        /// Its status message.
        message: String,
    },
    /// Something the user asked for does not exist or makes no sense.
    #[error("{0}")]
    Usage(String),
}

/// One replica of `binlogd serve`, under its BinlogServer's line.
fn replica_line(replica: &crate::crd::ServedReplica) -> String {
    let behind = if replica.lag_seconds > 0.0 {
        format!("{:.0}s behind", replica.lag_seconds)
    } else {
        "caught up".to_owned()
    };
    format!(
        "replica {} (server_id {}, user {}): sent {}:{}, {behind}, {} sent",
        replica.peer,
        replica.server_id,
        replica.user,
        replica.file,
        replica.position,
        human_bytes(replica.sent_bytes)
    )
}

/// 1536 → `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn cell(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// Prints the BinlogServers and PointInTimeRestores of `namespace` (all when `None`).
pub async fn status(
    client: Client,
    namespace: Option<&str>,
    out: &mut impl Write,
) -> Result<(), PluginError> {
    let servers: Api<BinlogServer> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let restores: Api<PointInTimeRestore> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let servers = servers.list(&ListParams::default()).await?;
    writeln!(
        out,
        "{:<16} {:<20} {:<28} {:<26} {:<22} {:>6} READY",
        "NAMESPACE", "BINLOGSERVER", "ARCHIVE", "LAST ARCHIVED", "RECOVERABLE TO", "LAG"
    )?;
    for server in &servers.items {
        let status = server.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map_or("Unknown", |c| c.status.as_str())
            .to_owned();
        writeln!(
            out,
            "{:<16} {:<20} {:<28} {:<26} {:<22} {:>6} {}",
            server.namespace().unwrap_or_default(),
            server.name_any(),
            archive_url(&server.spec.storage),
            cell(status.last_archived_gtid.as_deref()),
            cell(status.last_recoverable_time.as_deref()),
            status
                .lag_seconds
                .map_or("-".to_owned(), |lag| format!("{lag:.1}s")),
            ready
        )?;
        for replica in &status.replicas {
            writeln!(out, "  {}", replica_line(replica))?;
        }
    }
    let restores = restores.list(&ListParams::default()).await?;
    if !restores.items.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<16} {:<20} {:<28} {:<12} {:<9} MESSAGE",
            "NAMESPACE", "RESTORE", "TARGET", "PHASE", "PROGRESS"
        )?;
        for restore in &restores.items {
            let status = restore.status.clone().unwrap_or_default();
            writeln!(
                out,
                "{:<16} {:<20} {:<28} {:<12} {:<9} {}",
                restore.namespace().unwrap_or_default(),
                restore.name_any(),
                cell(status.target.as_deref()),
                status
                    .phase
                    .map_or("Pending".to_owned(), |p| format!("{p:?}")),
                cell(status.progress.as_deref()),
                cell(status.message.as_deref())
            )?;
        }
    }
    Ok(())
}

/// What `kubectl binlogd restore` asks for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The PointInTimeRestore's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The BinlogServer whose archive to use.
    pub binlog_server: String,
    /// Where to stop.
    pub target: RestoreTarget,
    /// Fail when the target is beyond the archive.
    pub strict: bool,
    /// The database's claim (datadir restored from a base backup, database stopped).
    pub pvc: String,
    /// The database image.
    pub image: String,
    /// The user (and group) its server runs as, which owns the datadir.
    pub run_as_user: i64,
    /// Parallel workers.
    pub parallel_workers: Option<u32>,
    /// Staged relay logs, or replication from a `binlogd serve` in the Job.
    pub method: RestoreMethod,
}

/// Creates the PointInTimeRestore and follows it, printing each change of phase, until it
/// succeeds (Ok) or fails (the error carries its message). `poll` is the time between
/// looks.
pub async fn restore(
    client: Client,
    request: &RestoreRequest,
    poll: Duration,
    out: &mut (impl Write + Send),
) -> Result<(), PluginError> {
    restore_with(client, request, poll, &mut |line: &str, _| {
        writeln!(out, "{line}")
    })
    .await
}

/// [`restore`], telling `report` each change (a line, and the status it describes), for
/// a caller that shows a progress bar instead of lines.
pub async fn restore_with(
    client: Client,
    request: &RestoreRequest,
    poll: Duration,
    report: &mut (dyn FnMut(&str, &PointInTimeRestoreStatus) -> std::io::Result<()> + Send),
) -> Result<(), PluginError> {
    let servers: Api<BinlogServer> = Api::namespaced(client.clone(), &request.namespace);
    if servers.get_opt(&request.binlog_server).await?.is_none() {
        return Err(PluginError::Usage(format!(
            "no BinlogServer {} in namespace {}",
            request.binlog_server, request.namespace
        )));
    }
    let restores: Api<PointInTimeRestore> = Api::namespaced(client, &request.namespace);
    let resource = PointInTimeRestore::new(
        &request.name,
        PointInTimeRestoreSpec {
            binlog_server_ref: Some(request.binlog_server.clone()),
            storage: None,
            target: request.target.clone(),
            strict: request.strict,
            database: DatabaseSpec {
                pvc_name: request.pvc.clone(),
                sub_path: None,
                image: request.image.clone(),
                config: None,
                from_gtid: None,
                run_as_user: request.run_as_user,
                run_as_group: request.run_as_user,
            },
            parallel_workers: request.parallel_workers,
            staging: None,
            method: request.method,
            resources: None,
        },
    );
    restores.create(&PostParams::default(), &resource).await?;
    report(
        &format!(
            "created PointInTimeRestore {}/{}",
            request.namespace, request.name
        ),
        &PointInTimeRestoreStatus::default(),
    )?;
    let mut last_said = String::new();
    loop {
        let current = restores.get(&request.name).await?;
        let status = current.status.unwrap_or_default();
        let said = format!(
            "{} {} {}",
            status
                .phase
                .map_or("Pending".to_owned(), |p| format!("{p:?}")),
            cell(status.progress.as_deref()),
            cell(status.message.as_deref())
        );
        if said != last_said {
            report(&said, &status)?;
            last_said = said;
        }
        match status.phase {
            Some(RestorePhase::Succeeded) => return Ok(()),
            Some(RestorePhase::Failed) => {
                return Err(PluginError::RestoreFailed {
                    name: request.name.clone(),
                    message: status.message.unwrap_or_default(),
                });
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}

/// The `binlogd search` command line for `server`'s archive and `target_args` (the
/// search flags, e.g. `--to-time T`), from `from_gtid` when given.
pub async fn search_command(
    client: Client,
    namespace: &str,
    server: &str,
    from_gtid: Option<&str>,
    target_args: &[String],
) -> Result<Vec<String>, PluginError> {
    let mut extra = Vec::new();
    if let Some(gtid) = from_gtid {
        extra.extend(["--from-gtid".to_owned(), gtid.to_owned()]);
    }
    extra.extend(target_args.iter().cloned());
    archive_command(client, namespace, server, "search", extra).await
}

/// The `binlogd find` command line for the BinlogServer `server`'s archive, with the
/// filters `filter_args` (as `binlogd find` takes them).
pub async fn find_command(
    client: Client,
    namespace: &str,
    server: &str,
    filter_args: &[String],
) -> Result<Vec<String>, PluginError> {
    archive_command(client, namespace, server, "find", filter_args.to_vec()).await
}

/// The `binlogd timeline` command line that draws `server`'s archive into `svg` (from
/// `from_gtid`, a base backup's state, when given). `server` may be left out when the
/// namespace holds one BinlogServer only.
pub async fn timeline_command(
    client: Client,
    namespace: &str,
    server: Option<&str>,
    svg: &std::path::Path,
    from_gtid: Option<&str>,
) -> Result<Vec<String>, PluginError> {
    let server = match server {
        Some(server) => server.to_owned(),
        None => {
            let servers = Api::<BinlogServer>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await?;
            let names: Vec<String> = servers.items.iter().map(|s| s.name_any()).collect();
            match names.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(PluginError::Usage(format!(
                        "no BinlogServer in namespace {namespace} to draw"
                    )));
                }
                several => {
                    return Err(PluginError::Usage(format!(
                        "--svg draws one archive: say which with --from (namespace {namespace} \
                         has {})",
                        several.join(", ")
                    )));
                }
            }
        }
    };
    let mut extra = vec!["--svg".to_owned(), svg.display().to_string()];
    if let Some(gtid) = from_gtid {
        extra.extend(["--from-gtid".to_owned(), gtid.to_owned()]);
    }
    archive_command(client, namespace, &server, "timeline", extra).await
}

/// `binlogd SUBCOMMAND --archive URL [--s3-endpoint ...] EXTRA` for `server`'s archive.
async fn archive_command(
    client: Client,
    namespace: &str,
    server: &str,
    subcommand: &str,
    extra: Vec<String>,
) -> Result<Vec<String>, PluginError> {
    let server = Api::<BinlogServer>::namespaced(client, namespace)
        .get_opt(server)
        .await?
        .ok_or_else(|| {
            PluginError::Usage(format!("no BinlogServer {server} in namespace {namespace}"))
        })?;
    let storage = &server.spec.storage;
    let mut args = vec![
        subcommand.to_owned(),
        "--archive".to_owned(),
        archive_url(storage),
    ];
    if let Some(endpoint) = &storage.endpoint {
        args.extend(["--s3-endpoint".to_owned(), endpoint.clone()]);
    }
    if let Some(region) = &storage.region {
        args.extend(["--s3-region".to_owned(), region.clone()]);
    }
    args.extend(extra);
    Ok(args)
}
