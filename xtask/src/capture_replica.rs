//! `cargo xtask capture-replica-setup`: records what real replicas send their source, into
//! `testdata/replica-setup/`, so that `binlogd serve` answers what replicas really ask.
//!
//! For each server (MariaDB 10.11, MariaDB 11.8, MySQL 9.7) it starts a primary and a
//! replica as the test harness starts them (the servers' defaults; the replica has its own
//! `server_id`, which replication requires), puts a recording TCP proxy between them,
//! points the replica at the proxy the way users do (MariaDB: `MASTER_USE_GTID=slave_pos`;
//! MySQL: `SOURCE_AUTO_POSITION=1`), waits until a transaction has gone through, and writes
//! one line per packet the replica sent: its handshake, then each command with its fields.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use binlogd_protocol::server::{ClientHello, Command, parse_client_hello};
use binlogd_testkit::{
    BinlogSource, MariaDbConfig, MariaDbVersion, MySqlConfig, REPLICATION_PASSWORD,
    REPLICATION_USER, TcpProxy,
};

/// `CLIENT_QUERY_ATTRIBUTES`.
const QUERY_ATTRIBUTES: u32 = 0x0800_0000;

/// Where the recordings go.
const DIR: &str = "testdata/replica-setup";

pub fn capture_replica_setup(args: &[String]) -> Result<()> {
    let all = ["mariadb-10.11", "mariadb-11.8", "mysql-9.7"];
    let chosen: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    std::fs::create_dir_all(DIR).with_context(|| format!("create {DIR}"))?;
    for server in chosen {
        println!("==> {server}");
        let (how, recorded) = match server {
            "mariadb-10.11" => capture_mariadb(MariaDbVersion::V10_11)?,
            "mariadb-11.8" => capture_mariadb(MariaDbVersion::V11_8)?,
            "mysql-9.7" => capture_mysql()?,
            other => bail!("unknown server {other}; one of {all:?}"),
        };
        let text = describe(server, how, &recorded)?;
        let path = Path::new(DIR).join(format!("{server}.txt"));
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        println!("    wrote {}", path.display());
    }
    Ok(())
}

/// Waits until `done` says yes, or fails after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn capture_mariadb(version: MariaDbVersion) -> Result<(&'static str, Vec<Vec<u8>>)> {
    let primary = MariaDbConfig {
        version,
        ..MariaDbConfig::default()
    }
    .start()?;
    let replica = MariaDbConfig {
        version,
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()?;
    let proxy = TcpProxy::start(primary.port())?;
    primary.sql("CREATE DATABASE capture; CREATE TABLE capture.t (id INT PRIMARY KEY)")?;
    // MariaDB 11.4+ replicas use TLS by default; off here, so that the proxy can read
    // what they send (the commands are the same either way).
    replica.replicate_from_port(
        proxy.port(),
        REPLICATION_USER,
        REPLICATION_PASSWORD,
        "MASTER_SSL=0",
    )?;
    primary.sql("INSERT INTO capture.t VALUES (1)")?;
    let target = primary.gtid_binlog_pos()?;
    replica.wait_for_gtid(&target, Duration::from_secs(60))?;
    replica.sql("STOP SLAVE")?;
    Ok((
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=..., MASTER_USER=..., \
         MASTER_PASSWORD=..., MASTER_USE_GTID=slave_pos, MASTER_SSL=0; START SLAVE \
         (MASTER_SSL=0 only so that the proxy can read the commands; TLS changes none of them)",
        proxy.recorded(),
    ))
}

fn capture_mysql() -> Result<(&'static str, Vec<Vec<u8>>)> {
    let primary = MySqlConfig::default().start()?;
    let replica = MySqlConfig {
        server_id: Some(2),
        ..MySqlConfig::default()
    }
    .start()?;
    let proxy = TcpProxy::start(primary.port())?;
    primary.sql("CREATE DATABASE capture; CREATE TABLE capture.t (id INT PRIMARY KEY)")?;
    replica.replicate_from_port(
        proxy.port(),
        REPLICATION_USER,
        REPLICATION_PASSWORD,
        "SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_SSL=0",
    )?;
    primary.sql("INSERT INTO capture.t VALUES (1)")?;
    let target = primary.gtid_executed()?;
    replica.wait_for_gtids(&target, Duration::from_secs(60))?;
    replica.sql("STOP REPLICA")?;
    wait_for(
        "the replica's connection to close",
        Duration::from_secs(10),
        || Ok(!proxy.recorded().is_empty()),
    )?;
    Ok((
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=..., SOURCE_USER=..., \
         SOURCE_PASSWORD=..., SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_SSL=0; \
         START REPLICA (SOURCE_SSL=0 only so that the proxy can read the commands; TLS \
         changes none of them)",
        proxy.recorded(),
    ))
}

/// One line per packet each connection's client sent.
fn describe(server: &str, how: &str, connections: &[Vec<u8>]) -> Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "# What a {server} replica sends its source, recorded by `cargo xtask \
         capture-replica-setup {server}`\n# through a recording proxy after: {how}\n# One line \
         per packet the replica sent; `auth` lines are the password exchange."
    )?;
    for (number, bytes) in connections.iter().enumerate() {
        writeln!(out, "connection {}", number + 1)?;
        let mut rest = &bytes[..];
        let mut first = true;
        // With `CLIENT_QUERY_ATTRIBUTES` (MySQL 8.0.23+, when the source offers it) each
        // COM_QUERY starts with a parameter count and a parameter set count.
        let mut query_attributes = false;
        while rest.len() >= 4 {
            let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
            let sequence = rest[3];
            let Some(payload) = rest.get(4..4 + len) else {
                writeln!(out, "truncated packet of {len} bytes")?;
                break;
            };
            rest = &rest[4 + len..];
            let line = if first {
                first = false;
                query_attributes = matches!(
                    parse_client_hello(payload)?,
                    ClientHello::Response(hello) if hello.capabilities & QUERY_ATTRIBUTES != 0
                );
                hello_line(payload)?
            } else if sequence != 0 {
                format!("auth {} bytes", payload.len())
            } else if query_attributes && payload.first() == Some(&0x03) {
                // No parameters: the two counts are one byte each.
                let mut plain = vec![0x03];
                plain.extend_from_slice(payload.get(3..).unwrap_or_default());
                command_line(&plain)?
            } else {
                command_line(payload)?
            };
            writeln!(out, "{line}")?;
        }
    }
    Ok(out)
}

fn hello_line(payload: &[u8]) -> Result<String> {
    Ok(match parse_client_hello(payload)? {
        ClientHello::StartTls { capabilities } => {
            format!("ssl_request capabilities={capabilities:#x}")
        }
        ClientHello::Response(hello) => {
            let attributes: Vec<String> = hello
                .attributes
                .iter()
                // The pid and host differ at every run.
                .filter(|(key, _)| !matches!(*key, "_pid" | "_thread"))
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            format!(
                "handshake user={} plugin={} capabilities={:#x} attributes=[{}]",
                hello.user,
                hello.auth_plugin.unwrap_or("-"),
                hello.capabilities,
                attributes.join(" ")
            )
        }
    })
}

fn command_line(payload: &[u8]) -> Result<String> {
    Ok(match Command::parse(payload)? {
        Command::Query(text) => format!("query {text}"),
        Command::Quit => "quit".to_owned(),
        Command::Ping => "ping".to_owned(),
        Command::RegisterReplica(r) => format!(
            "register_replica server_id={} host={:?} user={:?} port={}",
            r.server_id, r.host, r.user, r.port
        ),
        Command::BinlogDump(d) => format!(
            "binlog_dump position={} flags={:#x} server_id={} file={:?}",
            d.position,
            d.flags,
            d.server_id,
            String::from_utf8_lossy(d.file)
        ),
        Command::BinlogDumpGtid(d) => format!(
            "binlog_dump_gtid flags={:#x} server_id={} file={:?} position={} gtid_set_bytes={}",
            d.flags,
            d.server_id,
            String::from_utf8_lossy(d.file),
            d.position,
            d.gtid_set.len()
        ),
        Command::Other(code) => format!("command {code:#04x} ({} bytes)", payload.len()),
    })
}
