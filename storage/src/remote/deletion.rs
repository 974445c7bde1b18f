//! Deletion records (`deletions/<due>-<epoch>-<file>.json`): what a compaction or a
//! consolidation replaced, deleted once `--delete-delay` has passed so that readers that
//! began before finish with it — and never anything a reader may be using then (see
//! [`carry_out`]). Also the crash points the tests stop a writer at between two writes.

use super::crypt::{ClientKey, authenticated_metadata, check_authentic};
use super::format::{DeletionRecord, FORMAT_VERSION, parse_manifest};
use super::keys;
use super::store::{ListQuery, ObjectStore};
use crate::error::StorageError;

/// Writes a deletion record for `keys` of one file, due at `due_micros`.
pub(crate) async fn record_deletion(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    epoch: &str,
    name: &str,
    keys: Vec<String>,
    due_micros: u64,
) -> Result<Option<(String, u64)>, StorageError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let record = DeletionRecord {
        version: FORMAT_VERSION,
        epoch: epoch.to_owned(),
        name: name.to_owned(),
        due_micros,
        keys,
    };
    let body = serde_json::to_vec(&record)
        .map_err(|e| StorageError::inconsistent(name, 0, e.to_string()))?;
    let key = keys::deletion(due_micros, epoch, name);
    let metadata = authenticated_metadata(client_key, &key, &body);
    let length = body.len() as u64;
    store.put(&key, body.into(), &metadata).await?;
    Ok(Some((key, length)))
}

/// The deletion records in the store, `(due, key)` in due order: one listing of a prefix
/// that holds only records not yet carried out.
pub(crate) async fn pending_deletions(
    store: &dyn ObjectStore,
) -> Result<Vec<(u64, String)>, StorageError> {
    let listing = store
        .query(ListQuery {
            prefix: keys::DELETIONS,
            ..ListQuery::default()
        })
        .await?;
    let mut pending: Vec<(u64, String)> = listing
        .objects
        .into_iter()
        .filter_map(|o| Some((keys::parse_deletion(&o.key)?, o.key)))
        .collect();
    pending.sort();
    Ok(pending)
}

/// Carries out one deletion record: deletes what it names under its file's prefix that
/// the file's manifest does not list (a record can never take a byte a reader needs),
/// then the record. Returns how many objects went.
pub(crate) async fn carry_out(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    record_key: &str,
) -> Result<usize, StorageError> {
    let Some(object) = store.get(record_key).await? else {
        return Ok(0);
    };
    let bad = |message: String| StorageError::BadIndex {
        path: format!("{}/{record_key}", store.location()).into(),
        line: 0,
        message,
    };
    check_authentic(client_key, record_key, &object).map_err(bad)?;
    let record: DeletionRecord =
        serde_json::from_slice(&object.body).map_err(|e| bad(e.to_string()))?;
    let prefix = keys::file_prefix(&record.epoch, &record.name);
    let keep = kept_by_readers(store, client_key, (&record.epoch, &record.name)).await?;
    let doomed: Vec<String> = record
        .keys
        .into_iter()
        .filter(|key| key.starts_with(&prefix) && keep.allows(key))
        .collect();
    for batch in doomed.chunks(1000) {
        store.delete_many(batch).await?;
        crash_point("compaction:some-deleted");
    }
    store.delete(record_key).await?;
    Ok(doomed.len())
}

/// What readers of a file may be using, which no deletion record takes.
enum Kept {
    /// A sealed file: what its manifest lists (segments, index chunks).
    Sealed(Vec<String>),
    /// An open file: everything but what ends at or before its newest partial
    /// manifest's end and that manifest does not name.
    Open { end: u64, named: Vec<String> },
}

impl Kept {
    fn allows(&self, key: &str) -> bool {
        match self {
            Kept::Sealed(listed) => !listed.iter().any(|k| k == key),
            Kept::Open { end, named } => {
                let leaf = key.rsplit('/').next().unwrap_or_default();
                let object_end = match keys::parse_file_object(leaf) {
                    Some(
                        keys::FileObject::Segment { end, .. }
                        | keys::FileObject::SegmentIndex { end, .. }
                        | keys::FileObject::Partial { end },
                    ) => end,
                    _ => return false,
                };
                object_end <= *end && !named.iter().any(|k| k == key)
            }
        }
    }
}

async fn kept_by_readers(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    (epoch, name): (&str, &str),
) -> Result<Kept, StorageError> {
    let manifest_key = keys::manifest(epoch, name);
    if let Some(object) = store.get(&manifest_key).await? {
        let manifest = parse_manifest(&object, &manifest_key, client_key, &store.location())?;
        let listed = manifest
            .segments
            .into_iter()
            .map(|s| s.key)
            .chain(manifest.index.into_iter().map(|c| c.key))
            .collect();
        return Ok(Kept::Sealed(listed));
    }
    match super::partial::newest_partial(store, client_key, (epoch, name), 0).await? {
        Some(partial) => {
            let mut named: Vec<String> = partial.segments.into_iter().map(|s| s.key).collect();
            named.extend(
                partial
                    .indexes
                    .iter()
                    .map(|[start, end]| keys::segment_index(epoch, name, *start, *end)),
            );
            named.push(keys::partial(epoch, name, partial.end));
            Ok(Kept::Open {
                end: partial.end,
                named,
            })
        }
        // An open file never consolidated: a record of it comes from a consolidation
        // that crashed before its partial manifest, and takes nothing. (A purged file
        // has neither, and nothing of it is left to take.)
        None => Ok(Kept::Open {
            end: 0,
            named: Vec::new(),
        }),
    }
}

/// Ends the process here when `BINLOGD_CRASH_AT` names this step: how the tests crash a
/// writer between two writes of a compaction, exactly where a power cut could.
pub(crate) fn crash_point(step: &str) {
    if std::env::var("BINLOGD_CRASH_AT").is_ok_and(|at| at == step) {
        eprintln!("BINLOGD_CRASH_AT={step}: aborting");
        std::process::abort();
    }
}
