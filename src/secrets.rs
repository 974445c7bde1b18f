//! Files binlogd creates, and files of secrets it reads.
//!
//! Archive, spool, index and staging files hold a database's data: binlogd creates them
//! readable by its own user and group only (umask 027: files 0640, folders 0750), whatever
//! umask it was started with. Password and key files should be readable by as few as
//! possible: one that every user of the machine may read is warned about, or refused with
//! `--strict-permissions`. A group may read them: Kubernetes mounts a Secret so for a pod's
//! fsGroup.

use anyhow::bail;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static STRICT: AtomicBool = AtomicBool::new(false);

/// Sets the umask for everything binlogd creates, and whether `--strict-permissions`
/// was given.
pub fn init(strict_permissions: bool) {
    STRICT.store(strict_permissions, Ordering::Relaxed);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
}

/// Checks the file of a secret (`what`, as the user named it) before it is read.
pub fn check_secret_file(path: &Path, what: &str) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        // Reading it says what is wrong.
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 == 0 {
        return Ok(());
    }
    let advice = format!(
        "{what} {} may be read by every user of this machine (mode {mode:04o}): chmod 600 it \
         (640 for a group that needs it)",
        path.display()
    );
    if STRICT.load(Ordering::Relaxed) {
        bail!("{advice}; --strict-permissions refuses it");
    }
    tracing::warn!("{advice}");
    Ok(())
}
