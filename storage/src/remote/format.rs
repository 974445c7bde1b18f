//! The object archive's format: what each object binlogd writes holds, and its version.
//!
//! The layout and the rules readers and writers follow are in `storage/README.md`; object
//! names are in [`super::keys`], segment bodies in [`super::segment`], and their
//! authentication in [`super::crypt`]. Here: the JSON of the marker
//! (`binlogd-archive.json`), the catalogue (`catalogue.json`) and the manifests
//! (`EPOCH/BINLOG/manifest.json`), and the index objects (`.idx.zst`) — every type that
//! is serialised into the store, so that a change to the format is a change to this file.

use super::crypt::{ClientKey, check_authentic};
use super::keys;
use super::keys::Codec;
use super::store::Object;
use crate::error::StorageError;
use crate::gtids::GtidState;
use crate::index::{IndexRecord, encode_record};
use crate::layout::{Epoch, SourceIdentity};
use serde::{Deserialize, Serialize};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Server-side encryption, as manifests record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSide {
    /// `sse-c` or `aws:kms`.
    pub mode: String,
    /// SSE-C: the base64 MD5 of the customer key (what S3 itself reports); SSE-KMS: the key
    /// id, if one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// How a file's segments are encrypted, as its manifest records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionRecord {
    /// Client-side: `aes-256-gcm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The client-side key's check value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
    /// Server-side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
}

/// One segment, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Its key.
    pub key: String,
    /// First byte.
    pub start: u64,
    /// Just past its last byte.
    pub end: u64,
    /// Compression.
    pub codec: Codec,
    /// CRC32 of the uncompressed bytes, 8 hex digits.
    pub crc32: String,
}

/// What the catalogue says of a sealed file (the manifest without its segments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// The server's file name.
    pub name: String,
    /// The epoch directory name (`0001-server1`).
    pub epoch: String,
    /// The source server.
    pub source: SourceIdentity,
    /// Size in bytes.
    pub size: u64,
    /// CRC32 of the whole file, 8 hex digits.
    pub crc32: String,
    /// GTID state before the file.
    pub gtids_before: GtidState,
    /// GTID state after it.
    pub gtids_after: GtidState,
    /// First and last commit time (µs since the epoch), if it has transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_commit_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_micros: Option<u64>,
    /// How many transactions it holds.
    pub transactions: u64,
    /// The file the server continued in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_file: Option<String>,
    /// How its segments are encrypted, if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionRecord>,
}

/// `EPOCH/BINLOG/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// What the catalogue repeats.
    #[serde(flatten)]
    pub summary: FileSummary,
    /// The data, in order.
    pub segments: Vec<SegmentRecord>,
    /// The file's whole index, in a few large objects written at seal, so that reading
    /// it costs a request per chunk rather than one per segment. Absent in manifests of
    /// earlier releases: their segments' index objects are read instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<IndexChunk>,
    /// Whether `segments` are the large ones compaction wrote (see `compact.rs`), the
    /// small ones of each checkpoint having been set for deletion.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
}

/// `EPOCH/BINLOG/partial-<end>.json`: what a reader of a file not sealed yet needs of
/// its first `end` bytes, written as the file grows (see `consolidate.rs`), so that
/// reading a file open for days costs this object, the index objects it names and a
/// listing of what came after, not a listing of every checkpoint of its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialManifest {
    /// Format version.
    pub version: u32,
    /// The file's epoch.
    pub epoch: String,
    /// The file.
    pub name: String,
    /// Where the consolidated part ends: a segment's end, and the end of the last
    /// transaction (or boundary) its index objects hold.
    pub end: u64,
    /// The segments of `[0, end)`, in order and end to end.
    pub segments: Vec<SegmentRecord>,
    /// The index objects whose records cover `(0, end]`, as `[start, end]` of their
    /// segment (the key is the segment's index object's), in order.
    pub indexes: Vec<[u64; 2]>,
}

/// `deletions/<due>-<epoch>-<file>.json`: objects of one file that compaction replaced,
/// to be deleted once `due_micros` has passed (readers that began before the manifest
/// changed finish with them first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// Format version.
    pub version: u32,
    /// The file's epoch.
    pub epoch: String,
    /// The file.
    pub name: String,
    /// When the objects may go, µs since the Unix epoch.
    pub due_micros: u64,
    /// Their keys, all under the file's prefix.
    pub keys: Vec<String>,
}

/// One object of a sealed file's whole index ([`Manifest::index`]): the records of the
/// transactions that end in `(start, end]`, the `gtids_before` record in the first chunk
/// and the `closed` record in the last, zstd-compressed JSON lines as in an index object.
/// The chunks follow each other from 0 to the file's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexChunk {
    /// Its key (`EPOCH/BINLOG/index-<start>-<end>.zst`).
    pub key: String,
    /// Where the bytes its records describe start.
    pub start: u64,
    /// Where they end.
    pub end: u64,
}

/// `catalogue.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Format version.
    pub version: u32,
    /// Every sealed file, in archive order.
    pub files: Vec<FileSummary>,
    /// Files being deleted by a purge: gone from `files`, their objects not yet all
    /// deleted. Readers ignore their objects; the next purge finishes the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purging: Vec<FileRef>,
}

/// An archived file by epoch and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The epoch directory name.
    pub epoch: String,
    /// The server's file name.
    pub name: String,
}

/// `binlogd-archive.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Always `binlogd-archive`.
    pub format: String,
    /// The format version.
    pub version: u32,
}

/// The index records of one segment, as its `.idx.zst` object holds them.
pub(crate) fn encode_index_object(
    records: &[IndexRecord],
    local_index: &std::path::Path,
) -> Result<Vec<u8>, StorageError> {
    let mut lines = Vec::new();
    for record in records {
        encode_record(record, &mut lines);
    }
    zstd::bulk::compress(&lines, 3).map_err(StorageError::io("compressing", local_index))
}

/// A manifest read from `object_key`, checked against its MAC when there is a key.
pub(crate) fn parse_manifest(
    object: &Object,
    object_key: &str,
    key: Option<&ClientKey>,
    location: &str,
) -> Result<Manifest, StorageError> {
    let bad = |message: String| StorageError::BadIndex {
        path: format!("{location}/{object_key}").into(),
        line: 0,
        message,
    };
    check_authentic(key, object_key, object).map_err(bad)?;
    serde_json::from_slice(&object.body).map_err(|e| bad(e.to_string()))
}

/// The epoch's directory name, which is also its key prefix.
pub fn epoch_name(epoch: &Epoch) -> String {
    epoch
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The sequence number of an epoch directory name (`0003-server42` → 3), or `None` for a
/// name that is not an epoch's.
pub fn epoch_number(name: &str) -> Option<u32> {
    let (number, server) = name.split_once("-server")?;
    server.parse::<u32>().ok()?;
    number.parse().ok()
}

/// The most an index object may decompress to. Its lines describe the transactions of
/// one segment in fewer bytes than the transactions themselves take; twice a segment's
/// largest size leaves room and still bounds what a forged object can make us hold.
const MAX_INDEX_OBJECT_LENGTH: u64 = 2 * keys::MAX_SEGMENT_LENGTH as u64;

/// The records of an index object (`.idx.zst`: zstd-compressed JSON lines, one record a
/// line). The error gives the line (0 for the compression) and what is wrong with it.
pub fn parse_index_object(packed: &[u8]) -> Result<Vec<IndexRecord>, (usize, String)> {
    parse_index_object_within(packed, MAX_INDEX_OBJECT_LENGTH)
}

fn parse_index_object_within(
    packed: &[u8],
    max_length: u64,
) -> Result<Vec<IndexRecord>, (usize, String)> {
    use std::io::Read;
    let mut lines = Vec::new();
    zstd::stream::read::Decoder::new(packed)
        .and_then(|decoder| decoder.take(max_length + 1).read_to_end(&mut lines))
        .map_err(|e| (0, format!("not zstd-compressed index lines: {e}")))?;
    if lines.len() as u64 > max_length {
        return Err((0, format!("decompresses to more than {max_length} bytes")));
    }
    let mut records = Vec::new();
    for (number, line) in lines.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let record: IndexRecord =
            serde_json::from_slice(line).map_err(|e| (number + 1, e.to_string()))?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_object_that_decompresses_without_end_is_cut_off() {
        let line = b"{\"record\":\"boundary\",\"end\":4}\n";
        let lines = line.repeat(100);
        let packed = zstd::bulk::compress(&lines, 3).expect("compress");
        assert_eq!(parse_index_object(&packed).expect("parses").len(), 100);
        // The same bytes under a smaller bound: refused, having read no more than it.
        let (line_number, message) =
            parse_index_object_within(&packed, lines.len() as u64 - 1).expect_err("too long");
        assert_eq!(line_number, 0);
        assert!(message.contains("decompresses to more than"), "{message}");
        let (_, message) = parse_index_object(b"not zstd").expect_err("not zstd");
        assert!(message.contains("not zstd-compressed"), "{message}");
    }
}
