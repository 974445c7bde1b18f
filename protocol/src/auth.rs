//! The authentication exchange after the handshake, as a state machine fed the server's
//! packets and answering with the packets to send — no I/O, so every turn of it is tested
//! without a socket (as rust-postgres' `ScramSha256`).
//!
//! The client answers the greeting with the plugin the server proposes when binlogd speaks
//! it (MySQL 8 proposes `caching_sha2_password`), else `mysql_native_password`; the server
//! then says OK, ERR, or switches the client to the account's plugin (`0xFE`, plugin name,
//! nonce), which binlogd follows only to plugins that fit the server's flavour.
//! `caching_sha2_password` adds "more data" packets (`0x01`): `3` fast authentication
//! succeeded, `4` the server wants the password in full — in clear over TLS, else
//! encrypted with the server's RSA key, which is pinned, fetched (`0x02` asks; `0x01` +
//! PEM answers), or refused. See
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>
//! and MariaDB's <https://mariadb.com/kb/en/connection/>.

use crate::error::ProtocolError;
use crate::error::ServerError;
use crate::handshake::{
    ServerHandshake, caching_sha2_encrypted_password, caching_sha2_password, ed25519_password,
    native_password,
};
use crate::packets::parse_err;
use crate::wire::Reader;

/// The server's RSA public key for `caching_sha2_password` without TLS. The server sends
/// it when asked, but over the same unencrypted connection: whoever sits in between can
/// send their own and read the password. So, as the `mysql` client does, binlogd asks for
/// it only when told to (`--get-server-public-key`), or uses a copy the user trusts
/// (`--server-public-key-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServerPublicKey {
    /// Neither: a login that needs the password in full without TLS is refused.
    #[default]
    Refuse,
    /// Ask the server for it.
    Fetch,
    /// This key, PEM (the server's `public_key.pem`, or `caching_sha2_password_public_key_path`).
    Pinned(Vec<u8>),
}

const NATIVE: &str = "mysql_native_password";
const CACHING_SHA2: &str = "caching_sha2_password";
const ED25519: &str = "client_ed25519";
/// caching_sha2_password: "send me your RSA public key".
const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// What the connection over which the exchange runs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// No TLS.
    Plain,
    /// TLS whose certificate was not checked (`preferred`, `required`).
    UnverifiedTls,
    /// TLS with the server's certificate checked.
    VerifiedTls,
}

/// What to do after a server packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this packet, then read the next.
    Send(Vec<u8>),
    /// Read the next packet.
    Read,
    /// Authenticated.
    Done,
}

/// One authentication exchange.
pub(crate) struct AuthExchange<'a> {
    server: &'a ServerHandshake,
    password: &'a [u8],
    channel: Channel,
    public_key: &'a ServerPublicKey,
    /// `host:port`, for messages.
    peer: String,
    plugin: String,
    nonce: Vec<u8>,
    awaiting_public_key: bool,
}

impl<'a> AuthExchange<'a> {
    /// Starts the exchange: the plugin to name in the handshake response and its answer.
    pub(crate) fn start(
        server: &'a ServerHandshake,
        password: &'a [u8],
        channel: Channel,
        public_key: &'a ServerPublicKey,
        peer: String,
    ) -> Result<(AuthExchange<'a>, String, Vec<u8>), ProtocolError> {
        let plugin = match server.auth_plugin.as_str() {
            CACHING_SHA2 => CACHING_SHA2,
            _ => NATIVE,
        }
        .to_owned();
        let nonce = server.scramble.clone();
        let answer = auth_answer(&plugin, password, &nonce)?;
        let exchange = AuthExchange {
            server,
            password,
            channel,
            public_key,
            peer,
            plugin: plugin.clone(),
            nonce,
            awaiting_public_key: false,
        };
        Ok((exchange, plugin, answer))
    }

    /// The server's next packet: what to do.
    pub(crate) fn step(&mut self, packet: &[u8]) -> Result<Step, ProtocolError> {
        match AuthReply::parse(packet)? {
            AuthReply::Ok => Ok(Step::Done),
            AuthReply::Err(e) => Err(e.into()),
            AuthReply::Switch { plugin, data } => {
                self.plugin = plugin.to_owned();
                check_switch(self.server, &self.plugin)?;
                // The scrambles of the SHA-1 and SHA-256 plugins end in a NUL; the Ed25519
                // nonce is 32 random bytes, and may itself end in 0x00 (one login in 256
                // failed while that byte was stripped too).
                self.nonce = if self.plugin == ED25519 {
                    data.to_vec()
                } else {
                    data.strip_suffix(&[0]).unwrap_or(data).to_vec()
                };
                Ok(Step::Send(auth_answer(
                    &self.plugin,
                    self.password,
                    &self.nonce,
                )?))
            }
            AuthReply::MoreData(key) if self.plugin == CACHING_SHA2 && self.awaiting_public_key => {
                self.awaiting_public_key = false;
                Ok(Step::Send(caching_sha2_encrypted_password(
                    self.password,
                    &self.nonce,
                    key,
                )?))
            }
            AuthReply::MoreData(status) if self.plugin == CACHING_SHA2 => match status.first() {
                // Fast authentication succeeded: the OK follows.
                Some(3) => Ok(Step::Read),
                Some(4) => self.full_authentication(),
                _ => Err(ProtocolError::malformed(
                    "caching_sha2_password reply",
                    "unknown status",
                )),
            },
            AuthReply::MoreData(_) => Err(ProtocolError::malformed(
                "authentication reply",
                "more data for a plugin that sends none",
            )),
        }
    }

    /// The server has no cached hash of this password: send it whole, in clear over TLS,
    /// otherwise encrypted with the server's RSA key.
    fn full_authentication(&mut self) -> Result<Step, ProtocolError> {
        if self.channel != Channel::Plain {
            if self.channel == Channel::UnverifiedTls {
                warn_unverified_password(&self.peer);
            }
            let mut clear = self.password.to_vec();
            clear.push(0);
            return Ok(Step::Send(clear));
        }
        match self.public_key {
            ServerPublicKey::Pinned(key) => Ok(Step::Send(caching_sha2_encrypted_password(
                self.password,
                &self.nonce,
                key,
            )?)),
            ServerPublicKey::Fetch => {
                self.awaiting_public_key = true;
                Ok(Step::Send(vec![REQUEST_PUBLIC_KEY]))
            }
            ServerPublicKey::Refuse => Err(ProtocolError::Unsupported(format!(
                "{} wants the password in full (caching_sha2_password has no cached login for \
                 the account), and the connection has no TLS: use TLS (--tls-mode verify-ca \
                 with --tls-ca), give the server's RSA key (--server-public-key-file), or let \
                 binlogd ask the server for it (--get-server-public-key, which trusts whatever \
                 answers)",
                self.peer
            ))),
        }
    }
}

/// A server packet during authentication, by its first byte.
#[derive(Debug, PartialEq, Eq)]
enum AuthReply<'p> {
    /// `0x00`: authenticated.
    Ok,
    /// `0xFF`: refused, in the server's words.
    Err(ServerError),
    /// `0xFE`: use this plugin, with this data (its nonce).
    Switch { plugin: &'p str, data: &'p [u8] },
    /// `0x01`: the plugin's own data (caching_sha2's status byte, or the RSA key asked for).
    MoreData(&'p [u8]),
}

impl<'p> AuthReply<'p> {
    fn parse(packet: &'p [u8]) -> Result<AuthReply<'p>, ProtocolError> {
        match packet.split_first() {
            Some((0x00, _)) => Ok(AuthReply::Ok),
            Some((0xff, _)) => Ok(AuthReply::Err(parse_err(packet)?)),
            Some((0xfe, rest)) => {
                let mut r = Reader::new(rest, "auth switch");
                let plugin = std::str::from_utf8(r.nul_terminated()?).map_err(|_| {
                    ProtocolError::malformed("auth switch", "plugin name is not UTF-8")
                })?;
                Ok(AuthReply::Switch {
                    plugin,
                    data: r.rest,
                })
            }
            Some((0x01, rest)) => Ok(AuthReply::MoreData(rest)),
            _ => Err(ProtocolError::malformed(
                "authentication reply",
                "unexpected first byte",
            )),
        }
    }
}

/// The first answer of an authentication plugin to the server's nonce.
fn auth_answer(plugin: &str, password: &[u8], nonce: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    Ok(match plugin {
        NATIVE => native_password(password, nonce),
        CACHING_SHA2 => caching_sha2_password(password, nonce),
        ED25519 => ed25519_password(password, nonce).to_vec(),
        _ => {
            return Err(ProtocolError::Unsupported(format!(
                "authentication plugin {plugin} (binlogd speaks mysql_native_password, \
                 caching_sha2_password and client_ed25519)"
            )));
        }
    })
}

/// Refuses an auth switch to a plugin that the server's flavour does not use for its
/// accounts: a server (or a man in the middle) asking a MySQL client for MariaDB's
/// ed25519, or a MariaDB client for MySQL's caching_sha2, is not to be followed.
fn check_switch(server: &ServerHandshake, plugin: &str) -> Result<(), ProtocolError> {
    let mariadb = server.server_version.contains("MariaDB");
    let fits = match plugin {
        NATIVE => true,
        CACHING_SHA2 => !mariadb,
        ED25519 => mariadb,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(ProtocolError::Unsupported(format!(
            "the server {} asked to switch to the authentication plugin {plugin}, which binlogd \
             does not follow for a {} server",
            server.server_version,
            if mariadb { "MariaDB" } else { "MySQL" }
        )))
    }
}

/// Says, once per process, that a password went in full over TLS whose certificate was
/// not checked: whoever can place themselves between binlogd and the server can read it.
fn warn_unverified_password(peer: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            server = %peer,
            "sent the password in full over TLS whose certificate was not verified (--tls-mode \
             preferred or required): anyone between binlogd and the server could read it; \
             use --tls-mode verify-ca with --tls-ca"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: &str, plugin: &str) -> ServerHandshake {
        ServerHandshake {
            server_version: version.into(),
            connection_id: 7,
            scramble: (1..=20).collect(),
            capabilities: 0,
            charset: 45,
            auth_plugin: plugin.into(),
        }
    }

    fn exchange<'a>(
        server: &'a ServerHandshake,
        channel: Channel,
        key: &'a ServerPublicKey,
    ) -> (AuthExchange<'a>, String, Vec<u8>) {
        AuthExchange::start(server, b"secret", channel, key, "db:3306".into()).expect("start")
    }

    fn switch(plugin: &str, nonce: &[u8]) -> Vec<u8> {
        let mut packet = vec![0xfe];
        packet.extend_from_slice(plugin.as_bytes());
        packet.push(0);
        packet.extend_from_slice(nonce);
        packet
    }

    #[test]
    fn server_packets_are_told_apart_by_their_first_byte() {
        assert_eq!(AuthReply::parse(&[0x00, 0, 0]).expect("ok"), AuthReply::Ok);
        assert_eq!(
            AuthReply::parse(&switch(NATIVE, &[7; 21])).expect("switch"),
            AuthReply::Switch {
                plugin: NATIVE,
                data: &[7; 21]
            }
        );
        assert_eq!(
            AuthReply::parse(&[0x01, 3]).expect("more"),
            AuthReply::MoreData(&[3])
        );
        assert!(matches!(
            AuthReply::parse(b"\xff\x15\x04#28000denied").expect("err"),
            AuthReply::Err(e) if e.code == 1045
        ));
        for bad in [&[][..], &[0x42], &[0xfe, b'x'], &[0xfe, 0xff, 0xfe, 0]] {
            assert!(AuthReply::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_with_the_proposed_plugin_it_speaks_and_follows_a_fitting_switch() {
        let mysql = server("9.7.0", CACHING_SHA2);
        let refuse = ServerPublicKey::Refuse;
        let (mut auth, plugin, answer) = exchange(&mysql, Channel::Plain, &refuse);
        assert_eq!(plugin, CACHING_SHA2);
        assert_eq!(answer, caching_sha2_password(b"secret", &mysql.scramble));
        // Fast path: "3", then OK.
        assert_eq!(auth.step(&[0x01, 3]).expect("fast"), Step::Read);
        assert_eq!(auth.step(&[0x00, 0, 0, 2, 0]).expect("ok"), Step::Done);

        // MariaDB proposes native; the account is ed25519, whose nonce may end in 0x00.
        let mariadb = server("5.5.5-10.11.14-MariaDB", NATIVE);
        let (mut auth, plugin, _) = exchange(&mariadb, Channel::Plain, &refuse);
        assert_eq!(plugin, NATIVE);
        let nonce: Vec<u8> = (0..32).map(|i| if i == 31 { 0 } else { i }).collect();
        assert_eq!(
            auth.step(&switch(ED25519, &nonce)).expect("switch"),
            Step::Send(ed25519_password(b"secret", &nonce).to_vec())
        );
        // A native switch's scramble ends in a NUL that is not part of it.
        let (mut auth, ..) = exchange(&mariadb, Channel::Plain, &refuse);
        let mut scramble = vec![9u8; 20];
        scramble.push(0);
        assert_eq!(
            auth.step(&switch(NATIVE, &scramble)).expect("switch"),
            Step::Send(native_password(b"secret", &scramble[..20]))
        );
    }

    #[test]
    fn refuses_switches_foreign_to_the_flavour_and_unknown_plugins() {
        let refuse = ServerPublicKey::Refuse;
        let mysql = server("9.7.0", CACHING_SHA2);
        let (mut auth, ..) = exchange(&mysql, Channel::Plain, &refuse);
        let err = auth.step(&switch(ED25519, &[1; 32])).expect_err("foreign");
        assert!(
            err.to_string()
                .contains("does not follow for a MySQL server"),
            "{err}"
        );
        let mariadb = server("5.5.5-11.8.3-MariaDB", NATIVE);
        let (mut auth, ..) = exchange(&mariadb, Channel::Plain, &refuse);
        assert!(auth.step(&switch(CACHING_SHA2, &[1; 20])).is_err());
        let (mut auth, ..) = exchange(&mariadb, Channel::Plain, &refuse);
        assert!(auth.step(&switch("dialog", &[1; 20])).is_err());
        // ERR is the server's words; anything else is malformed.
        let (mut auth, ..) = exchange(&mariadb, Channel::Plain, &refuse);
        let mut err_packet = vec![0xff, 0x15, 0x04, b'#'];
        err_packet.extend_from_slice(b"28000Access denied");
        let err = auth.step(&err_packet).expect_err("denied");
        assert!(err.to_string().contains("Access denied"), "{err}");
        let (mut auth, ..) = exchange(&mariadb, Channel::Plain, &refuse);
        assert!(auth.step(&[0x42]).is_err());
    }

    #[test]
    fn the_full_password_goes_only_over_tls_or_to_a_key_binlogd_was_told_to_trust() {
        let mysql = server("9.7.0", CACHING_SHA2);
        // TLS: in clear, NUL-terminated.
        for channel in [Channel::VerifiedTls, Channel::UnverifiedTls] {
            let refuse = ServerPublicKey::Refuse;
            let (mut auth, ..) = exchange(&mysql, channel, &refuse);
            assert_eq!(
                auth.step(&[0x01, 4]).expect("full"),
                Step::Send(b"secret\0".to_vec())
            );
        }
        // No TLS, no key: refused, saying what would do.
        let refuse = ServerPublicKey::Refuse;
        let (mut auth, ..) = exchange(&mysql, Channel::Plain, &refuse);
        let err = auth.step(&[0x01, 4]).expect_err("refused");
        assert!(err.to_string().contains("--get-server-public-key"), "{err}");
        // Fetch: ask, then encrypt with what comes back (a key that is not PEM fails).
        let fetch = ServerPublicKey::Fetch;
        let (mut auth, ..) = exchange(&mysql, Channel::Plain, &fetch);
        assert_eq!(
            auth.step(&[0x01, 4]).expect("ask"),
            Step::Send(vec![REQUEST_PUBLIC_KEY])
        );
        assert!(auth.step(b"\x01not a key").is_err());
        // An unknown caching_sha2 status.
        let (mut auth, ..) = exchange(&mysql, Channel::Plain, &fetch);
        assert!(auth.step(&[0x01, 9]).is_err());
    }
}
