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

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The only scheme: what the metadata and manifests call it.
pub const SCHEME: &str = "aes-256-gcm";
const NONCE_LEN: usize = 12;

/// A 256-bit key for client-side encryption.
#[derive(Clone)]
pub struct ClientKey {
    /// Shared: the expanded key schedule is a kilobyte, and readers clone the key.
    cipher: Arc<Aes256Gcm>,
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
        ClientKey {
            cipher: Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))),
            check,
        }
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
