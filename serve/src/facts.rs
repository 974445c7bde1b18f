//! What the setup queries report of the archive's server (`@@server_id`, version,
//! checksum, GTID mode, the binary logs), read from the archive once a client has logged
//! in (and shared by the logins of the same second).

use binlogd_parser::{Flavour, Gtid};
use binlogd_storage::{GtidState, IndexEnds, read_index_ends};

use crate::archive::{ArchiveSource, Place, blocking};
use crate::error::ServeError;
use crate::queries::SourceFacts;

/// What the setup queries report, from the archive as it is now.
pub(crate) async fn source_facts(archive: &ArchiveSource) -> Result<SourceFacts, ServeError> {
    // At most a second old: facts are read at start, inline by a login that finds none,
    // and in the background once a second while clients log in. An archive that held
    // nothing at the last listing is listed anew: it may hold something now.
    let mut listing = archive.list_fresh().await?;
    if listing.source.is_none() {
        listing = archive.list_now().await?;
    }
    let Some(source) = listing.source else {
        return Err(ServeError::Config(format!(
            "the archive {} holds nothing yet: start `binlogd stream` into it first",
            archive.location()
        )));
    };
    let files = &listing.files;
    let newest_epoch = files.last().map(|f| f.epoch.clone());
    let binary_logs = files
        .iter()
        .filter(|f| Some(&f.epoch) == newest_epoch.as_ref())
        .map(|f| {
            let size = match &f.place {
                Place::Local { data, .. } => std::fs::metadata(data).map_or(0, |m| m.len()),
                Place::Remote { size, .. } => *size,
            };
            (f.name.clone(), size)
        })
        .collect();
    // The newest file's ends, not its whole index: this runs at every login.
    let ends = match files.last().map(|f| &f.place) {
        Some(Place::Local { index, .. }) => {
            let index = index.clone();
            blocking(move || Ok(read_index_ends(&index)?)).await?
        }
        // Remote files are listed with their state after: what the two facts below need.
        Some(Place::Remote { gtids_after, .. }) => IndexEnds {
            gtids_before: Some(gtids_after.clone()),
            last_gtid: last_gtid(gtids_after),
            ..IndexEnds::default()
        },
        None => IndexEnds::default(),
    };
    let checksum = match files.last() {
        Some(file) => crate::reading::checksum_of(file).await?,
        None => None,
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
            Some(binlogd_parser::ChecksumAlgorithm::None) => "NONE",
            _ => "CRC32",
        },
        gtid_domain_id,
        has_gtids,
        binary_logs,
        executed_gtids: None,
    })
}

/// Some GTID of a state, for its domain (MariaDB: the newest domain's).
fn last_gtid(state: &GtidState) -> Option<Gtid> {
    match state {
        GtidState::Mariadb(pos) => pos.iter().last().map(|g| Gtid::Mariadb(*g)),
        _ => None,
    }
}
