//! Where an archive keeps things on a local file system.
//!
//! ```text
//! ARCHIVE/
//!   binlogd-archive.json            marks the directory as an archive (format version)
//!   0001-server1/                   an epoch: everything streamed from one server
//!     source.json                   which server (id, uuid, flavour, version, address)
//!     mysql-bin.000001              the server's file, byte for byte
//!     mysql-bin.000001.index.jsonl  its index (see `index`)
//!     mysql-bin.000002
//!     ...
//!   0002-server2/                   after a failover: the new primary's files
//! ```
//!
//! Binlog files keep the names the server gave them, so `cmp` against the server's own
//! files and `mariadb-binlog` on the copies work. A new epoch begins when the server
//! behind the source address changes (a failover): two servers may both have a
//! `mysql-bin.000007`, and neither may overwrite the other.

use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::INDEX_SUFFIX;
use binlogd_parser::Flavour;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that marks a directory as an archive.
pub const ARCHIVE_MARKER: &str = "binlogd-archive.json";

/// The file a writer holds an exclusive lock on (see [`LocalArchive::claim_for_writing`]).
const WRITER_LOCK: &str = "binlogd-writer.lock";

/// A writer's hold on a local archive; released when dropped.
#[derive(Debug)]
pub struct WriterClaim {
    _file: fs::File,
}
/// The file in an epoch that names its server.
pub const SOURCE_FILE: &str = "source.json";
const ARCHIVE_FORMAT: u32 = 1;

/// The server an epoch's files came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// `@@server_id`.
    pub server_id: u32,
    /// `@@server_uuid` (MySQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    /// MariaDB or MySQL (`mariadb` or `mysql` in `source.json`).
    pub flavour: Flavour,
    /// The server's version string.
    pub version: String,
    /// The address binlogd connected to.
    pub address: String,
}

impl SourceIdentity {
    /// Whether `other` is the same server (the address and version may change).
    pub fn same_server(&self, other: &SourceIdentity) -> bool {
        self.server_id == other.server_id && self.server_uuid == other.server_uuid
    }
}

/// A local archive directory.
#[derive(Debug, Clone)]
pub struct LocalArchive {
    root: PathBuf,
}

/// The files streamed from one server.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// Its directory.
    pub dir: PathBuf,
    /// Its number, from 1, in the order epochs began.
    pub number: u32,
    /// The server.
    pub source: SourceIdentity,
    /// What earlier epochs held when this one began: the new server's binlogs repeat
    /// those transactions, and the index marks them `repeated`.
    pub gtids_at_start: GtidState,
}

/// The contents of an epoch's `source.json`.
#[derive(Serialize, Deserialize)]
struct EpochManifest {
    source: SourceIdentity,
    #[serde(default)]
    gtids_at_start: GtidState,
}

/// Reads an epoch's `source.json` (from a directory or an object store): the source
/// server it holds the files of.
pub(crate) fn parse_epoch_source(bytes: &[u8]) -> Result<SourceIdentity, serde_json::Error> {
    serde_json::from_slice::<EpochManifest>(bytes).map(|m| m.source)
}

#[derive(Serialize, Deserialize)]
struct Marker {
    format: u32,
}

impl LocalArchive {
    /// Opens the archive at `root`, creating it if the directory is missing or empty.
    /// Refuses a non-empty directory that is not an archive, so a typo never scatters
    /// binlogs among someone's files.
    pub fn open(root: &Path) -> Result<LocalArchive, StorageError> {
        fs::create_dir_all(root).map_err(StorageError::io("creating", root))?;
        let marker = root.join(ARCHIVE_MARKER);
        match fs::read(&marker) {
            Ok(bytes) => {
                let found: Marker =
                    serde_json::from_slice(&bytes).map_err(|e| StorageError::BadIndex {
                        path: marker.clone(),
                        line: 1,
                        message: e.to_string(),
                    })?;
                if found.format != ARCHIVE_FORMAT {
                    return Err(StorageError::NotAnArchive {
                        path: marker,
                        message: format!(
                            "archive format {} is not the {ARCHIVE_FORMAT} this binlogd writes",
                            found.format
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entries = fs::read_dir(root).map_err(StorageError::io("listing", root))?;
                if entries.next().is_some() {
                    return Err(StorageError::NotAnArchive {
                        path: root.to_owned(),
                        message: format!(
                            "the directory is not empty and has no {ARCHIVE_MARKER}: not a binlogd archive"
                        ),
                    });
                }
                let body = serde_json::to_vec(&Marker {
                    format: ARCHIVE_FORMAT,
                })
                .unwrap_or_default();
                write_atomically(&marker, &body)?;
            }
            Err(e) => return Err(StorageError::io("reading", &marker)(e)),
        }
        Ok(LocalArchive {
            root: root.to_owned(),
        })
    }

    /// Claims the archive for this process's writes, until the claim is dropped (or the
    /// process ends, however it ends: the kernel releases the lock). Two writers on one
    /// directory would interleave appends and undo each other's crash recovery; readers
    /// (list, search, verify) need no claim.
    pub fn claim_for_writing(&self) -> Result<WriterClaim, StorageError> {
        let path = self.root.join(WRITER_LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StorageError::io("opening", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterClaim { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StorageError::InUse {
                path: self.root.clone(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(StorageError::io("locking", &path)(e)),
        }
    }

    /// The archive's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The epochs, oldest first.
    pub fn epochs(&self) -> Result<Vec<Epoch>, StorageError> {
        let mut epochs = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(StorageError::io("listing", &self.root))? {
            let entry = entry.map_err(StorageError::io("listing", &self.root))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.split_once('-'))
                .and_then(|(n, _)| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let source_path = dir.join(SOURCE_FILE);
            let bytes = match fs::read(&source_path) {
                Ok(bytes) => bytes,
                // An epoch whose creation was cut short before its source was recorded
                // holds nothing yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("reading", &source_path)(e)),
            };
            let manifest: EpochManifest =
                serde_json::from_slice(&bytes).map_err(|e| StorageError::BadIndex {
                    path: source_path.clone(),
                    line: 1,
                    message: e.to_string(),
                })?;
            epochs.push(Epoch {
                dir,
                number,
                source: manifest.source,
                gtids_at_start: manifest.gtids_at_start,
            });
        }
        epochs.sort_by_key(|e| e.number);
        Ok(epochs)
    }

    /// Begins a new epoch for `source`, when the archive holds `gtids_at_start`.
    pub fn new_epoch(
        &self,
        source: SourceIdentity,
        gtids_at_start: GtidState,
    ) -> Result<Epoch, StorageError> {
        let number = self.epochs()?.last().map_or(1, |e| e.number + 1);
        let dir = self
            .root
            .join(format!("{number:04}-server{}", source.server_id));
        fs::create_dir_all(&dir).map_err(StorageError::io("creating", &dir))?;
        let manifest = EpochManifest {
            source,
            gtids_at_start,
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_atomically(&dir.join(SOURCE_FILE), &body)?;
        sync_dir(&self.root)?;
        Ok(Epoch {
            dir,
            number,
            source: manifest.source,
            gtids_at_start: manifest.gtids_at_start,
        })
    }
}

impl Epoch {
    /// The binlog files archived in this epoch, in the server's order.
    pub fn binlog_files(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(StorageError::io("listing", &self.dir))? {
            let entry = entry.map_err(StorageError::io("listing", &self.dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == SOURCE_FILE || name.ends_with(INDEX_SUFFIX) || name.ends_with(".tmp") {
                continue;
            }
            names.push(name);
        }
        names.sort_by(|a, b| binlog_order(a, b));
        Ok(names)
    }

    /// Where the binlog file `name` is kept.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the index of binlog file `name` is kept.
    pub fn index_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{INDEX_SUFFIX}"))
    }
}

/// Orders binlog file names as the server numbers them: `base.000999` before
/// `base.1000000` (the suffix grows past six digits).
pub fn binlog_order(a: &str, b: &str) -> Ordering {
    fn split(name: &str) -> (&str, Option<u64>) {
        match name.rsplit_once('.') {
            Some((base, suffix)) => (base, suffix.parse().ok()),
            None => (name, None),
        }
    }
    let (base_a, number_a) = split(a);
    let (base_b, number_b) = split(b);
    base_a
        .cmp(base_b)
        .then(number_a.cmp(&number_b))
        .then(a.cmp(b))
}

/// Checks that a file name sent by the server is safe to use as a local file name.
pub fn validate_binlog_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name != SOURCE_FILE
        && !name.ends_with(INDEX_SUFFIX)
        && !name.ends_with(".tmp");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the server named a binlog file {name:?}, which is not a plain file name"
        ))
    }
}

/// Writes `path` so that a crash leaves either the old or the new contents.
pub(crate) fn write_atomically(path: &Path, body: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(StorageError::io("creating", &tmp))?;
    file.write_all(body)
        .map_err(StorageError::io("writing", &tmp))?;
    file.sync_all()
        .map_err(StorageError::io("fsync of", &tmp))?;
    fs::rename(&tmp, path).map_err(StorageError::io("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries (new and renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync of", dir))
}

/// Bytes `[start, end)` of an archived file.
pub(crate) fn read_range(
    path: &std::path::Path,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, StorageError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(StorageError::io("opening", path))?;
    file.seek(SeekFrom::Start(start))
        .map_err(StorageError::io("reading", path))?;
    let mut bytes = vec![0u8; (end - start) as usize];
    file.read_exact(&mut bytes)
        .map_err(StorageError::io("reading", path))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_claims_an_archive_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let archive = LocalArchive::open(dir.path()).expect("open");
        let claim = archive.claim_for_writing().expect("first claim");
        let again = LocalArchive::open(dir.path()).expect("a reader opens it");
        match again.claim_for_writing() {
            Err(StorageError::InUse { path }) => assert_eq!(path, dir.path()),
            other => panic!("a second writer was let in: {other:?}"),
        }
        drop(claim);
        again
            .claim_for_writing()
            .expect("free once the first is gone");
        // The lock file is not mistaken for a part of the archive.
        assert!(archive.epochs().expect("epochs").is_empty());
    }

    #[test]
    fn binlog_names_sort_by_their_number() {
        let mut names = vec!["b.1000000", "b.000999", "b.000002", "a.000005"];
        names.sort_by(|a, b| binlog_order(a, b));
        assert_eq!(names, ["a.000005", "b.000002", "b.000999", "b.1000000"]);
    }

    #[test]
    fn server_names_that_would_escape_the_archive_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "source.json", "x.index.jsonl"] {
            assert!(validate_binlog_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_binlog_name("mysql-bin.000001").is_ok());
    }

    #[test]
    fn a_foreign_directory_is_not_taken_over_and_epochs_are_numbered() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("notes.txt"), "mine").expect("write");
        let err = LocalArchive::open(dir.path()).expect_err("not an archive");
        assert!(err.to_string().contains("not a binlogd archive"), "{err}");

        let root = dir.path().join("archive");
        let archive = LocalArchive::open(&root).expect("new archive");
        let source = SourceIdentity {
            server_id: 7,
            server_uuid: None,
            flavour: Flavour::MariaDb,
            version: "10.11.19-MariaDB".into(),
            address: "127.0.0.1:3306".into(),
        };
        let first = archive
            .new_epoch(source.clone(), GtidState::None)
            .expect("epoch");
        let second = archive
            .new_epoch(
                SourceIdentity {
                    server_id: 8,
                    ..source
                },
                GtidState::None,
            )
            .expect("epoch");
        assert!(first.dir.ends_with("0001-server7"));
        assert!(second.dir.ends_with("0002-server8"));
        let reopened = LocalArchive::open(&root).expect("reopen");
        let epochs = reopened.epochs().expect("epochs");
        assert_eq!(epochs.len(), 2);
        assert!(!epochs[0].source.same_server(&epochs[1].source));
    }
}
