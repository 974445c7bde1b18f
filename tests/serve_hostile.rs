//! `binlogd serve` against clients that do not mean well, anyone who can reach its port:
//! bounded memory and connections before login, a clear "Too many connections" past
//! `--max-connections`, idle sessions closed after `--idle-timeout`, and the same answers
//! for an account that does not exist as for a wrong password.

mod serve_common;
mod stream_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use binlogd_testkit::{MariaDbConfig, Tool, find_tool};
use serve_common::{PASSWORD, Serve, USER, users_file};
use stream_common::{Archive, wait_for_quiet_binlogs};

fn archive_of_a_small_primary() -> Archive {
    let primary = MariaDbConfig::default().start().expect("primary");
    primary.write_workload(20).expect("workload");
    wait_for_quiet_binlogs(&primary);
    let archive = Archive::new();
    let output = archive.run_to_end(&primary, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    archive
}

/// The `mariadb` client against binlogd serve running `sql` (which may use the client's
/// own `system` command); its success and stderr.
fn mariadb(port: u16, user: &str, password: &str, sql: &str) -> (bool, String) {
    let mut child = Command::new(find_tool(Tool::MariadbClient).expect("mariadb"))
        .args(["--no-defaults", "--host=127.0.0.1", "--batch", "--skip-ssl"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mariadb");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("sql");
    let output = child.wait_with_output().expect("mariadb");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What binlogd serve answers first to a caching_sha2_password login as `user` with a
/// wrong scramble: a HandshakeResponse41 written by hand, as a MySQL client sends it.
fn caching_sha2_first_answer(port: u16, user: &str) -> Vec<u8> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let read_packet = |socket: &mut TcpStream| {
        let mut header = [0u8; 4];
        socket.read_exact(&mut header).expect("header");
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let mut body = vec![0u8; len];
        socket.read_exact(&mut body).expect("body");
        body
    };
    read_packet(&mut socket);
    // LONG_PASSWORD | PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH
    let mut body = 0x0008_8201u32.to_le_bytes().to_vec();
    body.extend_from_slice(&(16u32 << 20).to_le_bytes());
    body.push(33);
    body.extend_from_slice(&[0; 23]);
    body.extend_from_slice(user.as_bytes());
    body.push(0);
    body.push(32);
    body.extend_from_slice(&[0x5a; 32]);
    body.extend_from_slice(b"caching_sha2_password\0");
    let mut packet = (body.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(1);
    packet.extend_from_slice(&body);
    socket.write_all(&packet).expect("handshake response");
    read_packet(&mut socket)
}

/// Peak resident memory of a process, in MiB (`VmHWM`).
fn peak_memory_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

#[test]
fn connections_that_never_log_in_cost_little_and_past_the_limit_are_told_so() {
    let archive = archive_of_a_small_primary();
    let users = users_file(archive.path().parent().expect("parent"));
    let serve = Serve::start(&archive, &users, &["--max-connections", "150"]);
    // 149 sockets that announce a 16 MiB handshake response and send 2 MiB of it: each
    // used to be given its 16 MiB at once (2.4 GiB for 150 of them).
    let mut hostile = Vec::new();
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..149 {
        let mut socket = TcpStream::connect(("127.0.0.1", serve.port)).expect("connect");
        socket
            .set_write_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut greeting = [0u8; 4];
        socket.read_exact(&mut greeting).expect("greeting");
        let mut rest = vec![0u8; usize::from(greeting[0]) | usize::from(greeting[1]) << 8];
        socket.read_exact(&mut rest).expect("greeting body");
        let _ = socket.write_all(&[0xff, 0xff, 0xff, 0x01]);
        for _ in 0..32 {
            if socket.write_all(&chunk).is_err() {
                break;
            }
        }
        hostile.push(socket);
    }
    let peak = peak_memory_mib(serve.pid());
    assert!(
        peak < 256,
        "binlogd serve reached {peak} MiB with 149 sockets announcing 16 MiB"
    );
    // They were closed at their first packet's header: their places are free, and a
    // replica is served.
    drop(hostile);
    let (ok, stderr) = mariadb(serve.port, USER, PASSWORD, "SELECT @@server_id;");
    assert!(ok, "{stderr}");
    // The limit counts connections, logged in or not: 150 that say nothing hold every
    // place (for the 10 s a login may take), and the next is told so, as the servers do.
    let held: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(("127.0.0.1", serve.port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, stderr) = mariadb(serve.port, USER, PASSWORD, "SELECT @@server_id;");
    assert!(!ok);
    assert!(stderr.contains("Too many connections"), "{stderr}");
    // Sockets closed free their places.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, stderr) = mariadb(serve.port, USER, PASSWORD, "SELECT @@server_id;");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        serve
            .log()
            .contains("refused a connection: too many connections"),
        "{}",
        serve.log()
    );
    serve.stop();
}

#[test]
fn an_idle_session_is_closed_and_unknown_accounts_are_answered_as_wrong_passwords() {
    let archive = archive_of_a_small_primary();
    let users = users_file(archive.path().parent().expect("parent"));
    let serve = Serve::start(&archive, &users, &["--idle-timeout", "1"]);
    // A query, two seconds of nothing, another: the second finds the connection closed.
    let (ok, stderr) = mariadb(
        serve.port,
        USER,
        PASSWORD,
        "SELECT @@server_id;\nsystem sleep 3\nSELECT @@server_id;\n",
    );
    assert!(!ok, "the idle session was kept: {stderr}");
    assert!(
        stderr.contains("gone away") || stderr.contains("Lost connection"),
        "{stderr}"
    );
    assert!(
        serve.log().contains("closed an idle connection"),
        "{}",
        serve.log()
    );
    // One that keeps asking is not idle.
    let (ok, stderr) = mariadb(
        serve.port,
        USER,
        PASSWORD,
        "SELECT 1;\nsystem sleep 0.5\nSELECT 1;\nsystem sleep 0.5\nSELECT 1;\n",
    );
    assert!(ok, "{stderr}");
    // An account that does not exist and a wrong password: the same answer.
    let (ok, unknown) = mariadb(serve.port, "nobody", "guess", "SELECT 1;");
    assert!(!ok);
    let (ok, wrong) = mariadb(serve.port, USER, "guess", "SELECT 1;");
    assert!(!ok);
    assert_eq!(
        unknown.replace("'nobody'", "'NAME'"),
        wrong.replace(&format!("'{USER}'"), "'NAME'"),
        "an unknown account is answered differently from a wrong password"
    );
    // With caching_sha2_password a known account whose password is not cached is asked
    // for a full authentication (0x01 0x04): an unknown one is asked too, not refused at
    // once.
    assert_eq!(caching_sha2_first_answer(serve.port, USER), [0x01, 0x04]);
    assert_eq!(
        caching_sha2_first_answer(serve.port, "nobody"),
        [0x01, 0x04]
    );
    serve.stop();
}
