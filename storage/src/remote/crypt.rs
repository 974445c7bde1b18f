//! Client-side encryption of segments: AES-256-GCM with a key only the user holds.
//!
//! A segment is compressed first (ciphertext does not compress), then sealed as
//! `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)` with a fresh random nonce and the
//! segment's object key as associated data, so a segment moved to another key (another
//! file, another offset) fails to open instead of splicing bytes into the wrong place.
//! The object's metadata says `binlogd-encryption: aes-256-gcm` and gives the key's check
//! value (`binlogd-key-check`), so a reader knows which key it needs without being told,
//! and says "wrong key" before trying. Index objects, manifests and the catalogue stay in
//! the clear: they hold GTIDs, offsets and times, not row data, and `list`, `search` and
//! `timeline` work without the key.
//!
//! They are authenticated instead: with a key, every object binlogd writes besides the
//! segments carries `binlogd-mac`, an HMAC-SHA256 of its key and bytes under a MAC key
//! derived from the client key (see [`ClientKey::authenticate`]). A reader with the key
//! refuses such an object without a MAC or with a wrong one, so someone who may write to
//! the bucket but lacks the key cannot drop, reorder, shorten or retime segments through
//! the manifests, the catalogue or the index. What a MAC cannot show is an *older* genuine
//! catalogue put back; its files are still listed as open files and read from their
//! authenticated segments, and a restore short of its target says so.

use super::store::{Metadata, Object};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The only scheme: what the metadata and manifests call it.
pub const SCHEME: &str = "aes-256-gcm";
const NONCE_LEN: usize = 12;
/// Metadata: the HMAC-SHA256 of an authenticated object, 64 hex digits.
const MAC: &str = "binlogd-mac";
/// Metadata: the check value of the key it was authenticated (or encrypted) with.
pub(crate) const KEY_CHECK: &str = "binlogd-key-check";

/// A 256-bit key for client-side encryption.
#[derive(Clone)]
pub struct ClientKey {
    /// Shared: the expanded key schedule is a kilobyte, and readers clone the key.
    cipher: Arc<Aes256Gcm>,
    /// Derived from the key, so that no bytes are ever both encrypted and MACed with the
    /// same key.
    mac_key: [u8; 32],
    check: String,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        write!(f, "ClientKey(check {})", self.check)
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("reading the key file {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file holds something else than a key.
    #[error(
        "the key file {path} must hold 32 bytes, or 64 hex digits (make one with: openssl rand -hex 32 > {path}); it holds {found}"
    )]
    Malformed {
        /// The file.
        path: String,
        /// What it holds, in words.
        found: String,
    },
}

impl ClientKey {
    /// Reads a key file: 32 raw bytes, or 64 hex digits (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<ClientKey, KeyError> {
        Ok(ClientKey::from_bytes(&read_key_file(path)?))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(key: &[u8; 32]) -> ClientKey {
        // The check value names the key without revealing it: a hash of the key, set apart
        // from any other use of it by a label.
        let mut hasher = Sha256::new();
        hasher.update(b"binlogd key check v1\0");
        hasher.update(key);
        let digest = hasher.finalize();
        let check = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut hasher = Sha256::new();
        hasher.update(b"binlogd object mac key v1\0");
        hasher.update(key);
        ClientKey {
            cipher: Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))),
            mac_key: hasher.finalize().into(),
            check,
        }
    }

    /// The MAC of `body` stored under `object_key`, 64 hex digits. The key is part of what
    /// is authenticated, so a genuine object copied over another (one file's manifest over
    /// another's) fails too.
    pub fn authenticate(&self, object_key: &str, body: &[u8]) -> String {
        self.mac_of(object_key, body)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `mac` (hex) is what [`ClientKey::authenticate`] gives; compared in
    /// constant time.
    pub fn is_authentic(&self, object_key: &str, body: &[u8], mac: &str) -> bool {
        let Some(bytes) = decode_hex(mac) else {
            return false;
        };
        self.mac_of(object_key, body).verify_slice(&bytes).is_ok()
    }

    fn mac_of(&self, object_key: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        // An object key holds no NUL: it ends the key unambiguously.
        mac.update(object_key.as_bytes());
        mac.update(b"\0");
        mac.update(body);
        mac
    }

    /// The key's check value (16 hex digits).
    pub fn check(&self) -> &str {
        &self.check
    }

    /// Encrypts `plain` for the object `object_key`.
    pub fn seal(&self, object_key: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        // Encryption into a Vec cannot fail for inputs below GCM's 64 GiB limit, which a
        // segment (at most 16 MiB) never reaches.
        if let Ok(sealed) = self.cipher.encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: object_key.as_bytes(),
            },
        ) {
            out.extend_from_slice(&sealed);
        }
        out
    }

    /// Decrypts what [`ClientKey::seal`] made for `object_key`; fails when the bytes were
    /// changed, belong to another object, or were sealed with another key.
    pub fn open(&self, object_key: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(format!(
                "{} bytes is too short for an encrypted segment",
                sealed.len()
            ));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: object_key.as_bytes(),
                },
            )
            .map_err(|_| {
                "authentication failed: the bytes were changed or belong to another object"
                    .to_owned()
            })
    }
}

/// The metadata that authenticates `body` under `object_key`: empty without a key.
pub fn authenticated_metadata(key: Option<&ClientKey>, object_key: &str, body: &[u8]) -> Metadata {
    let mut metadata = Metadata::new();
    if let Some(key) = key {
        metadata.insert(MAC.to_owned(), key.authenticate(object_key, body));
        metadata.insert(KEY_CHECK.to_owned(), key.check().to_owned());
    }
    metadata
}

/// Checks an object read from `object_key` against its MAC. Without a key there is
/// nothing to check against; with one, an object without a MAC is refused, as anyone who
/// may write to the bucket could have put it there.
pub fn check_authentic(
    key: Option<&ClientKey>,
    object_key: &str,
    object: &Object,
) -> Result<(), String> {
    let Some(key) = key else {
        return Ok(());
    };
    let Some(mac) = object.metadata.get(MAC) else {
        return Err(
            "not authenticated, though a key was given (--encryption-key-file): refused, as \
             anyone who may write to the bucket could have put it there"
                .to_owned(),
        );
    };
    let check = object.metadata.get(KEY_CHECK).map_or("?", String::as_str);
    if check != key.check() {
        return Err(format!(
            "authenticated with another key (key check {check}; the key given has {})",
            key.check()
        ));
    }
    if !key.is_authentic(object_key, &object.body, mac) {
        return Err(
            "authentication failed: changed since binlogd wrote it, or copied from another key"
                .to_owned(),
        );
    }
    Ok(())
}

/// Whether an object carries a MAC, and with which key.
pub fn authenticated_with(metadata: &Metadata) -> Option<&str> {
    metadata
        .contains_key(MAC)
        .then(|| metadata.get(KEY_CHECK).map_or("?", String::as_str))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Reads a 256-bit key from a file: 32 raw bytes, or 64 hex digits (surrounding
/// whitespace ignored). Used for client-side keys and SSE-C customer keys alike.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let bytes = std::fs::read(path).map_err(|cause| KeyError::Read {
        path: path.display().to_string(),
        cause,
    })?;
    let malformed = |found: String| KeyError::Malformed {
        path: path.display().to_string(),
        found,
    };
    let text = std::str::from_utf8(&bytes).map(str::trim);
    let key: [u8; 32] = match text {
        Ok(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let mut key = [0u8; 32];
            for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
                let digits = std::str::from_utf8(pair).unwrap_or("00");
                key[i] = u8::from_str_radix(digits, 16).unwrap_or(0);
            }
            key
        }
        _ if bytes.len() == 32 => bytes.as_slice().try_into().unwrap_or([0; 32]),
        Ok(text) => return Err(malformed(format!("{} characters of text", text.len()))),
        Err(_) => return Err(malformed(format!("{} bytes", bytes.len()))),
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_segments_open_only_with_their_key_and_object() {
        let key = ClientKey::from_bytes(&[7; 32]);
        let other = ClientKey::from_bytes(&[8; 32]);
        assert_ne!(key.check(), other.check());
        assert_eq!(key.check().len(), 16);
        let sealed = key.seal("e/f/0-10.seg.zst", b"binlog bytes");
        assert_eq!(sealed.len(), 12 + 12 + 16);
        assert_ne!(
            key.seal("e/f/0-10.seg.zst", b"binlog bytes"),
            sealed,
            "fresh nonces"
        );
        assert_eq!(
            key.open("e/f/0-10.seg.zst", &sealed).expect("open"),
            b"binlog bytes"
        );
        assert!(other.open("e/f/0-10.seg.zst", &sealed).is_err());
        assert!(key.open("e/f/10-20.seg.zst", &sealed).is_err(), "moved");
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(key.open("e/f/0-10.seg.zst", &flipped).is_err());
        assert!(key.open("e/f/0-10.seg.zst", &sealed[..10]).is_err());
        assert!(format!("{key:?}").contains(key.check()));
    }

    #[test]
    fn objects_are_authentic_only_unchanged_under_their_key() {
        let key = ClientKey::from_bytes(&[7; 32]);
        let object = |body: &[u8], metadata: Metadata| Object {
            body: bytes::Bytes::copy_from_slice(body),
            metadata,
            etag: None,
        };
        let body = br#"{"files":[]}"#;
        let signed = authenticated_metadata(Some(&key), "catalogue.json", body);
        assert_eq!(authenticated_with(&signed), Some(key.check()));
        let genuine = object(body, signed.clone());
        assert_eq!(
            check_authentic(Some(&key), "catalogue.json", &genuine),
            Ok(())
        );
        assert_eq!(check_authentic(None, "catalogue.json", &genuine), Ok(()));
        // Moved to another key.
        let err = check_authentic(Some(&key), "e/f/manifest.json", &genuine).expect_err("moved");
        assert!(err.contains("authentication failed"), "{err}");
        // Changed.
        let changed = object(br#"{"files":[1]}"#, signed.clone());
        assert!(check_authentic(Some(&key), "catalogue.json", &changed).is_err());
        // Without a MAC, or with another key's.
        let bare = object(body, Metadata::new());
        let err = check_authentic(Some(&key), "catalogue.json", &bare).expect_err("bare");
        assert!(err.contains("not authenticated"), "{err}");
        assert_eq!(authenticated_with(&Metadata::new()), None);
        let other = ClientKey::from_bytes(&[8; 32]);
        let err = check_authentic(Some(&other), "catalogue.json", &genuine).expect_err("other");
        assert!(err.contains("another key"), "{err}");
        // A MAC that is not hex, or of the wrong length, is simply wrong.
        for mac in ["zz", "abc", ""] {
            let mut metadata = signed.clone();
            metadata.insert(MAC.to_owned(), mac.to_owned());
            let forged = object(body, metadata);
            assert!(check_authentic(Some(&key), "catalogue.json", &forged).is_err());
        }
        // The MAC key is not the encryption key: a MAC says nothing of the key itself.
        assert_ne!(key.mac_key, [7; 32]);
    }

    #[test]
    fn key_files_hold_hex_or_raw_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        let hex = dir.path().join("hex");
        std::fs::write(&hex, format!("{}\n", "ab".repeat(32))).expect("write");
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [0xab; 32]).expect("write");
        assert_eq!(
            ClientKey::from_file(&hex).expect("hex").check(),
            ClientKey::from_file(&raw).expect("raw").check()
        );
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").expect("write");
        let err = ClientKey::from_file(&short).expect_err("short");
        assert!(err.to_string().contains("openssl rand -hex 32"), "{err}");
        assert!(ClientKey::from_file(&dir.path().join("missing")).is_err());
    }
}
