//! MySQL 8's `caching_sha2_password` exchanges, which MariaDB cannot produce: a scripted
//! peer on 127.0.0.1 plays the server's side of each exchange as documented
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html>),
//! with a nonce and expected answer recorded from MySQL 8 servers (the known-answer
//! vectors published with go-sql-driver/mysql's tests), and checks every byte the client
//! sends.

use binlogd_protocol::{ConnectOptions, Connection, ProtocolError, TlsOptions};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The nonce a MySQL 8 server sent, and the client's answer for password "secret".
const NONCE: [u8; 20] = [
    90, 105, 74, 126, 30, 48, 37, 56, 3, 23, 115, 127, 69, 22, 41, 84, 32, 123, 43, 118,
];
const ANSWER_FOR_SECRET: [u8; 32] = [
    102, 32, 5, 35, 143, 161, 140, 241, 171, 232, 56, 139, 43, 14, 107, 196, 249, 170, 147, 60,
    220, 204, 120, 178, 214, 15, 184, 150, 26, 61, 57, 235,
];

async fn write_packet(stream: &mut TcpStream, seq: u8, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut header = len.to_le_bytes();
    header[3] = seq;
    stream.write_all(&header).await.expect("write header");
    stream.write_all(payload).await.expect("write payload");
}

async fn read_packet(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.expect("read header");
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.expect("read payload");
    (header[3], payload)
}

/// A MySQL 8.0 HandshakeV10 proposing caching_sha2_password, without TLS.
fn greeting() -> Vec<u8> {
    const CAPS: u32 = 0x0000_0001 // LONG_PASSWORD
        | 0x0000_0004 // LONG_FLAG
        | 0x0000_0200 // PROTOCOL_41
        | 0x0000_2000 // TRANSACTIONS
        | 0x0000_8000 // SECURE_CONNECTION
        | 0x0002_0000 // MULTI_RESULTS
        | 0x0008_0000 // PLUGIN_AUTH
        | 0x0020_0000; // PLUGIN_AUTH_LENENC_CLIENT_DATA
    let mut g = vec![10];
    g.extend_from_slice(b"8.0.36\0");
    g.extend_from_slice(&7u32.to_le_bytes());
    g.extend_from_slice(&NONCE[..8]);
    g.push(0);
    g.extend_from_slice(&(CAPS as u16).to_le_bytes());
    g.push(255); // utf8mb4_0900_ai_ci
    g.extend_from_slice(&2u16.to_le_bytes()); // status: autocommit
    g.extend_from_slice(&((CAPS >> 16) as u16).to_le_bytes());
    g.push(21); // auth plugin data length
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(&NONCE[8..]);
    g.push(0);
    g.extend_from_slice(b"caching_sha2_password\0");
    g
}

const OK: [u8; 7] = [0, 0, 0, 2, 0, 0, 0];

/// Reads the HandshakeResponse41 and returns (user, auth response, plugin).
fn parse_response(payload: &[u8]) -> (String, Vec<u8>, String) {
    let rest = &payload[32..];
    let user_end = rest.iter().position(|&b| b == 0).expect("user");
    let user = String::from_utf8_lossy(&rest[..user_end]).into_owned();
    let rest = &rest[user_end + 1..];
    let len = usize::from(rest[0]); // lenenc, < 251 here
    let auth = rest[1..1 + len].to_vec();
    let rest = &rest[1 + len..];
    let plugin_end = rest.iter().position(|&b| b == 0).expect("plugin");
    (
        user,
        auth,
        String::from_utf8_lossy(&rest[..plugin_end]).into_owned(),
    )
}

async fn connect(port: u16, password: &str) -> Result<Connection, ProtocolError> {
    Connection::connect(&ConnectOptions {
        host: "127.0.0.1".into(),
        port,
        user: "repl".into(),
        password: password.into(),
        tls: TlsOptions {
            mode: binlogd_protocol::TlsMode::Disabled,
            ..TlsOptions::default()
        },
    })
    .await
}

#[tokio::test]
async fn fast_path_answer_is_the_recorded_one_and_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        write_packet(&mut s, 0, &greeting()).await;
        let (seq, response) = read_packet(&mut s).await;
        assert_eq!(seq, 1);
        let (user, auth, plugin) = parse_response(&response);
        assert_eq!(
            (user.as_str(), plugin.as_str()),
            ("repl", "caching_sha2_password")
        );
        assert_eq!(auth, ANSWER_FOR_SECRET);
        write_packet(&mut s, 2, &[0x01, 0x03]).await; // fast auth success
        write_packet(&mut s, 3, &OK).await;
    });
    connect(port, "secret").await.expect("authenticated");
    server.await.expect("server script");
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        write_packet(&mut s, 0, &greeting()).await;
        let (_, response) = read_packet(&mut s).await;
        assert_eq!(parse_response(&response).1, ANSWER_FOR_SECRET);
        // No cached hash: perform full authentication.
        write_packet(&mut s, 2, &[0x01, 0x04]).await;
        let (seq, request) = read_packet(&mut s).await;
        assert_eq!(
            (seq, request.as_slice()),
            (3, &[0x02][..]),
            "public key request"
        );
        let mut key_packet = vec![0x01];
        key_packet.extend_from_slice(public_pem.as_bytes());
        write_packet(&mut s, 4, &key_packet).await;
        let (seq, encrypted) = read_packet(&mut s).await;
        assert_eq!((seq, encrypted.len()), (5, 256));
        let plain = private
            .decrypt(rsa::Oaep::new::<sha1::Sha1>(), &encrypted)
            .expect("decrypts with the server key");
        let expected: Vec<u8> = b"secret\0"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ NONCE[i % NONCE.len()])
            .collect();
        assert_eq!(plain, expected);
        write_packet(&mut s, 6, &OK).await;
    });
    connect(port, "secret").await.expect("authenticated");
    server.await.expect("server script");
}

#[tokio::test]
async fn a_refused_password_is_access_denied_and_an_unknown_plugin_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        for round in 0..2 {
            let (mut s, _) = listener.accept().await.expect("accept");
            write_packet(&mut s, 0, &greeting()).await;
            read_packet(&mut s).await;
            if round == 0 {
                let mut err = vec![0xff];
                err.extend_from_slice(&1045u16.to_le_bytes());
                err.extend_from_slice(b"#28000Access denied for user 'repl'@'127.0.0.1'");
                write_packet(&mut s, 2, &err).await;
            } else {
                // Auth switch to a plugin binlogd does not speak.
                let mut switch = vec![0xfe];
                switch.extend_from_slice(b"authentication_kerberos_client\0");
                switch.extend_from_slice(&NONCE);
                switch.push(0);
                write_packet(&mut s, 2, &switch).await;
            }
        }
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
    server.await.expect("server script");
}
