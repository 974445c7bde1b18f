//! The accounts `binlogd serve` lets in, from a file of password hashes (`--users-file`);
//! no password is ever given on a command line or kept in clear.
//!
//! One account and plugin per line, `#` starts a comment:
//!
//! ```text
//! repl  mysql_native_password  *14E65567ABDB5135D0CFD9A70B3032C179A49EE7
//! repl  caching_sha2_password  $argon2id$v=19$m=19456,t=2,p=1$...
//! ```
//!
//! - `mysql_native_password` keeps SHA1(SHA1(password)), written as MySQL and MariaDB
//!   write it in `mysql.user.authentication_string` (so an existing account's line can be
//!   copied from the primary): the protocol needs exactly this to check an answer.
//!   MariaDB replicas log in with it.
//! - `caching_sha2_password` keeps an Argon2id hash (a PHC string). MySQL 8.4+ replicas
//!   log in with this plugin; the first login of an account after `binlogd serve` starts
//!   sends the password whole (over TLS), which is checked against the Argon2 hash; later
//!   logins use the fast path, against SHA256(SHA256(password)) kept in memory only —
//!   what MySQL itself does.
//!
//! `binlogd serve-user NAME` writes both lines for a password read from the terminal or
//! standard input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::ServeError;

/// `mysql_native_password`.
pub const NATIVE: &str = "mysql_native_password";
/// `caching_sha2_password`.
pub const CACHING_SHA2: &str = "caching_sha2_password";

/// What `binlogd serve` keeps of one account's password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// SHA1(SHA1(password)), for `mysql_native_password`.
    pub native: Option<[u8; 20]>,
    /// An Argon2 PHC string, for `caching_sha2_password`'s full authentication.
    pub caching_sha2: Option<String>,
    /// SHA256(SHA256(password)) known from the start, for `caching_sha2_password`'s fast
    /// path: only for an account made in memory with its password ([`Users::one_off`]).
    /// Others learn it from their first full authentication.
    pub fast_path: Option<[u8; 32]>,
}

impl Account {
    /// The plugin to ask a client for when it answered with one this account lacks:
    /// `caching_sha2_password` when the account has it (MySQL's default), else native.
    pub fn preferred_plugin(&self) -> &'static str {
        if self.caching_sha2.is_some() {
            CACHING_SHA2
        } else {
            NATIVE
        }
    }

    /// Whether the account can log in with `plugin`.
    pub fn has_plugin(&self, plugin: &str) -> bool {
        match plugin {
            NATIVE => self.native.is_some(),
            CACHING_SHA2 => self.caching_sha2.is_some(),
            _ => false,
        }
    }

    /// Whether `password` is this account's `caching_sha2_password` password.
    /// Argon2 is slow on purpose: call it off the async threads.
    pub fn check_full_password(&self, password: &[u8]) -> bool {
        let Some(phc) = &self.caching_sha2 else {
            return false;
        };
        PasswordHash::new(phc).is_ok_and(|hash| {
            argon2::Argon2::default()
                .verify_password(password, &hash)
                .is_ok()
        })
    }
}

/// The accounts of a users file.
#[derive(Debug, Clone, Default)]
pub struct Users {
    accounts: HashMap<String, Account>,
    path: PathBuf,
}

impl Users {
    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Users, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
            doing: format!("reading the users file {}", path.display()),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Parses the text of a users file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Users, ServeError> {
        let mut accounts: HashMap<String, Account> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let bad = |message: String| ServeError::UsersFile {
                path: path.to_owned(),
                line: number + 1,
                message,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, plugin, hash] = fields[..] else {
                return Err(bad(format!(
                    "expected NAME PLUGIN HASH, found {} field(s)",
                    fields.len()
                )));
            };
            let account = accounts.entry(name.to_owned()).or_default();
            match plugin {
                NATIVE => {
                    let hex = hash.strip_prefix('*').unwrap_or(hash);
                    account.native = Some(parse_sha1_hex(hex).ok_or_else(|| {
                        bad(format!(
                            "{NATIVE} wants `*` and 40 hex digits (SHA1(SHA1(password)), as \
                             in mysql.user), found {hash:?}"
                        ))
                    })?);
                }
                CACHING_SHA2 => {
                    PasswordHash::new(hash).map_err(|e| {
                        bad(format!(
                            "{CACHING_SHA2} wants an Argon2 hash ($argon2id$...; `binlogd \
                             serve-user` writes one): {e}"
                        ))
                    })?;
                    account.caching_sha2 = Some(hash.to_owned());
                }
                other => {
                    return Err(bad(format!(
                        "unknown plugin {other:?}: {NATIVE} or {CACHING_SHA2}"
                    )));
                }
            }
        }
        if accounts.is_empty() {
            return Err(ServeError::UsersFile {
                path: path.to_owned(),
                line: 0,
                message: "no account: nobody could log in".to_owned(),
            });
        }
        Ok(Users {
            accounts,
            path: path.to_owned(),
        })
    }

    /// A single account made in memory for `password`, which logs in by either plugin
    /// without TLS (its `caching_sha2_password` fast path is known from the start): the
    /// throwaway account of a private `binlogd serve` on 127.0.0.1 that only binlogd's own
    /// restore uses. Never written anywhere.
    pub fn one_off(name: &str, password: &[u8]) -> Result<Users, ServeError> {
        let path = Path::new("(in memory)");
        let mut users = Users::parse(&account_lines(name, password)?, path)?;
        if let Some(account) = users.accounts.get_mut(name) {
            account.fast_path = Some(binlogd_protocol::server::passwords::caching_sha2_hash(
                password,
            ));
        }
        Ok(users)
    }

    /// An account no password opens, with both plugins: what a login naming an unknown
    /// account is taken through, step for step and with the same Argon2 cost as a known
    /// one, so that which names exist cannot be learnt from how a login is refused.
    pub fn decoy() -> Result<Account, ServeError> {
        let lines = account_lines("decoy", random_password().as_bytes())?;
        let users = Users::parse(&lines, Path::new("(decoy)"))?;
        users
            .accounts
            .get("decoy")
            .cloned()
            .ok_or_else(|| ServeError::Config("the decoy account did not parse".to_owned()))
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// Where the accounts came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn parse_sha1_hex(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A password of 32 random letters and digits (from the operating system's generator),
/// for a [`Users::one_off`] account.
pub fn random_password() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    // 62 letters: the modulo's bias (256 = 4 * 62 + 8) costs well under a bit of 190.
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The users-file lines that let `name` log in with `password` by either plugin.
pub fn account_lines(name: &str, password: &[u8]) -> Result<String, ServeError> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(ServeError::Config(format!(
            "account name {name:?}: not empty, no spaces"
        )));
    }
    if password.is_empty() {
        return Err(ServeError::Config(
            "an empty password would let anyone in; give one".to_owned(),
        ));
    }
    let native: String = binlogd_protocol::server::passwords::native_password_hash(password)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let argon = argon2::Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| ServeError::Config(format!("hashing the password: {e}")))?;
    Ok(format!(
        "{name} {NATIVE} *{native}\n{name} {CACHING_SHA2} {argon}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_written_for_a_password_read_back_and_check_it() {
        let lines = account_lines("repl", b"secret").expect("lines");
        assert!(
            lines.starts_with(
                "repl mysql_native_password *14E65567ABDB5135D0CFD9A70B3032C179A49EE7\n"
            )
        );
        let users = Users::parse(&format!("# accounts\n\n{lines}"), Path::new("u")).expect("parse");
        let account = users.account("repl").expect("account");
        assert!(account.has_plugin(NATIVE) && account.has_plugin(CACHING_SHA2));
        assert_eq!(account.preferred_plugin(), CACHING_SHA2);
        assert!(account.check_full_password(b"secret"));
        assert!(!account.check_full_password(b"secreT"));
        assert!(users.account("root").is_none());
    }

    #[test]
    fn a_one_off_account_knows_its_fast_path_from_the_start() {
        let users = Users::one_off("restore", b"pw").expect("account");
        let account = users.account("restore").expect("restore");
        assert_eq!(
            account.fast_path,
            Some(binlogd_protocol::server::passwords::caching_sha2_hash(
                b"pw"
            ))
        );
        assert!(account.has_plugin(NATIVE) && account.check_full_password(b"pw"));
        let from_file = Users::parse(
            &account_lines("repl", b"pw").expect("lines"),
            Path::new("u"),
        )
        .expect("parse");
        assert_eq!(from_file.account("repl").expect("repl").fast_path, None);
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        for (text, expected) in [
            (
                "repl mysql_native_password *ABC\n",
                "line 1: mysql_native_password wants",
            ),
            ("\nrepl sha256_password x\n", "line 2: unknown plugin"),
            (
                "repl caching_sha2_password notahash\n",
                "line 1: caching_sha2_password wants",
            ),
            ("repl\n", "line 1: expected NAME PLUGIN HASH"),
            ("# nobody\n", "no account"),
        ] {
            let err = Users::parse(text, Path::new("users"))
                .expect_err(text)
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert!(account_lines("re pl", b"x").is_err());
        assert!(Users::one_off("restore", b"").is_err());
        let (a, b) = (random_password(), random_password());
        assert!(a.len() == 32 && a.chars().all(|c| c.is_ascii_alphanumeric()) && a != b);
        assert!(account_lines("repl", b"").is_err());
    }
}
