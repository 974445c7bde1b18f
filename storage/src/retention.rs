//! Retention: which archived files may be deleted, and deleting them safely.
//!
//! Only whole, complete files go, and only from the archive's oldest end, so what stays
//! is always one continuous history (a purge never opens a gap). A file stays while any
//! rule keeps it:
//!
//! - it is the archive's newest file, or still open;
//! - `max_age`: its last commit is younger than that;
//! - `keep_after`: a kept backup's GTID state does not hold all of its transactions — a
//!   restore from that backup replays from this file on.
//!
//! Deleting from an object archive is ordered so that a crash at any point leaves it
//! readable: first the catalogue drops the files and lists them as `purging` (readers
//! then ignore their objects), then the objects go, then the catalogue forgets them.

use crate::archive::ArchiveFile;
use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::layout::{LocalArchive, sync_dir};
use crate::remote::catalogue::{self, CatalogueVersion};
use crate::remote::crypt::ClientKey;
use crate::remote::format::{Catalogue, FileRef};
use crate::remote::keys;
use crate::remote::store::ObjectStore;
use std::time::Duration;

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep files with a commit younger than this.
    pub max_age: Option<Duration>,
    /// Keep files holding transactions this state (a kept backup's) does not.
    pub keep_after: Option<GtidState>,
}

impl Retention {
    /// Whether the policy deletes anything at all.
    pub fn is_active(&self) -> bool {
        self.max_age.is_some() || self.keep_after.is_some()
    }

    /// The files that may go now: a prefix of `files` (in archive order).
    pub fn purgeable<'a>(&self, files: &'a [ArchiveFile], now_micros: u64) -> &'a [ArchiveFile] {
        self.purgeable_before(files, now_micros, false)
    }

    /// Like [`Retention::purgeable`], for `files` that a newer file not among them follows
    /// when `newer_follows` (an object archive's catalogue lists sealed files only, while
    /// the stream writes the next one): then the last of `files` is not the newest.
    pub fn purgeable_before<'a>(
        &self,
        files: &'a [ArchiveFile],
        now_micros: u64,
        newer_follows: bool,
    ) -> &'a [ArchiveFile] {
        if !self.is_active() {
            return &[];
        }
        let cutoff = self.max_age.map(|age| {
            now_micros.saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX))
        });
        let count = files
            .iter()
            .enumerate()
            .take_while(|(i, file)| {
                let newest = i + 1 == files.len() && !newer_follows;
                let old_enough = match (cutoff, file.last_commit_micros) {
                    (None, _) => true,
                    (Some(cutoff), Some(last)) => last < cutoff,
                    // No transaction to date it: it goes with the files around it.
                    (Some(_), None) => true,
                };
                let in_backup = match &self.keep_after {
                    None => true,
                    Some(backup) => {
                        (file.transactions == 0 || !file.gtids_after.is_empty())
                            && backup.includes_all(&file.gtids_after)
                    }
                };
                !newest && file.state.is_complete() && old_enough && in_backup
            })
            .count();
        &files[..count]
    }
}

/// Deletes complete files from a local archive: the data first, then its index (an index
/// without data is never read, and the next purge removes it).
pub fn purge_local(archive: &LocalArchive, files: &[ArchiveFile]) -> Result<u64, StorageError> {
    let mut bytes = 0;
    let mut dirs = Vec::new();
    for file in files {
        let dir = archive.root().join(&file.epoch);
        let data = dir.join(&file.name);
        let index = dir.join(format!("{}{}", file.name, crate::index::INDEX_SUFFIX));
        for path in [&data, &index] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("removing", path)(e)),
            }
        }
        bytes += file.size;
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        sync_dir(&dir)?;
    }
    Ok(bytes)
}

/// Deletes sealed files from an object archive whose catalogue is `catalogue` (the
/// caller holds the archive's lease). Finishes any purge a crash interrupted first.
/// Returns the bytes of object data deleted.
pub async fn purge_remote(
    store: &dyn ObjectStore,
    catalogue: &mut Catalogue,
    version: &mut CatalogueVersion,
    key: Option<&ClientKey>,
    files: &[ArchiveFile],
) -> Result<u64, StorageError> {
    let victims: Vec<FileRef> = files
        .iter()
        .filter(|f| {
            catalogue
                .files
                .iter()
                .any(|c| c.epoch == f.epoch && c.name == f.name)
        })
        .map(|f| FileRef {
            epoch: f.epoch.clone(),
            name: f.name.clone(),
        })
        .collect();
    if victims.is_empty() && catalogue.purging.is_empty() {
        return Ok(0);
    }
    // 1. Out of the catalogue, into its purging list: readers stop seeing them.
    if !victims.is_empty() {
        catalogue.files.retain(|c| {
            !victims
                .iter()
                .any(|v| v.epoch == c.epoch && v.name == c.name)
        });
        catalogue.purging.extend(victims);
        catalogue::write(store, catalogue, version, key).await?;
    }
    // 2. Their objects.
    let mut deleted = 0;
    for file in &catalogue.purging {
        for object in store
            .list(&keys::file_prefix(&file.epoch, &file.name))
            .await?
        {
            store.delete(&object.key).await?;
            deleted += object.size;
        }
    }
    // 3. Forget them.
    catalogue.purging.clear();
    catalogue::write(store, catalogue, version, key).await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::FileState;

    fn file(name: &str, after: &str, last_second: Option<u64>, state: FileState) -> ArchiveFile {
        ArchiveFile {
            epoch: "0001-server1".into(),
            name: name.into(),
            state,
            size: 100,
            indexed_end: 100,
            transactions: u64::from(last_second.is_some()),
            gtids_before: GtidState::None,
            gtids_after: after.parse().expect("state"),
            first_commit_micros: last_second.map(|s| s * 1_000_000),
            last_commit_micros: last_second.map(|s| s * 1_000_000),
            source_server_id: 1,
        }
    }

    fn names(files: &[ArchiveFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn only_an_old_complete_prefix_goes() {
        let files = [
            file("a", "0-1-10", Some(100), FileState::Sealed),
            file("b", "0-1-20", Some(200), FileState::Sealed),
            file("c", "0-1-30", Some(300), FileState::Sealed),
            file("d", "0-1-40", Some(150), FileState::Sealed),
            file("e", "0-1-50", Some(160), FileState::Open),
        ];
        let now = 1_000 * 1_000_000;
        let age = |seconds| Retention {
            max_age: Some(Duration::from_secs(seconds)),
            keep_after: None,
        };
        // Cut-off at 250 s: a and b are older; c is not, so d stays although it is older.
        assert_eq!(names(age(750).purgeable(&files, now)), ["a", "b"]);
        // Everything is old, but the open file (and anything from it on) stays.
        assert_eq!(names(age(1).purgeable(&files, now)), ["a", "b", "c", "d"]);
        let mut closed = files.clone();
        closed[4].state = FileState::Sealed;
        assert_eq!(
            names(age(1).purgeable(&closed, now)),
            ["a", "b", "c", "d"],
            "the newest file always stays"
        );
        assert!(Retention::default().purgeable(&files, now).is_empty());

        // A backup at 0-1-25 still needs c (0-1-21..30) and what follows.
        let backup = Retention {
            max_age: Some(Duration::from_secs(1)),
            keep_after: Some("0-1-25".parse().expect("state")),
        };
        assert_eq!(names(backup.purgeable(&files, now)), ["a", "b"]);
        let only_backup = Retention {
            max_age: None,
            keep_after: Some("0-1-30".parse().expect("state")),
        };
        assert_eq!(names(only_backup.purgeable(&files, now)), ["a", "b", "c"]);
        // Without GTIDs a backup cannot be placed: nothing goes.
        let mut no_gtids = files.clone();
        no_gtids[0].gtids_after = GtidState::None;
        assert!(only_backup.purgeable(&no_gtids, now).is_empty());
    }

    #[test]
    fn a_catalogue_of_sealed_files_loses_its_last_one_when_a_newer_file_follows() {
        let sealed = [
            file("a", "0-1-10", Some(100), FileState::Sealed),
            file("b", "0-1-20", Some(200), FileState::Sealed),
        ];
        let backup = Retention {
            max_age: None,
            keep_after: Some("0-1-20".parse().expect("state")),
        };
        assert_eq!(names(backup.purgeable_before(&sealed, 0, false)), ["a"]);
        assert_eq!(names(backup.purgeable_before(&sealed, 0, true)), ["a", "b"]);
    }
}
