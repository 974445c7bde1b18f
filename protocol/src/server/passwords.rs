//! Checking a client's answer to the scramble, as a server does, from what the server
//! keeps of the password — never the password itself.
//!
//! - `mysql_native_password`: the server keeps SHA1(SHA1(password)) (MySQL's and
//!   MariaDB's `authentication_string`, `*` + 40 hex digits). The client sends
//!   SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); the server undoes the XOR
//!   and checks that the SHA1 of what comes out is what it keeps.
//! - `caching_sha2_password`, fast path: the same with SHA-256, against
//!   SHA256(SHA256(password)), which a server holds only in memory, after a full
//!   authentication (the password sent whole, over TLS) proved the password.
//!
//! References: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>.

use sha1::{Digest, Sha1};
use sha2::Sha256;

/// SHA1(SHA1(password)): what a server keeps for `mysql_native_password`.
pub fn native_password_hash(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// SHA256(SHA256(password)): what a server caches for the `caching_sha2_password` fast
/// path.
pub fn caching_sha2_hash(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// Whether `answer` is the `mysql_native_password` answer to `scramble` for the password
/// whose SHA1(SHA1()) is `stored`. An empty password is answered with nothing; such an
/// account is never accepted by this check.
pub fn check_native_password(stored: &[u8; 20], scramble: &[u8], answer: &[u8]) -> bool {
    let Ok(answer) = <[u8; 20]>::try_from(answer) else {
        return false;
    };
    let mut hasher = Sha1::new();
    hasher.update(&scramble[..scramble.len().min(20)]);
    hasher.update(stored);
    let mix = hasher.finalize();
    let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, m)| a ^ m).collect();
    constant_time_equal(&Sha1::digest(&stage1), stored)
}

/// Whether `answer` is the `caching_sha2_password` fast-path answer to `nonce` for the
/// password whose SHA256(SHA256()) is `cached`.
pub fn check_caching_sha2_fast(cached: &[u8; 32], nonce: &[u8], answer: &[u8]) -> bool {
    let Ok(answer) = <[u8; 32]>::try_from(answer) else {
        return false;
    };
    let mut hasher = Sha256::new();
    hasher.update(cached);
    hasher.update(&nonce[..nonce.len().min(20)]);
    let mix = hasher.finalize();
    let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, m)| a ^ m).collect();
    constant_time_equal(&Sha256::digest(&stage1), cached)
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{caching_sha2_password, native_password};

    #[test]
    fn what_our_client_answers_passes_and_nothing_else_does() {
        let scramble: Vec<u8> = (1..=20).collect();
        let stored = native_password_hash(b"secret");
        assert!(check_native_password(
            &stored,
            &scramble,
            &native_password(b"secret", &scramble)
        ));
        assert!(!check_native_password(
            &stored,
            &scramble,
            &native_password(b"Secret", &scramble)
        ));
        let other_scramble: Vec<u8> = (2..=21).collect();
        assert!(!check_native_password(
            &stored,
            &other_scramble,
            &native_password(b"secret", &scramble)
        ));
        assert!(!check_native_password(&stored, &scramble, b""));
        assert!(!check_native_password(&stored, &scramble, &[0; 21]));

        let cached = caching_sha2_hash(b"secret");
        let answer = caching_sha2_password(b"secret", &scramble);
        assert!(check_caching_sha2_fast(&cached, &scramble, &answer));
        assert!(!check_caching_sha2_fast(&cached, &other_scramble, &answer));
        assert!(!check_caching_sha2_fast(
            &cached,
            &scramble,
            &caching_sha2_password(b"secret2", &scramble)
        ));
    }

    #[test]
    fn the_native_hash_is_what_mysql_stores() {
        // SELECT PASSWORD('secret') on MariaDB: *14E65567ABDB5135D0CFD9A70B3032C179A49EE7.
        let hex: String = native_password_hash(b"secret")
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(hex, "14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
    }
}
