//! What the protocol tests share: how to reach a harness MariaDB as its replication user.

use binlogd_protocol::{BinlogStream, ConnectOptions, ProtocolError};
use binlogd_testkit::{MariaDb, REPLICATION_PASSWORD, REPLICATION_USER};

/// The harness's replication account over TCP on 127.0.0.1, TLS as the default
/// (`preferred`); tests change single fields with struct update syntax.
pub fn replication_options(db: &MariaDb) -> ConnectOptions {
    ConnectOptions {
        host: "127.0.0.1".to_owned(),
        port: db.port(),
        user: REPLICATION_USER.to_owned(),
        password: REPLICATION_PASSWORD.to_owned(),
        tls: Default::default(),
        server_public_key: Default::default(),
    }
}

/// A server whose first binlog holds one row of `mib` MiB, that is one ROWS event of
/// that size, with the binlog's name. The payload repeats 16 distinct bytes so that
/// misplaced pieces would show.
#[allow(dead_code)] // not every test file uses it
pub fn server_with_one_big_row(mib: u32) -> (MariaDb, String) {
    // binlog_format=ROW: the point is one ROWS event of that size, and the default MIXED
    // would log this deterministic INSERT as a statement. max_allowed_packet: the
    // statement itself is larger than the default 16 MiB.
    let db = binlogd_testkit::MariaDbConfig {
        binlog_format: Some(binlogd_testkit::BinlogFormat::Row),
        extra_args: vec!["--max-allowed-packet=64M".to_owned()],
        ..Default::default()
    }
    .start()
    .expect("start");
    db.sql(&format!(
        "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, payload LONGBLOB);
         INSERT INTO big.t VALUES (1, REPEAT(UNHEX('0123456789ABCDEF'), {mib} * 1024 * 1024 / 8));"
    ))
    .expect("insert the big row");
    let name = db.binlog_names().expect("names").remove(0);
    (db, name)
}

/// One piece of an event, owned: its bytes, whether it starts an event, whether it ends
/// one.
#[allow(dead_code)] // not every test file uses it
pub type OwnedPiece = (Vec<u8>, bool, bool);

/// The next piece, waiting for it: the stream's one read
/// ([`BinlogStream::read_piece`]) and its wait ([`BinlogStream::readable`]), as a test
/// wants them. `None` when the server ends the stream.
#[allow(dead_code)] // not every test file uses it
pub async fn next_piece(stream: &mut BinlogStream) -> Result<Option<OwnedPiece>, ProtocolError> {
    loop {
        match stream.read_piece(|bytes, first, last| (bytes.to_vec(), first, last)) {
            Some(piece) => return piece,
            None => stream.readable().await?,
        }
    }
}

/// The next event whole, or `None` when the server ends the stream.
#[allow(dead_code)] // not every test file uses it
pub async fn next_event(stream: &mut BinlogStream) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut event = Vec::new();
    while let Some((bytes, _, last)) = next_piece(stream).await? {
        event.extend_from_slice(&bytes);
        if last {
            return Ok(Some(event));
        }
    }
    if event.is_empty() {
        Ok(None)
    } else {
        Err(ProtocolError::Closed)
    }
}
