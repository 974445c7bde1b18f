//! Losing the connection in the middle of a stream, through a cutting proxy in front of a
//! real MariaDB: the error says a retry can help, and a new connection gets everything.

mod common;

use binlogd_protocol::{BINLOG_DUMP_NON_BLOCK, ConnectOptions, Connection};
use binlogd_testkit::TcpProxy;
use common::replication_options;

#[tokio::test]
async fn a_stream_cut_mid_event_is_a_retryable_error() {
    let (db, name) = common::server_with_one_big_row(4);
    let proxy = TcpProxy::start(db.port()).expect("proxy");
    let through_proxy = || ConnectOptions {
        port: proxy.port(),
        ..replication_options(&db)
    };

    // Cut after 2 MiB from the server: inside the big event.
    proxy.cut_after(2 << 20);
    let conn = Connection::connect(&through_proxy())
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump(5100, &name, 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let mut received = 0usize;
    let err = loop {
        match common::next_event(&mut stream).await {
            Ok(Some(event)) => received += event.len(),
            Ok(None) => panic!("the stream ended cleanly despite the cut"),
            Err(err) => break err,
        }
    };
    assert!(
        received < 2 << 20,
        "the big event never arrived whole ({received} bytes)"
    );
    assert!(!err.is_fatal(), "a lost connection is worth a retry: {err}");

    // The next connection through the same proxy streams everything.
    let conn = Connection::connect(&through_proxy())
        .await
        .expect("reconnect");
    let mut stream = conn
        .binlog_dump(5100, &name, 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump again");
    let mut largest = 0;
    while let Some(event) = common::next_event(&mut stream).await.expect("event") {
        largest = largest.max(event.len());
    }
    assert!(
        largest > 4 << 20,
        "the big event arrives whole after reconnecting"
    );
}
