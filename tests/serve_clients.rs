//! `binlogd serve` and clients that misbehave or are many: each bad client gets a clear
//! error for itself alone while the others are served on, a client that stops reading is
//! dropped after `--write-timeout`, and twenty readers at once cost bounded memory.

mod serve_common;
mod stream_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use binlogd_testkit::{MariaDb, MariaDbConfig, TestPki, Tool, find_tool};
use serve_common::{PASSWORD, Serve, USER, users_file};
use stream_common::{Archive, wait_for_quiet_binlogs};

/// A MariaDB primary whose binlog holds about `megabytes` MB in 1 MB transactions, and an
/// archive of it.
fn primary_and_archive(megabytes: usize) -> (MariaDb, Archive) {
    let primary = MariaDbConfig {
        max_binlog_size: Some(8 << 20),
        ..MariaDbConfig::default()
    }
    .start()
    .expect("primary");
    primary
        .sql("CREATE DATABASE blobs; CREATE TABLE blobs.b (id INT PRIMARY KEY, v LONGBLOB)")
        .expect("table");
    // The values are written out in the statements: a server-side REPEAT() would be
    // logged as the short statement under the default MIXED format.
    for id in 0..megabytes {
        let value: String = (0..1 << 20)
            .map(|i: usize| char::from(b'a' + ((i * 7 + id) % 26) as u8))
            .collect();
        primary
            .sql(&format!("INSERT INTO blobs.b VALUES ({id}, '{value}')"))
            .expect("insert");
    }
    primary.write_workload(100).expect("workload");
    wait_for_quiet_binlogs(&primary);
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (primary, archive)
}

/// The `mariadb` client against binlogd serve, with `extra` options; its stderr.
fn mariadb_client(port: u16, extra: &[&str]) -> (bool, String) {
    let output = Command::new(find_tool(Tool::MariadbClient).expect("mariadb"))
        .args(["--no-defaults", "--host=127.0.0.1", "--batch"])
        .arg(format!("--port={port}"))
        .args(extra)
        .args(["-e", "SELECT @@server_id"])
        .output()
        .expect("mariadb");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mariadb_binlog(port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(find_tool(Tool::MariadbBinlog).expect("mariadb-binlog"));
    command
        .args([
            "--no-defaults",
            "--read-from-remote-server",
            "--host=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--user={USER}"))
        .arg(format!("--password={PASSWORD}"))
        .args(extra);
    command
}

#[test]
fn bad_clients_get_clear_errors_and_the_others_are_served_on() {
    // 48 MB: more than this machine's socket buffers hold (a receive buffer grows to
    // 32 MiB), so that a client that stops reading does stop the server's writes.
    let (primary, archive) = primary_and_archive(48);
    let users = users_file(archive.path().parent().expect("dir"));
    let pki = TestPki::generate().expect("pki");
    let serve = Serve::start(
        &archive,
        &users,
        &[
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
            "--require-tls",
            "--write-timeout",
            "3",
        ],
    );
    let port = serve.port;

    // A client that stops reading: mariadb-binlog writing into a pipe nobody reads.
    let stalled = stream_common::Reaped(
        mariadb_binlog(port, &["--ssl", "--stop-never"])
            .arg(primary.binlog_names().expect("names")[0].clone())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("stalled reader"),
    );

    // A wrong password; no TLS where TLS is required.
    let (ok, stderr) = mariadb_client(
        port,
        &["--ssl", &format!("--user={USER}"), "--password=wrong"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("1045") && stderr.contains("Access denied for user 'replica'@'127.0.0.1'"),
        "{stderr}"
    );
    let (ok, stderr) = mariadb_client(
        port,
        &[
            "--skip-ssl",
            &format!("--user={USER}"),
            &format!("--password={PASSWORD}"),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("3159") && stderr.contains("insecure transport are prohibited"),
        "{stderr}"
    );
    let (ok, stderr) = mariadb_client(port, &["--ssl", "--user=nobody", "--password=x"]);
    assert!(
        !ok && stderr.contains("Access denied for user 'nobody'"),
        "{stderr}"
    );

    // Garbage instead of a handshake response, and a packet out of sequence.
    for garbage in [
        &b"\x05\x00\x00\x01hello"[..],
        b"\x01\x00\x00\x07\x00",
        b"\xff\xff\xff\x01",
    ] {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut greeting = [0u8; 4];
        socket.read_exact(&mut greeting).expect("greeting");
        socket.write_all(garbage).expect("garbage");
        socket
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut rest = Vec::new();
        // The server closes the connection (it may say why first).
        let _ = socket.read_to_end(&mut rest);
    }

    // A dump of a file that does not exist: the servers' words.
    let output = mariadb_binlog(port, &["--ssl", "--raw", "--result-file=/dev/null"])
        .arg("mariadb-bin.999999")
        .output()
        .expect("mariadb-binlog");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("Could not find first log file name in binary log index file"),
        "{stderr}"
    );

    // Meanwhile a replica is served, the whole archive, while the stalled reader sits.
    let replica = MariaDbConfig {
        server_id: 2,
        ..MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica
        .replicate_from_port(port, USER, PASSWORD, "MASTER_SSL=1")
        .expect("CHANGE MASTER");
    let target = primary.gtid_binlog_pos().expect("pos");
    if let Err(e) = replica.wait_for_gtid(&target, Duration::from_secs(90)) {
        panic!("{e:#}\n{}", serve.log());
    }
    assert_eq!(
        replica
            .query_value("SELECT COUNT(*), SUM(LENGTH(v)) FROM blobs.b")
            .expect("rows"),
        primary
            .query_value("SELECT COUNT(*), SUM(LENGTH(v)) FROM blobs.b")
            .expect("rows")
    );

    // The stalled reader is dropped after --write-timeout, and said so.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !serve.log().contains("read nothing for") {
        assert!(
            Instant::now() < deadline,
            "the stalled reader was not dropped:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stalled);
    let log = serve.log();
    assert!(log.contains("refused a login: wrong password"), "{log}");
    assert!(
        log.contains("malformed handshake response") || log.contains("packet out of order"),
        "{log}"
    );
    replica.sql("STOP SLAVE").expect("stop");
    serve.stop();
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn twenty_readers_at_once_are_each_sent_everything_in_bounded_memory() {
    let (primary, archive) = primary_and_archive(24);
    let archived: u64 = std::fs::read_dir(archive.epochs()[0].clone())
        .expect("epoch")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    let users = users_file(archive.path().parent().expect("dir"));
    let serve = Serve::start(&archive, &users, &[]);
    let first = primary.binlog_names().expect("names")[0].clone();
    let pulls = tempfile::tempdir().expect("tempdir");
    let readers: Vec<_> = (0..20)
        .map(|n| {
            let dir = pulls.path().join(n.to_string());
            std::fs::create_dir(&dir).expect("dir");
            mariadb_binlog(serve.port, &["--raw", "--to-last-log"])
                .arg(format!("--result-file={}/", dir.display()))
                .arg(&first)
                .stderr(Stdio::piped())
                .spawn()
                .expect("reader")
        })
        .collect();
    for reader in readers {
        let output = reader.wait_with_output().expect("reader");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for n in 0..20 {
        let pulled: u64 = std::fs::read_dir(pulls.path().join(n.to_string()))
            .expect("pulled")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert!(pulled > 24 << 20, "reader {n} got {pulled} bytes");
    }
    // Each reader's dump holds one read chunk (1 MiB) and a socket's worth of packets,
    // whatever the size of the files: 20 readers of a 24+ MB archive stay far below
    // what holding a file per reader would take.
    let peak = peak_memory_kib(serve.pid());
    eprintln!(
        "binlogd serve peaked at {} MiB serving 20 readers {} MiB each",
        peak >> 10,
        archived >> 20
    );
    assert!(
        peak < 128 << 10,
        "binlogd serve peaked at {} MiB for 20 readers of {} MiB",
        peak >> 10,
        archived >> 20
    );
    serve.stop();
}
