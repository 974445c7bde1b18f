//! Child processes that cannot outlive their test, free ports, and the process table.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on 127.0.0.1.
///
/// The port is free when this returns; a server started right after may still lose a race
/// with another test, so callers that start servers retry on "address in use".
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a probe socket on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Pids of live processes whose command line mentions `needle` (a datadir, a config file).
///
/// Tests use this to prove that an instance left nothing behind: it reads the process table
/// (`/proc/*/cmdline`) rather than trusting that a kill worked.
pub fn pids_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        // A zombie has an empty cmdline, so it does not count as a live process here.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle.as_ref()) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether a process with this pid exists (zombies included).
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends SIGKILL to a process that is not our child (a server left by a dead test run).
pub(crate) fn kill_pid(pid: u32) {
    // `kill(1)` keeps this crate free of unsafe code; failure means the process is gone.
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

/// A child process killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    pub(crate) fn new(child: Child, what: impl Into<String>) -> Self {
        ChildGuard {
            child: Some(child),
            what: what.into(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if the process has already exited, with its exit status.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited early with {status}", self.what);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself; kills it after that.
    /// Returns whether it exited by itself.
    pub(crate) fn wait_or_kill(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `ready` every 20 ms until it returns `Ok(true)`, the guard's process dies, or
/// `timeout` passes.
pub(crate) fn wait_until(
    guard: &mut ChildGuard,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        guard.check_running()?;
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what} not ready after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
