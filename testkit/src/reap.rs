//! Reaping servers whose test process died without running destructors.
//!
//! Every instance lives in a folder under [`instances_root`] that holds `owner.pid` (the
//! test process) and `server.pid` (the server it started). [`reap_orphans`] kills the server
//! of every folder whose owner is gone and removes the folder. It runs before each new
//! instance starts, so a SIGKILLed test run is cleaned up by the next one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{kill_pid, pid_alive, pids_mentioning};

/// Folder that holds every instance directory of this machine's test runs.
pub fn instances_root() -> PathBuf {
    std::env::temp_dir().join("binlogd-testkit")
}

/// Where instance directories of chrooted servers go, relative to the server's root
/// filesystem (so the server sees them at `/tmp/binlogd-testkit/...`).
pub(crate) const CHROOT_INSTANCES: &str = "tmp/binlogd-testkit";

/// Creates a fresh instance directory owned by this process.
pub(crate) fn new_instance_dir(prefix: &str) -> Result<tempfile::TempDir> {
    new_instance_dir_in(&instances_root(), prefix)
}

/// Creates a fresh instance directory owned by this process in `root`.
pub(crate) fn new_instance_dir_in(root: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    reap_orphans();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .with_context(|| format!("create an instance directory in {}", root.display()))?;
    fs::write(dir.path().join("owner.pid"), std::process::id().to_string())?;
    Ok(dir)
}

/// Records the server's pid in its instance directory.
pub(crate) fn record_server_pid(dir: &Path, pid: u32) -> Result<()> {
    fs::write(dir.join("server.pid"), pid.to_string()).context("record server pid")
}

/// Kills the servers of instance directories whose owning test process no longer exists.
pub fn reap_orphans() {
    reap_orphans_in(&instances_root(), Path::new(""));
    // Chrooted servers see their instance folders without the root's prefix, and their
    // command lines say so.
    if let Ok(roots) = fs::read_dir(crate::tools::tool_cache()) {
        for root in roots.flatten() {
            let instances = root.path().join(CHROOT_INSTANCES);
            if instances.is_dir() {
                reap_orphans_in(&instances, Path::new("/").join(CHROOT_INSTANCES).as_path());
            }
        }
    }
}

/// Reaps the orphaned instance folders in `root`; `seen_as` is how the servers there name
/// that folder on their command lines (empty: as this machine does).
fn reap_orphans_in(root: &Path, seen_as: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = read_pid(&dir.join("owner.pid"));
        let orphaned = match owner {
            Some(pid) => !pid_alive(pid),
            // A folder whose owner file was never written: only old ones are orphans.
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(120)),
        };
        if !orphaned {
            continue;
        }
        let named = if seen_as.as_os_str().is_empty() {
            dir.clone()
        } else {
            seen_as.join(entry.file_name())
        };
        // Kill only processes that really belong to this folder: a recorded pid may have
        // been reused by an unrelated process since.
        for pid in pids_mentioning(&named) {
            kill_pid(pid);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}
