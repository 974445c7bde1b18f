//! What a real MariaDB refuses a replica, and how the client classifies and explains it.

mod common;

use binlogd_protocol::{
    BINLOG_DUMP_NON_BLOCK, BinlogStream, ConnectOptions, Connection, ProtocolError, Refusal,
};
use binlogd_testkit::MariaDb;
use common::replication_options;

/// Reads until the stream fails or ends; returns the failure.
async fn first_error(stream: &mut BinlogStream) -> ProtocolError {
    loop {
        match common::next_event(stream).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error ({})", line!()),
            Err(err) => return err,
        }
    }
}

fn refusal(err: &ProtocolError) -> Refusal {
    match err {
        ProtocolError::Server(server) => server.refusal(),
        other => panic!("not a server error: {other}"),
    }
}

#[tokio::test]
async fn refusals_are_classified_with_a_hint() {
    let db = MariaDb::start_default().expect("start");
    db.sql("CREATE USER 'plain'@'127.0.0.1' IDENTIFIED BY 'pw'")
        .expect("user without privileges");
    db.write_workload(3).expect("workload");
    db.rotate().expect("rotate");
    db.write_workload(3).expect("workload");
    let names = db.binlog_names().expect("names");

    // A user without REPLICATION SLAVE.
    let conn = Connection::connect(&ConnectOptions {
        user: "plain".into(),
        password: "pw".into(),
        ..replication_options(&db)
    })
    .await
    .expect("connect");
    let err = match conn
        .binlog_dump(5000, &names[0], 4, BINLOG_DUMP_NON_BLOCK)
        .await
    {
        Ok(mut stream) => first_error(&mut stream).await,
        Err(err) => err,
    };
    assert_eq!(refusal(&err), Refusal::MissingPrivilege, "{err}");
    assert!(err.is_fatal());
    let ProtocolError::Server(server) = &err else {
        unreachable!()
    };
    assert!(
        server
            .hint()
            .is_some_and(|h| h.contains("REPLICATION SLAVE"))
    );

    // A purged binlog: the server sends its artificial ROTATE first, then the error.
    // MariaDB keeps a binlog until its crash-recovery checkpoint has moved past it,
    // which happens shortly after the rotation: purge until the file is really gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.binlog_names().expect("names").contains(&names[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} was never purged",
            names[0]
        );
        db.sql(&format!("PURGE BINARY LOGS TO '{}'", names[1]))
            .expect("purge");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let conn = Connection::connect(&replication_options(&db))
        .await
        .expect("connect");
    let mut stream = conn
        .binlog_dump(5001, &names[0], 4, BINLOG_DUMP_NON_BLOCK)
        .await
        .expect("dump");
    let err = first_error(&mut stream).await;
    assert_eq!(refusal(&err), Refusal::BinlogNotAvailable, "{err}");
    assert!(err.is_fatal());

    // A second replica with the same server id: MariaDB cuts the older stream.
    let mut first = Connection::connect(&replication_options(&db))
        .await
        .expect("first");
    first.register_replica(5002).await.expect("register first");
    let mut older = first
        .binlog_dump(5002, &names[1], 4, 0)
        .await
        .expect("dump first");
    // Wait until the first stream is live (its GTID_LIST event has arrived).
    while let Some(event) = common::next_event(&mut older).await.expect("first stream") {
        if event[4] == 0xa3 {
            break;
        }
    }
    let mut second = Connection::connect(&replication_options(&db))
        .await
        .expect("second");
    second
        .register_replica(5002)
        .await
        .expect("register second");
    let _newer = second
        .binlog_dump(5002, &names[1], 4, 0)
        .await
        .expect("dump second");
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), first_error(&mut older))
        .await
        .expect("cut in time");
    assert_eq!(refusal(&err), Refusal::DuplicateServerId, "{err}");
    assert!(err.is_fatal(), "reconnecting would cut the other replica");
}
