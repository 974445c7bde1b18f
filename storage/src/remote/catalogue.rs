//! The catalogue object (`catalogue.json`): read together with the version the store
//! gave it, and written back only over that version.
//!
//! One writer at a time holds the archive's lease, but a lease is only as good as the
//! writer's sense of time: a writer frozen past its lease (a paused VM, a long GC, a
//! suspended laptop) wakes up believing it still holds it. Its next catalogue write must
//! not replace what the writer that took over has written since. So every write is
//! conditional on what was read: `If-Match` the tag read, or `If-None-Match: *` when there
//! was none. A write that finds the catalogue changed fails with
//! [`StorageError::CatalogueChanged`] and writes nothing. On a store that ignores
//! conditional writes (Garage, at the time of writing) the lease is the only guard.
//!
//! With a client key the catalogue is also authenticated (see [`super::crypt`]): readers
//! with the key refuse a catalogue someone without it wrote, and a writer without the key
//! refuses to replace an authenticated catalogue with one that is not.

use super::crypt::{ClientKey, authenticated_metadata, authenticated_with, check_authentic};
use super::format::Catalogue;
use super::keys;
use super::store::ObjectStore;
use crate::error::StorageError;

/// What the store held when the catalogue was read: the precondition of the next write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogueVersion {
    /// The store's tag of the object read; `None` when there was no catalogue.
    etag: Option<String>,
    /// The check value of the key the catalogue read was authenticated with.
    authenticated_with: Option<String>,
}

/// Reads the catalogue (`None` before the first file is sealed) and its version; with a
/// key, checks that the writer with that key wrote it.
pub async fn read(
    store: &dyn ObjectStore,
    key: Option<&ClientKey>,
) -> Result<(Option<Catalogue>, CatalogueVersion), StorageError> {
    let Some(object) = store.get(keys::CATALOGUE).await? else {
        return Ok((None, CatalogueVersion::default()));
    };
    let bad = |message: String| StorageError::BadIndex {
        path: format!("{}/{}", store.location(), keys::CATALOGUE).into(),
        line: 0,
        message,
    };
    check_authentic(key, keys::CATALOGUE, &object).map_err(bad)?;
    let catalogue = serde_json::from_slice(&object.body).map_err(|e| bad(e.to_string()))?;
    let version = CatalogueVersion {
        etag: object.etag.clone(),
        authenticated_with: authenticated_with(&object.metadata).map(str::to_owned),
    };
    Ok((Some(catalogue), version))
}

/// Writes `catalogue` over the version read, and makes `version` the one written.
/// Returns the bytes written.
pub async fn write(
    store: &dyn ObjectStore,
    catalogue: &Catalogue,
    version: &mut CatalogueVersion,
    key: Option<&ClientKey>,
) -> Result<u64, StorageError> {
    let location = format!("{}/{}", store.location(), keys::CATALOGUE);
    if let (None, Some(check)) = (key, &version.authenticated_with) {
        return Err(StorageError::KeyNeeded {
            location,
            key_check: check.clone(),
        });
    }
    let body = serde_json::to_vec(catalogue)
        .map_err(|e| StorageError::inconsistent(keys::CATALOGUE, 0, e.to_string()))?;
    let metadata = authenticated_metadata(key, keys::CATALOGUE, &body);
    let written_bytes = body.len() as u64;
    if store.honours_conditions() {
        let written = match &version.etag {
            Some(etag) => {
                store
                    .put_if_match(keys::CATALOGUE, body.into(), &metadata, etag)
                    .await?
            }
            None => {
                store
                    .put_if_absent(keys::CATALOGUE, body.into(), &metadata)
                    .await?
            }
        };
        let Some(etag) = written else {
            return Err(StorageError::CatalogueChanged { location });
        };
        version.etag = Some(etag);
    } else {
        store.put(keys::CATALOGUE, body.into(), &metadata).await?;
    }
    version.authenticated_with = key.map(|k| k.check().to_owned());
    Ok(written_bytes)
}
