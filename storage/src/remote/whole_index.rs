//! A sealed file's whole index in a few large objects, so that reading it costs a request
//! per chunk instead of one per segment.
//!
//! While a file is written, each segment gets an index object of its own (`.idx.zst`),
//! one per checkpoint: a file that stays open for an hour at the default 1 s cadence has
//! 3,600. At seal the writer still has the file's whole index in the spool, and uploads it
//! again in chunks of at most [`CHUNK_BYTES`] of JSON lines, which the manifest lists
//! ([`IndexChunk`]); readers of a sealed file read those and never list its keys. The
//! chunks are written before the manifest that names them, so a reader that finds them
//! named finds them there. Manifests of earlier releases name none: readers then fall
//! back to the segments' index objects (see `read.rs`).

use super::crypt::{ClientKey, authenticated_metadata, check_authentic};
use super::format::{IndexChunk, parse_index_object};
use super::keys;
use super::store::ObjectStore;
use crate::error::StorageError;
use crate::index::{FileIndex, IndexRecord};
use bytes::Bytes;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

/// The most JSON-line bytes one chunk holds (before compression): a chunk is read into
/// memory whole, and a file of a million small transactions still takes few chunks.
pub const CHUNK_BYTES: usize = 32 << 20;

/// Uploads the whole local index of a closed file (`index_path`, the spool's) as chunks,
/// and returns them in order, with the bytes put. `size` is the file's final size.
pub(crate) async fn upload(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    (epoch, name): (&str, &str),
    index_path: &Path,
    size: u64,
) -> Result<(Vec<IndexChunk>, u64), StorageError> {
    let mut chunks = Vec::new();
    let mut bytes_put = 0;
    let file = std::fs::File::open(index_path).map_err(StorageError::io("opening", index_path))?;
    let mut lines = std::io::BufReader::new(file);
    let mut pending = Vec::new();
    let (mut start, mut end) = (0, 0);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = lines
            .read_until(b'\n', &mut line)
            .map_err(StorageError::io("reading", index_path))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: IndexRecord =
            serde_json::from_slice(&line).map_err(|e| StorageError::BadIndex {
                path: index_path.to_owned(),
                line: number,
                message: e.to_string(),
            })?;
        end = end.max(match record {
            IndexRecord::GtidsBefore(_) => 0,
            IndexRecord::Transaction(t) => t.end,
            IndexRecord::Boundary { end } => end,
            IndexRecord::Closed { size, .. } => size,
        });
        pending.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(&line));
        pending.push(b'\n');
        if pending.len() >= CHUNK_BYTES && end > start && end < size {
            bytes_put += put_chunk(
                store,
                client_key,
                (epoch, name),
                (start, end),
                &pending,
                index_path,
                &mut chunks,
            )
            .await?;
            pending.clear();
            start = end;
        }
    }
    if start < size {
        bytes_put += put_chunk(
            store,
            client_key,
            (epoch, name),
            (start, size),
            &pending,
            index_path,
            &mut chunks,
        )
        .await?;
    }
    Ok((chunks, bytes_put))
}

async fn put_chunk(
    store: &dyn ObjectStore,
    client_key: Option<&ClientKey>,
    (epoch, name): (&str, &str),
    (start, end): (u64, u64),
    lines: &[u8],
    index_path: &Path,
    chunks: &mut Vec<IndexChunk>,
) -> Result<u64, StorageError> {
    let packed =
        zstd::bulk::compress(lines, 3).map_err(StorageError::io("compressing", index_path))?;
    let key = keys::index_chunk(epoch, name, start, end);
    let metadata = authenticated_metadata(client_key, &key, &packed);
    let length = packed.len() as u64;
    store.put(&key, Bytes::from(packed), &metadata).await?;
    chunks.push(IndexChunk { key, start, end });
    Ok(length)
}

/// Reads a sealed file's index from the chunks its manifest lists (up to `parallel` at
/// once), checking that they follow each other from 0 to `size` and, with a client key,
/// that each is authentic.
pub(crate) async fn read(
    store: &Arc<dyn ObjectStore>,
    client_key: Option<&ClientKey>,
    name: &str,
    chunks: &[IndexChunk],
    size: u64,
    parallel: usize,
) -> Result<FileIndex, StorageError> {
    let mut offset = 0;
    for chunk in chunks {
        if chunk.start != offset || chunk.end <= chunk.start {
            return Err(StorageError::inconsistent(
                name,
                offset,
                format!(
                    "its manifest lists index chunk {} ({}..{}) where one from {offset} should follow",
                    chunk.key, chunk.start, chunk.end
                ),
            ));
        }
        offset = chunk.end;
    }
    if offset != size {
        return Err(StorageError::inconsistent(
            name,
            offset,
            format!("its manifest's index chunks end at {offset}, but the file has {size} bytes"),
        ));
    }
    let location = store.location();
    let mut index = FileIndex::default();
    // A window of chunks at a time, fetched together, applied in order.
    for window in chunks.chunks(parallel.max(1)) {
        let mut fetches = tokio::task::JoinSet::new();
        for (slot, chunk) in window.iter().enumerate() {
            let store = Arc::clone(store);
            let key = chunk.key.clone();
            let client_key = client_key.cloned();
            let location = location.clone();
            let name = name.to_owned();
            fetches.spawn(async move {
                let object = store.get(&key).await?.ok_or_else(|| {
                    StorageError::inconsistent(&name, 0, format!("its index chunk {key} is gone"))
                })?;
                let bad = |line, message| StorageError::BadIndex {
                    path: format!("{location}/{key}").into(),
                    line,
                    message,
                };
                check_authentic(client_key.as_ref(), &key, &object).map_err(|e| bad(0, e))?;
                let records = parse_index_object(&object.body)
                    .map_err(|(line, message)| bad(line, message))?;
                Ok::<_, StorageError>((slot, records))
            });
        }
        let mut fetched: Vec<Option<Vec<IndexRecord>>> = vec![None; window.len()];
        while let Some(done) = fetches.join_next().await {
            let (slot, records) = done.map_err(|e| {
                StorageError::inconsistent(name, 0, format!("index chunk download task: {e}"))
            })??;
            fetched[slot] = Some(records);
        }
        for records in fetched.into_iter().flatten() {
            for record in records {
                index.apply(record);
            }
        }
    }
    Ok(index)
}
