//! Entry points for the fuzz targets in `fuzz/` that read what a bucket holds, shared with
//! the test that replays their corpora on stable (`storage/tests/fuzz_corpus.rs`), so the
//! two never drift apart. Each takes bytes anyone who may write to the bucket could have
//! put there, must not panic or allocate without bound, and asserts what must hold of
//! whatever it accepts. Not an API: hidden from the docs.

use crate::index::{FileIndex, IndexRecord, TransactionEntry, encode_record};
use crate::layout::SourceIdentity;
use crate::remote::crypt::ClientKey;
use crate::remote::format::{
    Catalogue, EncryptionRecord, FileRef, FileSummary, Manifest, SegmentRecord, parse_index_object,
};
use crate::remote::keys::{self, Codec};
use crate::remote::segment;
use crate::remote::store::{Metadata, Object};

const CODECS: [Codec; 4] = [Codec::Raw, Codec::Zst, Codec::Gz, Codec::Bz2];

fn fuzz_key() -> ClientKey {
    ClientKey::from_bytes(&[0x5a; 32])
}

/// `archive_json`: the first byte picks the catalogue or a manifest; whatever parses must
/// come back the same from its own JSON.
pub fn archive_json(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        if let Ok(catalogue) = serde_json::from_slice::<Catalogue>(json) {
            let text = serde_json::to_vec(&catalogue).expect("a catalogue serialises");
            let again: Catalogue = serde_json::from_slice(&text).expect("its own JSON parses");
            assert_eq!(again, catalogue);
        }
    } else if let Ok(manifest) = serde_json::from_slice::<Manifest>(json) {
        let text = serde_json::to_vec(&manifest).expect("a manifest serialises");
        let again: Manifest = serde_json::from_slice(&text).expect("its own JSON parses");
        assert_eq!(again, manifest);
    }
}

/// `index_object`: the first byte says whether the rest is an index object as stored
/// (zstd) or its lines, compressed here so the fuzzer reaches the JSON; whatever parses
/// is applied to a file index, and each record comes back the same from its own line.
pub fn index_object(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let packed = if selector & 1 == 0 {
        rest.to_vec()
    } else {
        zstd::bulk::compress(rest, 1).expect("compressing in memory")
    };
    let Ok(records) = parse_index_object(&packed) else {
        return;
    };
    let mut index = FileIndex::default();
    for record in records {
        let mut line = Vec::new();
        encode_record(&record, &mut line);
        let again: IndexRecord = serde_json::from_slice(&line).expect("its own line parses");
        assert_eq!(again, record);
        index.apply(record);
    }
    let _ = index.gtids_after();
}

/// `segment`: a segment object as a reader gets it. Byte 0: bits 0–1 the codec, bit 2 a
/// key given to the reader, bit 3 metadata saying it is encrypted, bit 4 a CRC32 in the
/// metadata (bytes 5–8); bytes 1–4 the length the key claims (little-endian); then the
/// body. Whatever unpacks has the claimed length; and the body packed by the writer
/// always unpacks to itself.
pub fn segment(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let flags = data[0];
    let codec = CODECS[usize::from(flags & 3)];
    let claimed = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let body = &data[9..];
    let key = fuzz_key();
    let reader_key = (flags & 4 != 0).then_some(&key);
    let mut metadata = Metadata::new();
    if flags & 8 != 0 {
        metadata.insert("binlogd-encryption".into(), "aes-256-gcm".into());
        metadata.insert("binlogd-key-check".into(), key.check().into());
    }
    if flags & 16 != 0 {
        let crc = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
        metadata.insert("binlogd-crc32".into(), format!("{crc:08x}"));
    }
    let object_key = "0001-s/f.000001/0-1.seg";
    let object = Object {
        body: bytes::Bytes::copy_from_slice(body),
        metadata,
        etag: None,
    };
    if let Ok(plain) = segment::unpack(object_key, &object, codec, claimed, reader_key) {
        assert_eq!(plain.len(), claimed);
    }
    // What the writer makes of these bytes, the reader gets back.
    if body.len() <= 1 << 16 {
        let (packed, metadata) =
            segment::pack(object_key, body, codec, reader_key).expect("packing in memory");
        let object = Object {
            body: packed.into(),
            metadata,
            etag: None,
        };
        let plain = segment::unpack(object_key, &object, codec, body.len(), reader_key)
            .expect("a packed segment unpacks");
        assert_eq!(plain, body);
    }
}

/// Seeds for the three targets, from a real binlog file's bytes: `(target, name, bytes)`.
pub fn seeds(binlog: &[u8]) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let key = fuzz_key();
    let piece = &binlog[..binlog.len().min(4096)];
    for (i, codec) in CODECS.into_iter().enumerate() {
        for with_key in [false, true] {
            let reader_key = with_key.then_some(&key);
            let Ok((packed, _)) =
                segment::pack("0001-s/f.000001/0-1.seg", piece, codec, reader_key)
            else {
                continue;
            };
            let crc = crc32fast::hash(piece);
            let flags = i as u8 | if with_key { 4 | 8 } else { 0 } | 16;
            let mut seed = vec![flags];
            seed.extend_from_slice(&(piece.len() as u32).to_le_bytes());
            seed.extend_from_slice(&crc.to_le_bytes());
            seed.extend_from_slice(&packed);
            seeds.push(("segment", format!("{codec:?}-key-{with_key}"), seed));
        }
    }
    let records = vec![
        IndexRecord::GtidsBefore("0-1-10".parse().expect("a GTID state")),
        IndexRecord::Transaction(TransactionEntry {
            gtid: Some("0-1-11".parse().expect("a GTID")),
            start: 256,
            end: 700,
            commit_micros: 1_764_000_000_000_000,
            exact_time: false,
            ddl: false,
            events: 4,
            repeated: false,
        }),
        IndexRecord::Boundary { end: 731 },
        IndexRecord::Closed {
            size: 775,
            next_file: Some("mariadb-bin.000002".into()),
        },
    ];
    let mut lines = Vec::new();
    for record in &records {
        encode_record(record, &mut lines);
    }
    let mut plain = vec![1];
    plain.extend_from_slice(&lines);
    seeds.push(("index_object", "lines".into(), plain));
    let mut packed = vec![0];
    packed.extend(zstd::bulk::compress(&lines, 3).expect("compressing in memory"));
    seeds.push(("index_object", "packed".into(), packed));
    let summary = FileSummary {
        name: "mariadb-bin.000001".into(),
        epoch: "0001-server1".into(),
        source: SourceIdentity {
            server_id: 1,
            server_uuid: None,
            flavour: binlogd_parser::Flavour::MariaDb,
            version: "10.11.14-MariaDB-0+deb12u2-log".into(),
            address: "127.0.0.1:3306".into(),
        },
        size: 775,
        crc32: "0badcafe".into(),
        gtids_before: "0-1-10".parse().expect("a GTID state"),
        gtids_after: "0-1-11".parse().expect("a GTID state"),
        first_commit_micros: Some(1_764_000_000_000_000),
        last_commit_micros: Some(1_764_000_000_000_000),
        transactions: 1,
        next_file: Some("mariadb-bin.000002".into()),
        encryption: Some(EncryptionRecord {
            client: Some("aes-256-gcm".into()),
            key_check: Some(key.check().into()),
            server: None,
        }),
    };
    let segment_record = |start: u64, end: u64| SegmentRecord {
        key: keys::segment("0001-server1", "mariadb-bin.000001", start, end, Codec::Zst),
        start,
        end,
        codec: Codec::Zst,
        crc32: "01234567".into(),
    };
    let manifest = Manifest {
        version: 1,
        summary: summary.clone(),
        segments: vec![segment_record(0, 256), segment_record(256, 775)],
        index: Vec::new(),
        compacted: false,
    };
    let catalogue = Catalogue {
        version: 1,
        files: vec![summary],
        purging: vec![FileRef {
            epoch: "0001-server1".into(),
            name: "mariadb-bin.000000".into(),
        }],
    };
    let json = [
        ("catalogue", 0u8, serde_json::to_vec(&catalogue)),
        ("manifest", 1, serde_json::to_vec(&manifest)),
    ];
    for (name, selector, json) in json {
        let mut seed = vec![selector];
        seed.extend(json.expect("JSON"));
        seeds.push(("archive_json", name.into(), seed));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_what_they_are_for() {
        let binlog = b"\xfebinbinlog bytes, some of them".repeat(200);
        let seeds = seeds(&binlog);
        for (target, name, seed) in &seeds {
            match *target {
                "segment" => segment(seed),
                "index_object" => {
                    index_object(seed);
                    let packed = if seed[0] & 1 == 0 {
                        seed[1..].to_vec()
                    } else {
                        zstd::bulk::compress(&seed[1..], 1).expect("compress")
                    };
                    assert_eq!(parse_index_object(&packed).expect(name).len(), 4);
                }
                "archive_json" => {
                    archive_json(seed);
                    let parsed = if seed[0] == 0 {
                        serde_json::from_slice::<Catalogue>(&seed[1..]).map(|_| ())
                    } else {
                        serde_json::from_slice::<Manifest>(&seed[1..]).map(|_| ())
                    };
                    parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                other => panic!("{other}"),
            }
        }
        assert_eq!(seeds.iter().filter(|s| s.0 == "segment").count(), 8);
    }
}
