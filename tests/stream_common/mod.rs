//! Helpers for the `binlogd stream` tests: run the binary against a test server, and
//! compare its archive with the server's own files.

#![allow(dead_code)] // each test binary uses its own part of this module

use binlogd_testkit::{BinlogSource, MariaDb};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn binlogd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_binlogd"))
}

/// A temporary archive directory.
pub struct Archive {
    dir: tempfile::TempDir,
}

impl Archive {
    pub fn new() -> Archive {
        Archive {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An archive directory inside `parent` (a server's instance folder, for a tool run
    /// beside a chrooted server to see it).
    pub fn new_in(parent: &Path) -> Archive {
        Archive {
            dir: tempfile::tempdir_in(parent).expect("tempdir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("binlogd.log")
    }

    /// The epoch directories, oldest first.
    pub fn epochs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// The archived copy of the server's file `name` (from the newest epoch that has it).
    pub fn copy_of(&self, name: &str) -> Option<PathBuf> {
        self.epochs()
            .into_iter()
            .rev()
            .map(|epoch| epoch.join(name))
            .find(|p| p.exists())
    }

    /// The index lines of every archived file, epoch by epoch.
    pub fn index_lines(&self) -> Vec<serde_json::Value> {
        self.read_index_lines(false)
    }

    /// The index lines; while binlogd runs, the last line of a file may be half written:
    /// `while_running` leaves it out.
    fn read_index_lines(&self, while_running: bool) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        for epoch in self.epochs() {
            let mut indexes: Vec<PathBuf> = std::fs::read_dir(&epoch)
                .expect("epoch")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".index.jsonl"))
                .collect();
            indexes.sort();
            for index in indexes {
                let text = std::fs::read_to_string(&index).expect("index");
                for line in text.lines() {
                    match serde_json::from_str(line) {
                        Ok(value) => lines.push(value),
                        Err(_) if while_running && text.ends_with(line) => {}
                        Err(e) => {
                            panic!("{}: index line is not JSON ({e}): {line}", index.display())
                        }
                    }
                }
            }
        }
        lines
    }

    /// The size in bytes of the largest transaction the index lists.
    pub fn largest_transaction(&self) -> u64 {
        self.index_lines()
            .into_iter()
            .filter(|line| line["record"] == "transaction")
            .map(|line| line["end"].as_u64().unwrap_or(0) - line["start"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// Whether the index lists every GTID of `gtids`.
    pub fn indexes_all_of(&self, gtids: &[String]) -> bool {
        let indexed: std::collections::BTreeSet<String> = self
            .read_index_lines(true)
            .into_iter()
            .filter(|line| line["record"] == "transaction")
            .filter_map(|line| line["gtid"].as_str().map(str::to_owned))
            .collect();
        gtids.iter().all(|gtid| indexed.contains(gtid))
    }

    /// Waits until every binlog file of the server is archived at its full length, and
    /// its transactions are indexed.
    pub fn wait_caught_up(&self, db: &impl BinlogSource, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let behind: Vec<String> = db
                .binlog_files()
                .expect("files")
                .into_iter()
                .filter_map(|file| {
                    let name = file.file_name()?.to_string_lossy().into_owned();
                    let want = std::fs::metadata(&file).ok()?.len();
                    let have = self
                        .copy_of(&name)
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map_or(0, |m| m.len());
                    (have != want).then(|| format!("{name}: {have}/{want}"))
                })
                .collect();
            // The index follows the data once it is durable, a moment later.
            if behind.is_empty() && self.indexes_all_of(&server_gtids(db)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the archive did not catch up: {behind:?}\nbinlogd log:\n{}\n\
                 the server's threads:\n{:?}\nits error log:\n{}",
                self.log(),
                // What the server's dump threads are doing, for a stream that stalls.
                db.query_rows("SHOW FULL PROCESSLIST"),
                db.error_log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `binlogd stream --exit-at-end`.
    pub fn run_to_end(&self, db: &impl BinlogSource, extra: &[&str]) -> Output {
        binlogd()
            .args(stream_args(db, self))
            .arg("--exit-at-end")
            .args(extra)
            .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
            .output()
            .expect("run binlogd")
    }

    /// Checks that the index names each of the server's GTIDs exactly once (not counting
    /// transactions a new primary repeats, which are marked).
    pub fn assert_index_lists_every_gtid_once(&self, db: &impl BinlogSource) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for line in self.index_lines() {
            if line["record"] == "transaction" && line["repeated"] != true {
                let gtid = line["gtid"].as_str().expect("gtid").to_owned();
                *seen.entry(gtid).or_default() += 1;
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "indexed more than once: {twice:?}");
        let expected = server_gtids(db);
        let missing: Vec<_> = expected.iter().filter(|g| !seen.contains_key(*g)).collect();
        assert!(missing.is_empty(), "not indexed: {missing:?}");
        assert_eq!(
            seen.len(),
            expected.len(),
            "the index has GTIDs the server lacks"
        );
    }
}

/// Every GTID in the server's binlogs, from the server's own GTID state (not from reading
/// its files): `@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL.
pub fn server_gtids(db: &impl BinlogSource) -> Vec<String> {
    db.binlog_gtids().expect("the server's GTIDs")
}

pub fn stream_args(db: &impl BinlogSource, archive: &Archive) -> Vec<String> {
    vec![
        "stream".into(),
        "--source".into(),
        db.replication_url(),
        "--archive".into(),
        archive.path().display().to_string(),
        "--no-progress".into(),
        "--max-retry-delay".into(),
        "0.5".into(),
    ]
}

/// Compares every binlog file of the server with the archived copy, byte for byte.
pub fn assert_identical_to_server(db: &impl BinlogSource, archive: &Archive) {
    for file in db.binlog_files().expect("files") {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let ours = archive
            .copy_of(&name)
            .unwrap_or_else(|| panic!("{name} is not archived"));
        assert_same_bytes(&file, &ours);
    }
}

pub fn assert_same_bytes(server: &Path, ours: &Path) {
    let a = std::fs::read(server).expect("server file");
    let b = std::fs::read(ours).expect("archived file");
    if a != b {
        let at = a.iter().zip(&b).position(|(x, y)| x != y);
        panic!(
            "{} and {} differ: sizes {} and {}, first difference at {:?}",
            server.display(),
            ours.display(),
            a.len(),
            b.len(),
            at
        );
    }
}

/// `binlogd stream` running in the background; killed when dropped.
pub struct Streamer {
    child: Child,
}

impl Streamer {
    pub fn start(db: &impl BinlogSource, archive: &Archive, extra: &[&str]) -> Streamer {
        Streamer::start_with(db, archive, extra, &db.replication_url())
    }

    /// Streams from `source` (e.g. a proxy in front of `db`).
    pub fn start_with(
        db: &impl BinlogSource,
        archive: &Archive,
        extra: &[&str],
        source: &str,
    ) -> Streamer {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(archive.log_path())
            .expect("log");
        let mut args = stream_args(db, archive);
        args[2] = source.to_owned();
        let child = binlogd()
            .args(args)
            .args(extra)
            .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
            .env("BINLOGD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn binlogd");
        Streamer { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and a clean exit expected.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "binlogd exited with {status}");
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server's binlogs stop growing: after a rotation MariaDB writes a
/// BINLOG_CHECKPOINT event into the new file from a background thread, a little later.
pub fn wait_for_quiet_binlogs(db: &impl BinlogSource) {
    let sizes = || -> Vec<u64> {
        db.binlog_files()
            .expect("files")
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .collect()
    };
    // The checkpoint waits for InnoDB to make the previous file's commits durable, which
    // takes a while on a busy machine: ask for a second of stillness.
    let mut last = sizes();
    let mut still = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(250));
        let now = sizes();
        still = if now == last { still + 1 } else { 0 };
        if still == 4 {
            return;
        }
        last = now;
    }
}

/// A bare HTTP/1.0 GET: status and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A small deterministic generator: the seed is printed, so a failure can be replayed.
pub struct Random(u64);

impl Random {
    pub fn from_time() -> Random {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes transactions until stopped, in a thread of its own.
pub struct Workload {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workload {
    pub fn start(db: &std::sync::Arc<MariaDb>) -> Workload {
        Workload::start_paced(db, Duration::ZERO)
    }

    /// Like [`Workload::start`], resting `pause` between batches of 25 transactions.
    pub fn start_paced(db: &std::sync::Arc<MariaDb>, pause: Duration) -> Workload {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let db = db.clone();
            let stop = stop.clone();
            move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    db.write_workload(25).expect("workload");
                    std::thread::sleep(pause);
                }
            }
        });
        Workload {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("workload thread");
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The tables `statement_shapes_sql` writes besides `binlogd_test.workload`, and a trigger
/// on it: run once, after the workload's schema exists. MariaDB and MySQL alike.
pub const STATEMENT_SHAPES_SCHEMA: &str =
    "CREATE TABLE binlogd_test.audit (id INT AUTO_INCREMENT PRIMARY KEY, k INT,
       at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6));
     CREATE TRIGGER binlogd_test.audited AFTER INSERT ON binlogd_test.workload
       FOR EACH ROW INSERT INTO binlogd_test.audit (k) VALUES (NEW.k);
     CREATE TABLE binlogd_test.loaded (id INT PRIMARY KEY, name VARCHAR(40), note TEXT);";

/// The rows `LOAD DATA` reads in round `round` (tab-separated, 50 lines).
pub fn load_file_rows(round: usize) -> String {
    (0..50)
        .map(|i| format!("{}\tname-{i}\tnote {round} {i}\n", round * 1000 + i))
        .collect()
}

/// One of each statement shape that changes what a binlog holds, as applications write
/// them: a savepoint rolled back to, XA, a temporary table, `LOAD DATA` of `load_file` (a
/// path as the server names it). With `mysql_tag`, the first transaction's GTID is tagged
/// (MySQL 9.x's `gtid_next='AUTOMATIC:tag'`).
pub fn statement_shapes_sql(round: usize, load_file: &str, mysql_tag: Option<&str>) -> String {
    let (tag_on, tag_off) = match mysql_tag {
        Some(tag) => (
            format!("SET gtid_next = 'AUTOMATIC:{tag}';"),
            "SET gtid_next = 'AUTOMATIC';",
        ),
        None => (String::new(), ""),
    };
    format!(
        "{tag_on} BEGIN; INSERT INTO binlogd_test.workload (k, c) VALUES ({round}, 'savepoint');
           SAVEPOINT s1; INSERT INTO binlogd_test.workload (k, c) VALUES ({round}, 'rolled back');
           ROLLBACK TO SAVEPOINT s1; UPDATE binlogd_test.workload SET c = 'kept' WHERE k = {round}; COMMIT;
         {tag_off}
         XA START 'xa-{round}'; INSERT INTO binlogd_test.workload (k, c) VALUES ({round}, 'xa');
           XA END 'xa-{round}'; XA PREPARE 'xa-{round}'; XA COMMIT 'xa-{round}';
         CREATE TEMPORARY TABLE binlogd_test.scratch (k INT);
           INSERT INTO binlogd_test.scratch VALUES ({round}), ({round} + 1);
           INSERT INTO binlogd_test.workload (k, c) SELECT k, 'from a temporary table' FROM binlogd_test.scratch;
           DROP TEMPORARY TABLE binlogd_test.scratch;
         LOAD DATA INFILE '{load_file}' INTO TABLE binlogd_test.loaded;"
    )
}

/// One round of what applications write: `write_workload`'s small transactions, and one
/// of each statement shape ([`statement_shapes_sql`]); round 0 creates their schema.
pub fn application_round(db: &impl BinlogSource, round: usize, mysql_tag: Option<&str>) {
    db.write_workload(40).expect("small transactions");
    if round == 0 {
        db.sql(STATEMENT_SHAPES_SCHEMA).expect("schema");
    }
    // LOAD DATA reads a file the server can see: one in the instance's folder.
    let file = db.dir().join(format!("load-{round}.tsv"));
    std::fs::write(&file, load_file_rows(round)).expect("load file");
    let file = db.server_path(&file).display().to_string();
    db.sql(&statement_shapes_sql(round, &file, mysql_tag))
        .expect("statement shapes");
}

/// A child process that is killed and waited for when dropped, also when a test panics:
/// nothing a test starts outlives it.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
