//! MySQL 8's `caching_sha2_password` exchanges, which MariaDB cannot produce: a scripted
//! peer on 127.0.0.1 (`binlogd_testkit::mysql_peer`) plays the server's side of each
//! exchange as documented
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>),
//! with a nonce and expected answer recorded from MySQL 8 servers, and checks every byte
//! the client sends.

use binlogd_protocol::{ConnectOptions, Connection, ProtocolError, ServerPublicKey, TlsOptions};
use binlogd_testkit::mysql_peer::{
    CACHING_SHA2_ANSWER_FOR_SECRET, CACHING_SHA2_NONCE, HandshakeResponse, PeerConnection,
    caching_sha2_fast_login, mysql8_greeting,
};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use std::net::TcpListener;
use std::thread::JoinHandle;

/// Runs `script` as the server of one or more connections on a free loopback port.
fn scripted_server(
    script: impl FnOnce(&TcpListener) -> anyhow::Result<()> + Send + 'static,
) -> (u16, JoinHandle<anyhow::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (port, std::thread::spawn(move || script(&listener)))
}

fn greeting() -> Vec<u8> {
    mysql8_greeting("8.0.36", &CACHING_SHA2_NONCE, "caching_sha2_password")
}

async fn connect(port: u16, password: &str) -> Result<Connection, ProtocolError> {
    connect_with_key(port, password, ServerPublicKey::Refuse).await
}

async fn connect_with_key(
    port: u16,
    password: &str,
    server_public_key: ServerPublicKey,
) -> Result<Connection, ProtocolError> {
    Connection::connect(&ConnectOptions {
        host: "127.0.0.1".into(),
        port,
        user: "repl".into(),
        password: password.into(),
        tls: TlsOptions {
            mode: binlogd_protocol::TlsMode::Disabled,
            ..TlsOptions::default()
        },
        server_public_key,
    })
    .await
}

#[tokio::test]
async fn fast_path_answer_is_the_recorded_one_and_succeeds() {
    let (port, server) = scripted_server(|listener| {
        let mut conn = PeerConnection::accept(listener)?;
        caching_sha2_fast_login(&mut conn, "repl")
    });
    connect(port, "secret").await.expect("authenticated");
    server
        .join()
        .expect("server thread")
        .expect("server script");
}

#[tokio::test]
async fn full_authentication_without_tls_encrypts_the_password_with_the_server_key() {
    let key_pem = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&String::from_utf8_lossy(&key_pem.stdout))
        .expect("private key");
    let public_pem = rsa::RsaPublicKey::from(&private)
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .expect("public pem");
    let expected: Vec<u8> = b"secret\0"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ CACHING_SHA2_NONCE[i % CACHING_SHA2_NONCE.len()])
        .collect();
    let served_key = public_pem.clone();
    let (port, server) = scripted_server(move |listener| {
        // Three logins: the key asked for, the key pinned, and neither.
        for round in 0..3 {
            let mut conn = PeerConnection::accept(listener)?;
            conn.send(&greeting())?;
            let (_, response) = conn.expect_packet()?;
            assert_eq!(
                HandshakeResponse::parse(&response)?.auth_response,
                CACHING_SHA2_ANSWER_FOR_SECRET
            );
            // No cached hash: perform full authentication.
            conn.send(&[0x01, 0x04])?;
            if round == 2 {
                // The client hangs up rather than asking for a key it would have to trust.
                assert!(conn.receive()?.is_none(), "no public key request");
                continue;
            }
            let mut seq_of_password = 3;
            if round == 0 {
                let (seq, request) = conn.expect_packet()?;
                assert_eq!(
                    (seq, request.as_slice()),
                    (3, &[0x02][..]),
                    "public key request"
                );
                let mut key_packet = vec![0x01];
                key_packet.extend_from_slice(served_key.as_bytes());
                conn.send(&key_packet)?;
                seq_of_password = 5;
            }
            let (seq, encrypted) = conn.expect_packet()?;
            assert_eq!((seq, encrypted.len()), (seq_of_password, 256));
            let plain = private
                .decrypt(rsa::Oaep::new::<sha1::Sha1>(), &encrypted)
                .expect("decrypts with the server key");
            assert_eq!(plain, expected);
            conn.send_ok()?;
        }
        Ok(())
    });
    connect_with_key(port, "secret", ServerPublicKey::Fetch)
        .await
        .expect("authenticated with the key asked for");
    connect_with_key(
        port,
        "secret",
        ServerPublicKey::Pinned(public_pem.as_bytes().to_vec()),
    )
    .await
    .expect("authenticated with the pinned key");
    let err = connect(port, "secret")
        .await
        .expect_err("no key, no TLS: refused");
    assert!(
        err.to_string().contains("--get-server-public-key")
            && err.to_string().contains("--server-public-key-file"),
        "{err}"
    );
    server
        .join()
        .expect("server thread")
        .expect("server script");
}

#[tokio::test]
async fn a_mysql_server_asking_for_mariadbs_plugin_is_not_followed() {
    let (port, server) = scripted_server(|listener| {
        let mut conn = PeerConnection::accept(listener)?;
        conn.send(&greeting())?;
        conn.expect_packet()?;
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"client_ed25519\0");
        switch.extend_from_slice(&[7; 32]);
        conn.send(&switch)?;
        assert!(conn.receive()?.is_none(), "no answer to the switch");
        Ok(())
    });
    let err = connect(port, "secret").await.expect_err("not followed");
    assert!(
        err.to_string()
            .contains("client_ed25519, which binlogd does not follow for a MySQL server"),
        "{err}"
    );
    server
        .join()
        .expect("server thread")
        .expect("server script");
}

#[tokio::test]
async fn a_refused_password_is_access_denied_and_an_unknown_plugin_is_named() {
    let (port, server) = scripted_server(|listener| {
        for round in 0..2 {
            let mut conn = PeerConnection::accept(listener)?;
            conn.send(&greeting())?;
            conn.expect_packet()?;
            if round == 0 {
                conn.send_err(1045, "28000", "Access denied for user 'repl'@'127.0.0.1'")?;
            } else {
                // Auth switch to a plugin binlogd does not speak.
                let mut switch = vec![0xfe];
                switch.extend_from_slice(b"authentication_kerberos_client\0");
                switch.extend_from_slice(&CACHING_SHA2_NONCE);
                switch.push(0);
                conn.send(&switch)?;
            }
        }
        Ok(())
    });
    let err = connect(port, "wrong").await.expect_err("refused");
    assert!(
        matches!(&err, ProtocolError::Server(e) if e.code == 1045),
        "{err}"
    );
    let err = connect(port, "secret").await.expect_err("unknown plugin");
    assert!(
        err.to_string().contains("authentication_kerberos_client"),
        "{err}"
    );
    server
        .join()
        .expect("server thread")
        .expect("server script");
}

#[tokio::test]
async fn a_connection_cut_during_the_tls_handshake_is_worth_retrying_a_bad_certificate_is_not() {
    // A server that offers TLS (CLIENT_SSL in its greeting), reads the SSL request, then
    // either goes away in the middle of the handshake or answers with bytes that are no
    // TLS at all.
    fn tls_greeting() -> Vec<u8> {
        let mut greeting = greeting();
        // The capability flags' lower half follows version, connection id, 8 bytes of
        // nonce and a filler.
        let at = 1 + "8.0.36".len() + 1 + 4 + 8 + 1;
        greeting[at + 1] |= 0x08; // CLIENT_SSL (0x0800)
        greeting
    }
    for garbage in [None, Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())] {
        let answer = garbage.clone();
        let (port, server) = scripted_server(move |listener| {
            let mut conn = PeerConnection::accept(listener)?;
            conn.send(&tls_greeting())?;
            let _ssl_request = conn.expect_packet()?;
            if let Some(bytes) = answer {
                use std::io::{Read, Write};
                let mut stream = conn.stream();
                let mut hello = [0u8; 512];
                let _ = stream.read(&mut hello)?;
                stream.write_all(&bytes)?;
            }
            Ok(())
        });
        let err = Connection::connect(&ConnectOptions {
            host: "127.0.0.1".into(),
            port,
            user: "repl".into(),
            password: "secret".into(),
            tls: TlsOptions {
                mode: binlogd_protocol::TlsMode::Required,
                ..TlsOptions::default()
            },
            server_public_key: ServerPublicKey::Refuse,
        })
        .await
        .expect_err("no TLS session");
        server.join().expect("script").expect("script ran");
        match garbage {
            None => assert!(!err.is_fatal(), "a cut is retried: {err}"),
            Some(_) => assert!(err.is_fatal(), "not TLS is for a person to fix: {err}"),
        }
        assert!(
            err.to_string().contains("handshake with 127.0.0.1"),
            "{err}"
        );
    }
}
