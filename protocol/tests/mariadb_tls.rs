//! TLS against a real MariaDB with a test CA: every mode, a wrong CA, a wrong name,
//! accounts that require TLS or a client certificate, and a binlog dump inside TLS.

mod common;

use binlogd_protocol::{
    BINLOG_DUMP_NON_BLOCK, ConnectOptions, Connection, ProtocolError, TlsMode, TlsOptions,
};
use binlogd_testkit::{MariaDb, MariaDbConfig, TestPki};
use common::replication_options;

fn with_tls(db: &MariaDb, tls: TlsOptions) -> ConnectOptions {
    ConnectOptions {
        tls,
        ..replication_options(db)
    }
}

async fn tls_version(conn: &mut Connection) -> String {
    let rows = conn
        .query("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .expect("status");
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().nth(1).flatten())
        .unwrap_or_default()
}

#[tokio::test]
async fn tls_modes_against_a_server_with_a_test_ca() {
    let pki = TestPki::generate().expect("pki");
    let db = MariaDbConfig {
        extra_args: pki.server_args(),
        ..Default::default()
    }
    .start()
    .expect("start");
    db.sql(
        "CREATE USER 'tls_only'@'127.0.0.1' IDENTIFIED BY 'pw-1' REQUIRE SSL;
         CREATE USER 'cert_only'@'127.0.0.1' IDENTIFIED BY 'pw-2' REQUIRE X509;",
    )
    .expect("users");
    let verify = |mode| TlsOptions {
        mode,
        ca_file: Some(pki.ca_cert.clone()),
        ..Default::default()
    };

    // verify-identity: chain to our CA and the certificate names 127.0.0.1.
    let mut conn = Connection::connect(&with_tls(&db, verify(TlsMode::VerifyIdentity)))
        .await
        .expect("verify-identity");
    assert!(conn.is_tls());
    assert!(
        tls_version(&mut conn).await.starts_with("TLSv1."),
        "encrypted"
    );

    // Preferred and required encrypt without a CA.
    for mode in [TlsMode::Preferred, TlsMode::Required] {
        let mut conn = Connection::connect(&with_tls(
            &db,
            TlsOptions {
                mode,
                ..Default::default()
            },
        ))
        .await
        .expect("connect");
        assert!(conn.is_tls(), "{mode:?}");
        assert!(!tls_version(&mut conn).await.is_empty());
    }
    let mut plain = Connection::connect(&with_tls(
        &db,
        TlsOptions {
            mode: TlsMode::Disabled,
            ..Default::default()
        },
    ))
    .await
    .expect("disabled");
    assert!(!plain.is_tls());
    assert_eq!(tls_version(&mut plain).await, "");

    // A CA that did not sign the server certificate is refused.
    let wrong_ca = TlsOptions {
        ca_file: Some(pki.other_ca_cert.clone()),
        ..verify(TlsMode::VerifyCa)
    };
    let err = Connection::connect(&with_tls(&db, wrong_ca))
        .await
        .expect_err("unknown issuer");
    assert!(matches!(err, ProtocolError::Tls(_)), "{err}");

    // A name the certificate does not carry: verify-identity refuses, verify-ca accepts.
    let renamed = |mode| TlsOptions {
        server_name: Some("db.example.com".to_owned()),
        ..verify(mode)
    };
    let err = Connection::connect(&with_tls(&db, renamed(TlsMode::VerifyIdentity)))
        .await
        .expect_err("wrong name");
    assert!(
        matches!(&err, ProtocolError::Tls(m) if m.contains("handshake")),
        "{err}"
    );
    Connection::connect(&with_tls(&db, renamed(TlsMode::VerifyCa)))
        .await
        .expect("verify-ca ignores the name");

    // Accounts that require TLS, or a client certificate.
    let mut tls_only = with_tls(
        &db,
        TlsOptions {
            mode: TlsMode::Disabled,
            ..Default::default()
        },
    );
    tls_only.user = "tls_only".to_owned();
    tls_only.password = "pw-1".to_owned();
    let err = Connection::connect(&tls_only)
        .await
        .expect_err("REQUIRE SSL without TLS");
    assert!(
        matches!(&err, ProtocolError::Server(e) if e.code == 1045),
        "{err}"
    );
    tls_only.tls.mode = TlsMode::Required;
    Connection::connect(&tls_only)
        .await
        .expect("REQUIRE SSL with TLS");

    let mut cert_only = with_tls(&db, verify(TlsMode::VerifyIdentity));
    cert_only.user = "cert_only".to_owned();
    cert_only.password = "pw-2".to_owned();
    let err = Connection::connect(&cert_only)
        .await
        .expect_err("REQUIRE X509 without a certificate");
    assert!(
        matches!(&err, ProtocolError::Server(e) if e.code == 1045),
        "{err}"
    );
    cert_only.tls.client_cert = Some((pki.client_cert.clone(), pki.client_key.clone()));
    Connection::connect(&cert_only)
        .await
        .expect("REQUIRE X509 with our client certificate");

    // The binlog stream works inside TLS.
    db.write_workload(10).expect("workload");
    let conn = Connection::connect(&with_tls(&db, verify(TlsMode::VerifyIdentity)))
        .await
        .expect("connect");
    let name = db.binlog_names().expect("names").remove(0);
    let mut stream = conn
        .binlog_dump(4300, &name, 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let mut events = 0;
    while common::next_event(&mut stream)
        .await
        .expect("event")
        .is_some()
    {
        events += 1;
    }
    assert!(events > 20, "{events} events");
}

#[tokio::test]
async fn tls_required_against_a_server_without_tls_is_a_clear_error() {
    let db = MariaDb::start_default().expect("start");
    let err = Connection::connect(&with_tls(
        &db,
        TlsOptions {
            mode: TlsMode::Required,
            ..Default::default()
        },
    ))
    .await
    .expect_err("no TLS on the server");
    assert!(err.to_string().contains("does not offer TLS"), "{err}");
    // Preferred falls back to plain.
    let conn = Connection::connect(&with_tls(&db, TlsOptions::default()))
        .await
        .expect("preferred");
    assert!(!conn.is_tls());
}
