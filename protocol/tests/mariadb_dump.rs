//! The replica side against a real MariaDB: authenticate as the replication user, dump
//! every binlog file, and rebuild byte-identical copies from the stream.

mod common;

use binlogd_parser::header::{FLAG_ARTIFICIAL, FLAG_BINLOG_IN_USE, HEADER_LEN};
use binlogd_parser::{BINLOG_MAGIC, EventType};
use binlogd_protocol::{BINLOG_DUMP_NON_BLOCK, ConnectOptions, Connection, ProtocolError};
use binlogd_testkit::{MariaDb, MariaDbConfig};
use common::replication_options;

#[tokio::test]
async fn dump_rebuilds_every_binlog_file_byte_for_byte() {
    let db = MariaDbConfig {
        max_binlog_size: Some(16 * 1024),
        ..Default::default()
    }
    .start()
    .expect("start");
    db.write_workload(200).expect("workload");
    db.rotate().expect("rotate");
    db.write_workload(5).expect("workload in the open file");
    let names = db.binlog_names().expect("names");
    assert!(names.len() >= 3, "{names:?}");

    let mut conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    assert!(
        conn.server().is_mariadb(),
        "{}",
        conn.server().server_version
    );
    assert_eq!(conn.server().flavour(), binlogd_parser::Flavour::MariaDb);
    let (major, minor, _) = conn.server().version();
    assert_eq!(
        (major, minor),
        (10, 11),
        "the greeting's 5.5.5- prefix is skipped"
    );
    let version = conn
        .query_value("SELECT @@version")
        .await
        .expect("query")
        .expect("a version");
    assert!(version.starts_with("10.11"), "{version}");
    conn.register_replica(4242).await.expect("register");
    let mut stream = conn
        .binlog_dump(4242, &names[0], 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(event) = common::next_event(&mut stream).await.expect("event") {
        let event_type = EventType(event[4]);
        let flags = u16::from_le_bytes([event[17], event[18]]);
        if event_type == EventType::ROTATE && flags & FLAG_ARTIFICIAL != 0 {
            // The server names the file the following events come from.
            let name =
                String::from_utf8_lossy(&event[HEADER_LEN + 8..event.len() - 4]).into_owned();
            files.push((name, BINLOG_MAGIC.to_vec()));
            continue;
        }
        let (_, bytes) = files.last_mut().expect("a file was named first");
        bytes.extend_from_slice(&event);
    }
    let streamed: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        streamed,
        names.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (i, (name, bytes)) in files.iter().enumerate() {
        let mut on_disk = std::fs::read(db.binlog_dir().join(name)).expect("server file");
        if i == files.len() - 1 {
            // The open file's format description says "in use" on disk only.
            on_disk[4 + 17] &= !(FLAG_BINLOG_IN_USE as u8);
        }
        assert!(
            bytes == &on_disk,
            "{name}: {} streamed bytes vs {} on disk",
            bytes.len(),
            on_disk.len()
        );
    }
}

#[tokio::test]
async fn wrong_password_and_missing_file_are_clear_fatal_errors() {
    let db = MariaDb::start_default().expect("start");
    let err = Connection::connect(&ConnectOptions {
        password: "not-the-password".into(),
        ..replication_options(&db)
    })
    .await
    .expect_err("refused");
    let ProtocolError::Server(server) = &err else {
        panic!("{err}")
    };
    assert_eq!(server.code, 1045, "{server}");
    assert!(err.is_fatal());
    assert!(err.to_string().contains("Access denied"), "{err}");

    let conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump(4243, "no-such-file.000042", 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("send");
    let err = common::next_event(&mut stream)
        .await
        .expect_err("server refuses");
    let ProtocolError::Server(server) = &err else {
        panic!("{err}")
    };
    assert_eq!(server.code, 1236, "{server}");
    assert!(err.is_fatal());
}

#[tokio::test]
async fn ed25519_user_authenticates_through_an_auth_switch() {
    let db = MariaDb::start_default().expect("start");
    db.sql(
        "INSTALL SONAME 'auth_ed25519';
         CREATE USER 'edu'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('ed-Secret-9');
         GRANT REPLICATION SLAVE ON *.* TO 'edu'@'127.0.0.1';",
    )
    .expect("ed25519 user");
    let mut options = ConnectOptions {
        password: "ed-Secret-9".into(),
        ..replication_options(&db)
    };
    options.user = "edu".to_owned();
    let mut conn = Connection::connect(&options).await.expect("ed25519 login");
    let who = conn
        .query_value("SELECT CURRENT_USER()")
        .await
        .expect("query")
        .expect("user");
    assert_eq!(who, "edu@127.0.0.1");

    options.password = "wrong".to_owned();
    let err = Connection::connect(&options)
        .await
        .expect_err("wrong ed25519 password");
    assert!(
        matches!(&err, ProtocolError::Server(e) if e.code == 1045),
        "{err}"
    );
}

/// The Ed25519 nonce is 32 random bytes with no terminator, so one in 256 ends in 0x00:
/// a scripted server sends such a nonce, and checks the signature against the public key
/// a real MariaDB stored for the same password.
#[tokio::test]
async fn an_ed25519_nonce_ending_in_zero_is_signed_whole() {
    use binlogd_testkit::mysql_peer::{PeerConnection, mysql8_greeting};
    use ed25519_dalek::{Signature, VerifyingKey};

    let db = MariaDb::start_default().expect("start");
    let stored = db
        .query_value(
            "INSTALL SONAME 'auth_ed25519'; \
             CREATE USER 'edz'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('ed-Secret-9'); \
             SELECT HEX(FROM_BASE64(CONCAT(JSON_VALUE(Priv, '$.authentication_string'), '='))) \
             FROM mysql.global_priv WHERE User = 'edz'",
        )
        .expect("the stored public key");
    let public: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&stored[2 * i..2 * i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>()
        .try_into()
        .expect("32 bytes");
    let public = VerifyingKey::from_bytes(&public).expect("a public key");
    let mut nonce = [0x5au8; 32];
    nonce[31] = 0;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut conn = PeerConnection::accept(&listener)?;
        conn.send(&mysql8_greeting(
            "5.5.5-10.11.19-MariaDB",
            &[7; 20],
            "mysql_native_password",
        ))?;
        conn.expect_packet()?;
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"client_ed25519\0");
        switch.extend_from_slice(&nonce);
        conn.send(&switch)?;
        let (_, answer) = conn.expect_packet()?;
        let signature = Signature::from_slice(&answer)?;
        public.verify_strict(&nonce, &signature)?;
        conn.send_ok()
    });
    let options = ConnectOptions {
        host: "127.0.0.1".into(),
        port,
        user: "edz".into(),
        password: "ed-Secret-9".into(),
        ..replication_options(&db)
    };
    let result = Connection::connect(&options).await;
    server
        .join()
        .expect("server thread")
        .expect("the signature verifies against the server's key");
    result.expect("logged in");
}

#[tokio::test]
async fn gtid_positioned_dump_starts_right_after_the_position() {
    use binlogd_parser::events::Event;
    use binlogd_parser::{ChecksumAlgorithm, Frame, Framer, MariadbGtidPos, decode_event};

    let db = MariaDbConfig {
        max_binlog_size: Some(8 * 1024),
        ..Default::default()
    }
    .start()
    .expect("start");
    db.write_workload(40).expect("workload");
    let position: MariadbGtidPos = db
        .gtid_binlog_pos()
        .expect("pos")
        .parse()
        .expect("parse pos");
    db.write_workload(60).expect("more");
    db.sql("SET SESSION gtid_domain_id = 5; CREATE TABLE binlogd_test.other (a INT)")
        .expect("domain 5");
    let end: MariadbGtidPos = db
        .gtid_binlog_pos()
        .expect("pos")
        .parse()
        .expect("parse end");

    let conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump_mariadb_gtid(4244, &position, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    assert_eq!(
        stream.checksum(),
        ChecksumAlgorithm::Crc32,
        "the server default"
    );
    let mut framer = Framer::for_stream(stream.checksum());
    let mut gtids = Vec::new();
    while let Some(event) = common::next_event(&mut stream).await.expect("event") {
        let Frame::Event(raw) = framer.next_event(&event, 0).expect("frame") else {
            panic!("whole event")
        };
        let Some(format) = framer.format() else {
            assert!(
                raw.is_artificial(),
                "only the artificial ROTATE precedes the format description"
            );
            continue;
        };
        if let Event::MariadbGtid(gtid) = decode_event(&raw, format).expect("decode") {
            gtids.push(gtid.gtid);
        }
    }
    // Exactly the transactions after the position, in order, in both domains.
    let domain0: Vec<u64> = gtids
        .iter()
        .filter(|g| g.domain_id == 0)
        .map(|g| g.sequence)
        .collect();
    let first = position.get(0).expect("domain 0").sequence + 1;
    assert_eq!(
        domain0,
        (first..=end.get(0).expect("domain 0").sequence).collect::<Vec<_>>()
    );
    let domain5: Vec<u64> = gtids
        .iter()
        .filter(|g| g.domain_id == 5)
        .map(|g| g.sequence)
        .collect();
    assert_eq!(
        domain5,
        [1],
        "a domain the position does not name streams from its start"
    );
}

#[tokio::test]
async fn an_event_larger_than_16_mib_arrives_whole() {
    // A 20 MiB row is one ROWS event of more than 2^24 bytes: the server must split it
    // over several packets and the codec must join them.
    let (db, name) = common::server_with_one_big_row(20);
    let on_disk = std::fs::read(db.binlog_dir().join(&name)).expect("server file");

    let conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump(4245, &name, 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let mut copy = BINLOG_MAGIC.to_vec();
    let mut largest = 0;
    while let Some(event) = common::next_event(&mut stream).await.expect("event") {
        let flags = u16::from_le_bytes([event[17], event[18]]);
        if flags & FLAG_ARTIFICIAL != 0 {
            continue;
        }
        largest = largest.max(event.len());
        copy.extend_from_slice(&event);
    }
    assert!(largest > 20 << 20, "largest event {largest} bytes");
    let mut expected = on_disk;
    expected[4 + 17] &= !(FLAG_BINLOG_IN_USE as u8);
    assert!(
        copy == expected,
        "{} streamed vs {} on disk",
        copy.len(),
        expected.len()
    );

    // Piece by piece: no piece is larger than one packet, the big event comes in several,
    // and the pieces put together are the same file.
    let conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump(4246, &name, 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let (mut pieced, mut event, mut pieces_of_largest, mut pieces) =
        (BINLOG_MAGIC.to_vec(), Vec::new(), 0, 0);
    while let Some((bytes, first, last)) = common::next_piece(&mut stream).await.expect("piece") {
        assert!(bytes.len() <= binlogd_protocol::packet::MAX_PACKET_PAYLOAD);
        assert_eq!(first, event.is_empty(), "first marks the start of an event");
        event.extend_from_slice(&bytes);
        pieces += 1;
        if last {
            let flags = u16::from_le_bytes([event[17], event[18]]);
            if flags & FLAG_ARTIFICIAL == 0 {
                pieced.extend_from_slice(&event);
            }
            if event.len() == largest {
                pieces_of_largest = pieces;
            }
            event.clear();
            pieces = 0;
        }
    }
    assert!(
        pieces_of_largest >= 2,
        "the {largest}-byte event came in {pieces_of_largest} pieces"
    );
    assert!(pieced == expected, "pieced copy equals the server's file");
}

#[tokio::test]
async fn a_quiet_stream_carries_heartbeats_with_the_current_position() {
    use binlogd_parser::events::Event;
    use binlogd_parser::{Frame, Framer, decode_event};

    let db = MariaDb::start_default().expect("start");
    db.write_workload(3).expect("workload");
    let name = db.binlog_names().expect("names").pop().expect("file");
    let size = std::fs::metadata(db.binlog_dir().join(&name))
        .expect("stat")
        .len();

    let mut conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    conn.set_heartbeat_period(std::time::Duration::from_millis(200))
        .await
        .expect("heartbeat period");
    conn.register_replica(4501).await.expect("register");
    // Blocking dump from the end: nothing but heartbeats will come.
    let mut stream = conn
        .binlog_dump(4501, &name, size as u32, 0)
        .await
        .expect("dump");
    let mut framer = Framer::for_stream(stream.checksum());
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            common::next_event(&mut stream),
        )
        .await
        .expect("an event within 10 s: heartbeats every 200 ms")
        .expect("event")
        .expect("blocking stream");
        let Frame::Event(raw) = framer.next_event(&event, 0).expect("frame") else {
            panic!("whole event")
        };
        let Some(format) = framer.format() else {
            continue;
        };
        if let Event::Heartbeat { file } = decode_event(&raw, format).expect("decode") {
            assert_eq!(file, name.as_bytes());
            assert_eq!(
                u64::from(raw.header.log_pos),
                size,
                "the primary's current position"
            );
            heartbeats += 1;
        }
    }
}
