//! Reading an open file's partial manifest (`partial-<end>.json`, written by
//! `consolidate.rs`): the newest one, checked, and the index objects it names.

use super::crypt::{ClientKey, check_authentic};
use super::format::{PartialManifest, parse_index_object};
use super::keys::{self, FileObject};
use super::store::{ListQuery, ObjectStore};
use crate::error::StorageError;
use crate::index::IndexRecord;
use std::sync::Arc;

/// The newest partial manifest of a file: one listing of its `partial-` keys (one or
/// two: the older ones go with the deletion record of the consolidation that replaced
/// them) and a GET. `None` when the file has none.
pub(crate) async fn newest_partial(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    (epoch, name): (&str, &str),
    after: u64,
) -> Result<Option<PartialManifest>, StorageError> {
    let prefix = format!("{}{}", keys::file_prefix(epoch, name), keys::PARTIAL);
    let start_after = (after > 0).then(|| keys::partial(epoch, name, after));
    let listing = store
        .query(ListQuery {
            prefix: &prefix,
            start_after: start_after.as_deref(),
            ..ListQuery::default()
        })
        .await?;
    let newest = listing
        .objects
        .iter()
        .filter_map(|o| {
            let leaf = o.key.rsplit('/').next()?;
            match keys::parse_file_object(leaf)? {
                FileObject::Partial { end } => Some((end, o.key.clone())),
                _ => None,
            }
        })
        .max();
    let Some((end, key)) = newest else {
        return Ok(None);
    };
    // Gone between the listing and the GET: a newer one replaced it.
    let Some(object) = store.get(&key).await? else {
        return Box::pin(newest_partial(store, client_key, (epoch, name), end)).await;
    };
    let bad = |message: String| StorageError::BadIndex {
        path: format!("{}/{key}", store.location()).into(),
        line: 0,
        message,
    };
    check_authentic(client_key, &key, &object).map_err(bad)?;
    let partial: PartialManifest =
        serde_json::from_slice(&object.body).map_err(|e| bad(e.to_string()))?;
    let contiguous = partial
        .segments
        .windows(2)
        .all(|pair| pair[0].end == pair[1].start);
    if partial.end != end
        || partial.epoch != epoch
        || partial.name != name
        || !contiguous
        || partial.segments.first().map(|s| s.start) != Some(0)
        || partial.segments.last().map(|s| s.end) != Some(end)
    {
        return Err(bad(format!(
            "a partial manifest of {epoch}/{name} up to {end} that does not describe \
             [0, {end}) of that file end to end"
        )));
    }
    Ok(Some(partial))
}

/// Reads the index objects a partial manifest names, in order, up to `parallel` at once.
pub(crate) async fn read_partial_index(
    store: &Arc<dyn ObjectStore>,
    client_key: Option<&ClientKey>,
    partial: &PartialManifest,
    parallel: usize,
) -> Result<Vec<IndexRecord>, StorageError> {
    let mut records = Vec::new();
    for batch in partial.indexes.chunks(parallel.max(1)) {
        let mut gets = tokio::task::JoinSet::new();
        for (at, [start, end]) in batch.iter().enumerate() {
            let key = keys::segment_index(&partial.epoch, &partial.name, *start, *end);
            let store = Arc::clone(store);
            gets.spawn(async move { (at, store.get(&key).await, key) });
        }
        let mut fetched = Vec::new();
        while let Some(done) = gets.join_next().await {
            let (at, got, key) = done.map_err(|e| {
                StorageError::inconsistent(&partial.name, 0, format!("index read task: {e}"))
            })?;
            fetched.push((at, got?, key));
        }
        fetched.sort_by_key(|(at, _, _)| *at);
        for (_, object, key) in fetched {
            // The first segment's index object exists only if its checkpoint had a
            // record to put in it.
            let Some(object) = object else { continue };
            let bad = |line, message| StorageError::BadIndex {
                path: format!("{}/{key}", store.location()).into(),
                line,
                message,
            };
            check_authentic(client_key, &key, &object).map_err(|e| bad(0, e))?;
            records.extend(
                parse_index_object(&object.body).map_err(|(line, message)| bad(line, message))?,
            );
        }
    }
    Ok(records)
}
