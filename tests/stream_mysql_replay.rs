//! `binlogd stream` against a MySQL 8 source. No MySQL server can run here, so a scripted
//! peer (`binlogd_testkit::mysql_peer`) plays one: it logs binlogd in with
//! `caching_sha2_password`, answers the session's queries as MySQL 8.0.28 does, and
//! serves a real MySQL-written binlog file from `../shared/testdata/mysql-corpus` the way
//! MySQL's dump thread sends it (an artificial ROTATE first, then the file's own events
//! with their `log_pos`, CRC32 on every event, EOF at the end of a non-blocking dump).
//!
//! The first run streams a prefix of the file by position (the server's file "so far");
//! the second run resumes by GTID: the peer decodes the `COM_BINLOG_DUMP_GTID` request as
//! MySQL documents it, skips the transactions it names as executed, and sends the rest.
//! The archive must then be the server's file byte for byte, with each GTID indexed once.

mod stream_common;

use anyhow::{Context, bail};
use binlogd_testkit::mysql_peer::{PeerConnection, caching_sha2_fast_login};
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use stream_common::{Archive, binlogd};

const FILE_NAME: &str = "binlog.000001";
const SERVER_UUID: &str = "93e95066-a2f4-11ec-9b69-9657f0ae95e2";
/// The file's server id, as its events carry it.
const SERVER_ID: u32 = 1;
const GTID_EVENT: u8 = 33;
const LOG_EVENT_ARTIFICIAL: u16 = 0x20;
const BINLOG_DUMP_NON_BLOCK: u16 = 1;
const BINLOG_THROUGH_GTID: u16 = 4;

/// A MySQL 8.0.28 binlog whose transactions carry GTIDs `SERVER_UUID:1-5`.
fn corpus_file() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/mysql-corpus/mysql-enum-string-set.000001");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What binlogd asked the dump for.
#[derive(Debug, PartialEq, Eq)]
enum DumpRequest {
    Position {
        file: String,
        position: u32,
        flags: u16,
    },
    Gtid {
        flags: u16,
        /// (server uuid as 16 bytes, GTID number) of every transaction named as executed.
        executed: BTreeSet<([u8; 16], u64)>,
    },
}

/// One event as the file holds it: (offset, bytes).
fn events(file: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 19 <= file.len() {
        let size = u32::from_le_bytes(file[at + 9..at + 13].try_into().expect("4 bytes")) as usize;
        out.push((at, &file[at..at + size]));
        at += size;
    }
    out
}

fn artificial_rotate(next_file: &str, position: u64) -> Vec<u8> {
    let size = 19 + 8 + next_file.len() + 4;
    let mut event = Vec::with_capacity(size);
    event.extend_from_slice(&0u32.to_le_bytes()); // timestamp 0: made up by the dump
    event.push(4); // ROTATE_EVENT
    event.extend_from_slice(&SERVER_ID.to_le_bytes());
    event.extend_from_slice(&(size as u32).to_le_bytes());
    event.extend_from_slice(&0u32.to_le_bytes()); // log_pos 0
    event.extend_from_slice(&LOG_EVENT_ARTIFICIAL.to_le_bytes());
    event.extend_from_slice(&position.to_le_bytes());
    event.extend_from_slice(next_file.as_bytes());
    let crc = crc32fast::hash(&event);
    event.extend_from_slice(&crc.to_le_bytes());
    event
}

fn parse_dump_gtid(payload: &[u8]) -> anyhow::Result<DumpRequest> {
    let u16_at = |at: usize| u16::from_le_bytes([payload[at], payload[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8"));
    let flags = u16_at(1);
    let name_len = u32_at(7) as usize;
    let mut at = 11 + name_len + 8; // name, then the position
    if flags & BINLOG_THROUGH_GTID == 0 {
        bail!("COM_BINLOG_DUMP_GTID without BINLOG_THROUGH_GTID");
    }
    let data_len = u32_at(at) as usize;
    at += 4;
    if payload.len() != at + data_len {
        bail!("GTID data of {data_len} bytes does not end the packet");
    }
    let mut executed = BTreeSet::new();
    let sids = u64_at(at);
    at += 8;
    for _ in 0..sids {
        let sid: [u8; 16] = payload[at..at + 16].try_into().expect("16");
        let intervals = u64_at(at + 16);
        at += 24;
        for _ in 0..intervals {
            let (start, end) = (u64_at(at), u64_at(at + 8)); // end is exclusive
            at += 16;
            executed.extend((start..end).map(|gno| (sid, gno)));
        }
    }
    Ok(DumpRequest::Gtid { flags, executed })
}

/// Plays MySQL 8.0.28 for one `binlogd stream` session whose server file holds
/// `file` so far, and returns what the dump asked for.
fn serve_session(listener: &TcpListener, file: &[u8]) -> anyhow::Result<DumpRequest> {
    serve(listener, file, Dump::Send)
}

/// What the peer does once binlogd asks for a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    /// Sends the file's events, then EOF.
    Send,
    /// Sends the opening ROTATE, then nothing more, and keeps the connection open: a
    /// source that vanished without closing.
    GoSilent,
}

fn serve(listener: &TcpListener, file: &[u8], dump: Dump) -> anyhow::Result<DumpRequest> {
    let mut conn = PeerConnection::accept(listener)?;
    caching_sha2_fast_login(&mut conn, "repl")?;
    loop {
        let (_, command) = conn
            .receive()?
            .context("binlogd hung up before asking for a dump")?;
        match command.first() {
            Some(0x03) => {
                let sql = String::from_utf8_lossy(&command[1..]).into_owned();
                match sql.as_str() {
                    "SELECT @@server_id, @@server_uuid" => conn.send_result_set(
                        &["@@server_id", "@@server_uuid"],
                        &[vec![Some("1"), Some(SERVER_UUID)]],
                    )?,
                    "SHOW BINARY LOGS" => conn.send_result_set(
                        &["Log_name", "File_size", "Encrypted"],
                        &[vec![
                            Some(FILE_NAME),
                            Some(&file.len().to_string()),
                            Some("No"),
                        ]],
                    )?,
                    "SELECT @@global.binlog_checksum" => {
                        conn.send_result_set(&["@@global.binlog_checksum"], &[vec![Some("CRC32")]])?
                    }
                    _ if sql.starts_with("SET ") => conn.send_ok()?,
                    _ => {
                        conn.send_err(1064, "42000", "not scripted")?;
                        bail!("unexpected query {sql:?}");
                    }
                }
            }
            Some(0x15) => conn.send_ok()?, // COM_REGISTER_SLAVE
            Some(0x12) => {
                let position = u32::from_le_bytes(command[1..5].try_into()?);
                let flags = u16::from_le_bytes(command[5..7].try_into()?);
                let name = String::from_utf8_lossy(&command[11..]).into_owned();
                conn.send(&[&[0u8][..], &artificial_rotate(&name, position.into())].concat())?;
                if dump == Dump::GoSilent {
                    // Until binlogd gives up on the connection.
                    while conn.receive().is_ok_and(|packet| packet.is_some()) {}
                    return Ok(DumpRequest::Position {
                        file: name,
                        position,
                        flags,
                    });
                }
                for (offset, event) in events(file) {
                    if offset == 4 || offset >= position as usize {
                        conn.send(&[&[0u8][..], event].concat())?;
                    }
                }
                conn.send_eof()?;
                return Ok(DumpRequest::Position {
                    file: name,
                    position,
                    flags,
                });
            }
            Some(0x1e) => {
                let request = parse_dump_gtid(&command)?;
                let DumpRequest::Gtid { executed, .. } = &request else {
                    unreachable!("parse_dump_gtid returns the GTID form")
                };
                // As MySQL's dump thread does: the file's opening events, then every
                // transaction the replica has not executed.
                conn.send(&[&[0u8][..], &artificial_rotate(FILE_NAME, 4)].concat())?;
                let mut skipping = false;
                for (_, event) in events(file) {
                    if event[4] == GTID_EVENT {
                        let sid: [u8; 16] = event[20..36].try_into()?;
                        let gno = u64::from_le_bytes(event[36..44].try_into()?);
                        skipping = executed.contains(&(sid, gno));
                    }
                    if !skipping {
                        conn.send(&[&[0u8][..], event].concat())?;
                    }
                }
                conn.send_eof()?;
                return Ok(request);
            }
            other => bail!("unexpected command {other:?}"),
        }
    }
}

/// `binlogd stream` from the scripted peer on `port` into `archive`, as user `repl`
/// with the password the peer expects.
fn stream_command(port: u16, archive: &Archive) -> std::process::Command {
    let mut command = binlogd();
    command
        .args([
            "stream",
            "--no-progress",
            "--tls-mode",
            "disabled",
            "--source",
        ])
        .arg(format!("mysql://repl@127.0.0.1:{port}"))
        .arg("--archive")
        .arg(archive.path())
        .env("BINLOGD_SOURCE_PASSWORD", "secret");
    command
}

/// Runs `binlogd stream --exit-at-end` against the peer serving `server_file` as the
/// server's file so far; returns what the dump asked for.
fn run_session(listener: &TcpListener, archive: &Archive, server_file: &[u8]) -> DumpRequest {
    let port = listener.local_addr().expect("addr").port();
    std::thread::scope(|scope| {
        let server = scope.spawn(|| serve_session(listener, server_file));
        let output = stream_command(port, archive)
            .arg("--exit-at-end")
            .output()
            .expect("run binlogd");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        server.join().expect("peer thread").expect("peer script")
    })
}

#[test]
fn a_mysql_source_is_archived_by_position_then_resumed_by_gtid_set() {
    let file = corpus_file();
    let transactions = events(&file)
        .into_iter()
        .filter(|(_, e)| e[4] == GTID_EVENT)
        .map(|(offset, _)| offset)
        .collect::<Vec<_>>();
    assert_eq!(transactions.len(), 5, "the corpus file holds GTIDs 1-5");
    // The server's file "so far" ends after the third transaction.
    let first_end = transactions[3];
    let archive = Archive::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");

    let served = run_session(&listener, &archive, &file[..first_end]);
    assert_eq!(
        served,
        DumpRequest::Position {
            file: FILE_NAME.to_owned(),
            position: 4,
            flags: BINLOG_DUMP_NON_BLOCK,
        }
    );
    let copy = archive.copy_of(FILE_NAME).expect("archived");
    assert_eq!(std::fs::read(&copy).expect("copy"), file[..first_end]);

    let served = run_session(&listener, &archive, &file);
    let sid: [u8; 16] = {
        let hex = SERVER_UUID.replace('-', "");
        std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
    };
    assert_eq!(
        served,
        DumpRequest::Gtid {
            flags: BINLOG_DUMP_NON_BLOCK | BINLOG_THROUGH_GTID,
            executed: (1..=3).map(|gno| (sid, gno)).collect(),
        },
        "the resume asks for everything after GTIDs 1-3"
    );
    assert_eq!(std::fs::read(&copy).expect("copy"), file, "byte for byte");
    let indexed: Vec<String> = archive
        .index_lines()
        .iter()
        .filter(|line| line["record"] == "transaction")
        .filter_map(|line| line["gtid"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (1..=5).map(|gno| format!("{SERVER_UUID}:{gno}")).collect();
    assert_eq!(indexed, expected, "each GTID indexed once, in order");

    // Planning works on GTID sets: from a backup holding 1-2, up to 4 is the bytes from
    // the third transaction's GTID event to the fifth's.
    let path = archive.path().display().to_string();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = stream_common::binlogd()
            .args(args)
            .args(["--archive", &path, "--output", "json"])
            .output()
            .expect("run binlogd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let from = format!("{SERVER_UUID}:1-2");
    for target in [
        ["--gtid".to_owned(), format!("{SERVER_UUID}:4")],
        ["--before-gtid".to_owned(), format!("{SERVER_UUID}:5")],
    ] {
        let plan = json(&["search", "--from-gtid", &from, &target[0], &target[1]]);
        assert_eq!(plan["transactions"], 2, "{plan}");
        assert_eq!(plan["pieces"][0]["start"], transactions[2] as u64, "{plan}");
        assert_eq!(plan["stop"]["offset"], transactions[4] as u64, "{plan}");
        assert_eq!(plan["end"]["gtids"], format!("{SERVER_UUID}:1-4"));
    }
    let timeline = json(&["timeline", "--from-gtid", &from]);
    assert_eq!(
        timeline["recoverable_to"]["gtids"],
        format!("{SERVER_UUID}:1-5")
    );
    assert_eq!(timeline["history"][0]["transactions"], 3);
}

#[test]
fn a_source_that_goes_silent_is_dropped_after_the_net_timeout_and_reconnected() {
    let file = corpus_file();
    let archive = Archive::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut streamer = stream_command(port, &archive)
        .args([
            "--heartbeat",
            "0.5",
            "--net-timeout",
            "2",
            "--max-retry-delay",
            "0.2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn binlogd");
    let started = std::time::Instant::now();
    // The first session goes silent after the dump starts; binlogd must hang up on its
    // own (the peer's read returns when it does) and come back for the second.
    serve(&listener, &file, Dump::GoSilent).expect("silent session");
    let gave_up_after = started.elapsed();
    serve(&listener, &file, Dump::Send).expect("second session");
    let _ = streamer.kill();
    let output = streamer.wait_with_output().expect("binlogd output");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        gave_up_after >= std::time::Duration::from_secs(2)
            && gave_up_after < std::time::Duration::from_secs(10),
        "binlogd gave up on the silent source after {gave_up_after:?}\n{log}"
    );
    assert!(log.contains("sent nothing for 2s"), "{log}");
}

#[test]
fn a_rotate_naming_a_path_outside_the_archive_is_refused() {
    // A source (or whoever sits on an unverified connection) whose real ROTATE names
    // the next file `../../escaped.000002`: binlogd must not create or append to it.
    let file = corpus_file();
    let (_, last) = *events(&file).last().expect("events");
    assert!(
        !matches!(last[4], 3 | 4),
        "a file still open: no STOP or ROTATE yet"
    );
    // Its next event: the ROTATE.
    let last_offset = file.len();
    let mut crafted = file.clone();
    let name = "../../escaped.000002";
    let size = 19 + 8 + name.len() + 4;
    let mut rotate = Vec::with_capacity(size);
    rotate.extend_from_slice(&last[..4]); // the last event's timestamp
    rotate.push(4); // ROTATE_EVENT, a real one: flags 0 and a position
    rotate.extend_from_slice(&SERVER_ID.to_le_bytes());
    rotate.extend_from_slice(&(size as u32).to_le_bytes());
    rotate.extend_from_slice(&((last_offset + size) as u32).to_le_bytes());
    rotate.extend_from_slice(&0u16.to_le_bytes());
    rotate.extend_from_slice(&4u64.to_le_bytes());
    rotate.extend_from_slice(name.as_bytes());
    let crc = crc32fast::hash(&rotate);
    rotate.extend_from_slice(&crc.to_le_bytes());
    crafted.extend_from_slice(&rotate);

    let archive = Archive::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let output = std::thread::scope(|scope| {
        let peer = scope.spawn(|| serve_session(&listener, &crafted));
        let output = stream_command(port, &archive)
            .arg("--exit-at-end")
            .output()
            .expect("run binlogd");
        // binlogd may hang up before the peer has sent everything.
        let _ = peer.join();
        output
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{FILE_NAME} at offset {last_offset}: the server named a binlog file \"{name}\", \
             which is not a plain file name"
        )),
        "{stderr}"
    );
    let escaped = archive.path().join("0001-server1").join(name);
    assert!(!escaped.exists(), "{} was created", escaped.display());
    assert!(
        !archive.path().join("..").join("escaped.000002").exists()
            && !archive.path().join("../..").join("escaped.000002").exists()
    );
}
