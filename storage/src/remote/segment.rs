//! A segment object: binlog bytes compressed, optionally encrypted, with metadata that says
//! how to get them back and a CRC32 that says they came back right.
//!
//! Metadata: `binlogd-crc32` (of the plain bytes, 8 hex digits), `binlogd-length` (plain
//! length), and with client-side encryption `binlogd-encryption: aes-256-gcm` and
//! `binlogd-key-check` (see [`super::crypt`]). A reader given a key refuses a segment
//! without encryption: the key is what says a segment is the writer's.

use super::crypt::{ClientKey, KEY_CHECK, SCHEME};
use super::keys::Codec;
use super::store::{Metadata, Object};

const CRC: &str = "binlogd-crc32";
const LENGTH: &str = "binlogd-length";
const ENCRYPTION: &str = "binlogd-encryption";

/// Makes the object for `plain`, to be stored under `object_key`.
pub fn pack(
    object_key: &str,
    plain: &[u8],
    codec: Codec,
    key: Option<&ClientKey>,
) -> std::io::Result<(Vec<u8>, Metadata)> {
    let packed = codec.compress(plain)?;
    let mut metadata = Metadata::new();
    metadata.insert(CRC.to_owned(), format!("{:08x}", crc32fast::hash(plain)));
    metadata.insert(LENGTH.to_owned(), plain.len().to_string());
    let body = match key {
        Some(key) => {
            metadata.insert(ENCRYPTION.to_owned(), SCHEME.to_owned());
            metadata.insert(KEY_CHECK.to_owned(), key.check().to_owned());
            key.seal(object_key, &packed)
        }
        None => packed,
    };
    Ok((body, metadata))
}

/// Gets the plain bytes back from the object stored under `object_key`, which should
/// hold `length` of them; the error says what is wrong in words.
pub fn unpack(
    object_key: &str,
    object: &Object,
    codec: Codec,
    length: usize,
    key: Option<&ClientKey>,
) -> Result<Vec<u8>, String> {
    let packed = match object.metadata.get(ENCRYPTION) {
        // With a key, everything must be encrypted: anyone who may write to the bucket,
        // but lacks the key, could otherwise slip in a segment of their own, in clear.
        None if key.is_some() => {
            return Err(
                "not encrypted, though a key was given (--encryption-key-file): refused, as \
                 anyone who may write to the bucket could have put it there"
                    .to_owned(),
            );
        }
        None => std::borrow::Cow::Borrowed(&object.body[..]),
        Some(scheme) if scheme != SCHEME => {
            return Err(format!(
                "encrypted with {scheme}, which this binlogd does not know"
            ));
        }
        Some(_) => {
            let check = object.metadata.get(KEY_CHECK).map_or("?", String::as_str);
            let Some(key) = key else {
                return Err(format!(
                    "encrypted ({SCHEME}, key check {check}): give the key with --encryption-key-file"
                ));
            };
            if key.check() != check {
                return Err(format!(
                    "encrypted with another key (key check {check}; the key given has {})",
                    key.check()
                ));
            }
            std::borrow::Cow::Owned(key.open(object_key, &object.body)?)
        }
    };
    let plain = codec
        .decompress(&packed, length)
        .map_err(|e| e.to_string())?;
    if let Some(expected) = object.metadata.get(CRC) {
        let actual = format!("{:08x}", crc32fast::hash(&plain));
        if *expected != actual {
            return Err(format!(
                "CRC32 {actual}, but it was uploaded with {expected}"
            ));
        }
    }
    Ok(plain)
}

/// The key check an object was encrypted with, if it was.
pub fn key_check(metadata: &Metadata) -> Option<&str> {
    metadata
        .contains_key(ENCRYPTION)
        .then(|| metadata.get(KEY_CHECK).map_or("?", String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn object(body: Vec<u8>, metadata: Metadata) -> Object {
        Object {
            body: Bytes::from(body),
            metadata,
            etag: None,
        }
    }

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let plain = b"some binlog bytes, some binlog bytes".repeat(10);
        let key = ClientKey::from_bytes(&[1; 32]);
        for codec in [Codec::Raw, Codec::Zst, Codec::Gz] {
            for k in [None, Some(&key)] {
                let (body, metadata) = pack("a/b/1", &plain, codec, k).expect("pack");
                let stored = object(body, metadata);
                assert_eq!(
                    unpack("a/b/1", &stored, codec, plain.len(), k).expect("unpack"),
                    plain
                );
            }
        }
        let (body, metadata) = pack("a/b/1", &plain, Codec::Zst, Some(&key)).expect("pack");
        let stored = object(body, metadata);
        let err = unpack("a/b/1", &stored, Codec::Zst, plain.len(), None).expect_err("no key");
        assert!(err.contains("--encryption-key-file"), "{err}");
        let other = ClientKey::from_bytes(&[2; 32]);
        let err = unpack("a/b/1", &stored, Codec::Zst, plain.len(), Some(&other)).expect_err("k");
        assert!(err.contains("another key"), "{err}");
        assert_eq!(key_check(&stored.metadata), Some(key.check()));
        // A plain segment whose bytes changed.
        let (mut body, metadata) = pack("a/b/1", &plain, Codec::Raw, None).expect("pack");
        body[3] ^= 1;
        let err = unpack(
            "a/b/1",
            &object(body, metadata),
            Codec::Raw,
            plain.len(),
            None,
        )
        .expect_err("crc");
        assert!(err.contains("CRC32"), "{err}");
    }

    #[test]
    fn with_a_key_a_segment_in_clear_is_refused() {
        // What someone who may write to the bucket, but has no key, could put there.
        let plain = b"DROP DATABASE important".to_vec();
        let (body, metadata) = pack("a/b/1", &plain, Codec::Raw, None).expect("pack");
        let key = ClientKey::from_bytes(&[1; 32]);
        let err = unpack(
            "a/b/1",
            &object(body, metadata),
            Codec::Raw,
            plain.len(),
            Some(&key),
        )
        .expect_err("refused");
        assert!(
            err.contains("not encrypted, though a key was given"),
            "{err}"
        );
    }
}
