//! The archive as `binlogd serve` reads it: every epoch's files in order, where each one's
//! bytes and index are, and what the setup queries and the start of a dump need to know.
//!
//! Listing is a directory walk (cheap: done again whenever a dump needs the file after
//! the one it finished); indexes are read only to choose where a dump starts and while a
//! file is being sent.

use std::path::PathBuf;

use binlogd_parser::{ChecksumAlgorithm, EventReader, Flavour, Gtid};
use binlogd_storage::remote::format::epoch_name;
use binlogd_storage::{
    GtidState, IndexEnds, LocalArchive, SourceIdentity, read_index, read_index_ends,
};

use crate::error::ServeError;
use crate::queries::SourceFacts;
use crate::start::FileFacts;

/// One file of the archive, where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServedFile {
    /// Its epoch's directory name (`0002-server7`).
    pub epoch: String,
    /// The server's name for it.
    pub name: String,
    /// Its bytes.
    pub data: PathBuf,
    /// Its index.
    pub index: PathBuf,
    /// `@@server_id` of the server that wrote it.
    pub server_id: u32,
}

/// Every file, oldest epoch first, in the server's order within an epoch; and the newest
/// epoch's source.
pub(crate) fn list(
    archive: &LocalArchive,
) -> Result<(Vec<ServedFile>, Option<SourceIdentity>), ServeError> {
    let mut files = Vec::new();
    let mut newest = None;
    for epoch in archive.epochs()? {
        let name = epoch_name(&epoch);
        for file in epoch.binlog_files()? {
            files.push(ServedFile {
                epoch: name.clone(),
                data: epoch.data_path(&file),
                index: epoch.index_path(&file),
                server_id: epoch.source.server_id,
                name: file,
            });
        }
        newest = Some(epoch.source);
    }
    Ok((files, newest))
}

/// What choosing a start needs of each file (from the first line of each index only).
pub(crate) fn start_facts(files: &[ServedFile]) -> Result<Vec<FileFacts>, ServeError> {
    files
        .iter()
        .map(|file| {
            let ends = read_index_ends(&file.index)?;
            Ok(FileFacts {
                name: file.name.clone(),
                gtids_before: ends.gtids_before.unwrap_or_default(),
                size: std::fs::metadata(&file.data).map_or(0, |m| m.len()),
            })
        })
        .collect()
}

/// The GTID state after the whole archive: the newest file's, from its whole index.
pub(crate) fn gtids_after(files: &[ServedFile]) -> Result<GtidState, ServeError> {
    match files.last() {
        Some(last) => Ok(read_index(&last.index)?.gtids_after()),
        None => Ok(GtidState::None),
    }
}

/// The checksum algorithm of a file, from its FORMAT_DESCRIPTION (`None` when the file
/// has none yet).
pub(crate) fn checksum_of(file: &ServedFile) -> Result<Option<ChecksumAlgorithm>, ServeError> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(&file.data)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(ServeError::io(format!("reading {}", file.data.display())))?;
    let mut reader = EventReader::new(&head);
    match reader.next() {
        Some(Ok(_)) => Ok(reader.format().map(|f| f.checksum)),
        _ => Ok(None),
    }
}

/// What the setup queries report, from the archive as it is now.
pub(crate) fn source_facts(archive: &LocalArchive) -> Result<SourceFacts, ServeError> {
    let (files, newest) = list(archive)?;
    let Some(source) = newest else {
        return Err(ServeError::Config(format!(
            "the archive {} holds nothing yet: start `binlogd stream` into it first",
            archive.root().display()
        )));
    };
    let checksum = match files.last() {
        Some(file) => checksum_of(file)?.unwrap_or(ChecksumAlgorithm::Crc32),
        None => ChecksumAlgorithm::Crc32,
    };
    let mut binary_logs = Vec::new();
    for file in files
        .iter()
        .filter(|f| files.last().is_some_and(|l| l.epoch == f.epoch))
    {
        binary_logs.push((
            file.name.clone(),
            std::fs::metadata(&file.data).map_or(0, |m| m.len()),
        ));
    }
    // The newest file's ends, not its whole index: this runs at every login.
    let ends = match files.last() {
        Some(last) => read_index_ends(&last.index)?,
        None => IndexEnds::default(),
    };
    let gtid_domain_id = match (ends.last_gtid, &ends.gtids_before) {
        (Some(Gtid::Mariadb(gtid)), _) => gtid.domain_id,
        (_, Some(GtidState::Mariadb(pos))) => pos.iter().last().map_or(0, |g| g.domain_id),
        _ => 0,
    };
    let has_gtids = ends.last_gtid.is_some()
        || ends.gtids_before.as_ref().is_some_and(|g| !g.is_empty())
        || source.flavour == Flavour::MariaDb;
    let version = source
        .version
        .strip_prefix("5.5.5-")
        .unwrap_or(&source.version)
        .to_owned();
    Ok(SourceFacts {
        flavour: source.flavour,
        server_id: source.server_id,
        server_uuid: source.server_uuid.clone(),
        version,
        binlog_checksum: match checksum {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::None => "NONE",
        },
        gtid_domain_id,
        has_gtids,
        binary_logs,
        executed_gtids: None,
    })
}
