//! Object names of the object archive (see `storage/README.md`), and segment compression.

use std::io::{Read, Write};

/// The archive marker, as in a local archive.
pub const MARKER: &str = "binlogd-archive.json";
/// The writer's lease.
pub const LEASE: &str = "lease.json";
/// Every sealed file, in archive order.
pub const CATALOGUE: &str = "catalogue.json";

/// `EPOCH/source.json`.
pub fn source(epoch: &str) -> String {
    format!("{epoch}/{}", crate::layout::SOURCE_FILE)
}

/// `EPOCH/BINLOG/`: everything of one binlog file.
pub fn file_prefix(epoch: &str, name: &str) -> String {
    format!("{epoch}/{name}/")
}

/// `EPOCH/BINLOG/manifest.json`.
pub fn manifest(epoch: &str, name: &str) -> String {
    format!("{epoch}/{name}/manifest.json")
}

/// A data segment's key.
pub fn segment(epoch: &str, name: &str, start: u64, end: u64, codec: Codec) -> String {
    format!(
        "{epoch}/{name}/{start:020}-{end:020}.seg.{}",
        codec.extension()
    )
}

/// The key of a segment's index object.
pub fn segment_index(epoch: &str, name: &str, start: u64, end: u64) -> String {
    format!("{epoch}/{name}/{start:020}-{end:020}.idx.zst")
}

/// The key of one chunk of a sealed file's whole index (see `format::IndexChunk`). Not
/// a name earlier releases parse, so their listings pass it by.
pub fn index_chunk(epoch: &str, name: &str, start: u64, end: u64) -> String {
    format!("{epoch}/{name}/index-{start:020}-{end:020}.zst")
}

/// What every partial manifest's leaf starts with (see `consolidate.rs`).
pub const PARTIAL: &str = "partial-";

/// The key of an open file's partial manifest up to `end`. Sorts after every segment and
/// index object (digits sort before letters), and is not a name earlier releases parse.
pub fn partial(epoch: &str, name: &str, end: u64) -> String {
    format!("{epoch}/{name}/{PARTIAL}{end:020}.json")
}

/// Where deletion records wait (see `compact.rs`).
pub const DELETIONS: &str = "deletions/";

/// A deletion record's key: due time first, so a listing returns them in due order.
pub fn deletion(due_micros: u64, epoch: &str, name: &str) -> String {
    format!("{DELETIONS}{due_micros:020}-{epoch}-{name}.json")
}

/// The due time of a deletion record's key.
pub fn parse_deletion(key: &str) -> Option<u64> {
    let leaf = key.strip_prefix(DELETIONS)?;
    let (due, _) = leaf.split_once('-')?;
    if due.len() != 20 || !leaf.ends_with(".json") {
        return None;
    }
    due.parse().ok()
}

/// What a key under a file's prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileObject {
    /// A data segment of bytes `[start, end)`.
    Segment { start: u64, end: u64, codec: Codec },
    /// The index records of the segment `[start, end)`.
    SegmentIndex { start: u64, end: u64 },
    /// The file's manifest.
    Manifest,
    /// A partial manifest of the file while open: its consolidated part, `[0, end)`.
    Partial { end: u64 },
}

/// Reads the last part of a key (after `EPOCH/BINLOG/`); `None` for names this version
/// does not write.
pub fn parse_file_object(leaf: &str) -> Option<FileObject> {
    if leaf == "manifest.json" {
        return Some(FileObject::Manifest);
    }
    if let Some(end) = leaf
        .strip_prefix(PARTIAL)
        .and_then(|rest| rest.strip_suffix(".json"))
        .filter(|end| end.len() == 20)
    {
        return Some(FileObject::Partial {
            end: end.parse().ok()?,
        });
    }
    let (range, kind) = leaf.split_once('.')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    if start >= end || range.len() != 41 {
        return None;
    }
    match kind {
        "idx.zst" => Some(FileObject::SegmentIndex { start, end }),
        _ => {
            let codec = Codec::from_extension(kind.strip_prefix("seg.")?)?;
            Some(FileObject::Segment { start, end, codec })
        }
    }
}

/// How a segment's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Stored as is.
    Raw,
    /// Zstandard (level 3).
    Zst,
    /// gzip (DEFLATE), for tools that know only that.
    Gz,
    /// bzip2 (level 9), for archives that other tools read or wrote with it.
    Bz2,
}

impl Codec {
    /// The key suffix and manifest name.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zst => "zst",
            Codec::Gz => "gz",
            Codec::Bz2 => "bz2",
        }
    }

    /// The codec a key suffix names.
    pub fn from_extension(extension: &str) -> Option<Codec> {
        match extension {
            "raw" => Some(Codec::Raw),
            "zst" => Some(Codec::Zst),
            "gz" => Some(Codec::Gz),
            "bz2" => Some(Codec::Bz2),
            _ => None,
        }
    }

    /// Compresses `bytes`.
    pub fn compress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Raw => Ok(bytes.to_vec()),
            Codec::Zst => zstd::bulk::compress(bytes, 3),
            Codec::Gz => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(bytes)?;
                encoder.finish()
            }
            Codec::Bz2 => {
                let mut encoder =
                    bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                encoder.write_all(bytes)?;
                encoder.finish()
            }
        }
    }

    /// Decompresses `bytes`, which must come to `length` bytes.
    pub fn decompress(self, bytes: &[u8], length: usize) -> std::io::Result<Vec<u8>> {
        // The length comes from the object's metadata, written by whoever wrote the
        // object: no more than a segment may hold is set aside, nor read.
        if length > MAX_SEGMENT_LENGTH {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("claims {length} bytes, more than a segment holds ({MAX_SEGMENT_LENGTH})"),
            ));
        }
        let limit = length as u64 + 1;
        let out = match self {
            Codec::Raw => bytes.to_vec(),
            Codec::Zst => zstd::bulk::decompress(bytes, length)?,
            Codec::Gz => {
                let mut out = Vec::with_capacity(length);
                flate2::read::GzDecoder::new(bytes)
                    .take(limit)
                    .read_to_end(&mut out)?;
                out
            }
            Codec::Bz2 => {
                let mut out = Vec::with_capacity(length);
                bzip2::read::BzDecoder::new(bytes)
                    .take(limit)
                    .read_to_end(&mut out)?;
                out
            }
        };
        if out.len() != length {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("decompressed to {} bytes, expected {length}", out.len()),
            ));
        }
        Ok(out)
    }
}

/// The most bytes one segment holds: `--segment-size` is at most 1 GiB.
pub const MAX_SEGMENT_LENGTH: usize = 1 << 30;

impl std::str::FromStr for Codec {
    type Err = String;

    fn from_str(name: &str) -> Result<Codec, String> {
        match name {
            "none" | "raw" => Ok(Codec::Raw),
            "zstd" | "zst" => Ok(Codec::Zst),
            "gzip" | "gz" => Ok(Codec::Gz),
            "bzip2" | "bz2" => Ok(Codec::Bz2),
            other => Err(format!(
                "unknown compression {other:?}: zstd, gzip, bzip2 or none"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_no_segment_can_have_is_refused_before_anything_is_set_aside() {
        for codec in [Codec::Raw, Codec::Zst, Codec::Gz, Codec::Bz2] {
            let err = codec.decompress(b"tiny", usize::MAX).expect_err("refused");
            assert!(
                err.to_string().contains("more than a segment holds"),
                "{err}"
            );
        }
        // A stream that inflates past the length it claims stops there.
        let packed = Codec::Gz.compress(&[0u8; 1 << 20]).expect("compress");
        let err = Codec::Gz.decompress(&packed, 1000).expect_err("too long");
        assert!(err.to_string().contains("expected 1000"), "{err}");
    }

    #[test]
    fn segment_keys_sort_in_file_order_and_read_back() {
        let a = segment("0001-server1", "mariadb-bin.000001", 0, 4096, Codec::Zst);
        let b = segment(
            "0001-server1",
            "mariadb-bin.000001",
            4096,
            100_000,
            Codec::Zst,
        );
        assert!(a < b);
        let leaf = b.rsplit('/').next().expect("leaf");
        assert_eq!(
            parse_file_object(leaf),
            Some(FileObject::Segment {
                start: 4096,
                end: 100_000,
                codec: Codec::Zst
            })
        );
        let index = segment_index("0001-server1", "f.000001", 4, 10);
        assert_eq!(
            parse_file_object(index.rsplit('/').next().expect("leaf")),
            Some(FileObject::SegmentIndex { start: 4, end: 10 })
        );
        assert_eq!(
            parse_file_object("manifest.json"),
            Some(FileObject::Manifest)
        );
        assert_eq!(parse_file_object("notes.txt"), None);
        assert_eq!(parse_file_object("5-3.seg.zst"), None);
    }

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [Codec::Raw, Codec::Zst, Codec::Gz, Codec::Bz2] {
            let packed = codec.compress(&data).expect("compress");
            assert_eq!(
                codec.decompress(&packed, data.len()).expect("decompress"),
                data
            );
            assert!(codec.decompress(&packed, data.len() + 1).is_err());
        }
    }
}
