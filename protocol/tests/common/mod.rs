//! What the protocol tests share: how to reach a harness MariaDB as its replication user.

use binlogd_protocol::ConnectOptions;
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
    }
}
