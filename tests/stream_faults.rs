//! `binlogd stream` under faults: SIGKILL at random moments, connections cut mid-event.
//! After each, the archive must still equal the server's files byte for byte, and its
//! index must list every GTID exactly once.

mod stream_common;

use binlogd_testkit::{MariaDb, MariaDbConfig, TcpProxy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stream_common::{Archive, Streamer, assert_identical_to_server};

/// A small deterministic generator: the seed is printed, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn from_time() -> Random {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes transactions until stopped, in a thread of its own.
struct Workload {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workload {
    fn start(db: &Arc<MariaDb>) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let db = db.clone();
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    db.write_workload(25).expect("workload");
                }
            }
        });
        Workload {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("workload thread");
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn server() -> Arc<MariaDb> {
    Arc::new(
        MariaDbConfig {
            max_binlog_size: Some(64 << 10),
            ..MariaDbConfig::default()
        }
        .start()
        .expect("start"),
    )
}

#[test]
fn twenty_sigkills_during_a_workload_lose_and_duplicate_nothing() {
    let db = server();
    db.write_workload(10).expect("schema");
    let archive = Archive::new();
    let workload = Workload::start(&db);
    let mut random = Random::from_time();
    for _ in 0..20 {
        let streamer = Streamer::start(&db, &archive, &[]);
        std::thread::sleep(Duration::from_millis(100 + random.below(400)));
        streamer.kill();
    }
    workload.finish();
    let streamer = Streamer::start(&db, &archive, &[]);
    archive.wait_caught_up(&db, Duration::from_secs(60));
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    streamer.stop();
    let log = archive.log();
    eprintln!(
        "{} of 20 restarts cut an unfinished transaction",
        log.matches("cut an unfinished transaction").count()
    );
    assert!(
        !log.contains("ERROR") && !log.contains("panicked"),
        "binlogd log:\n{log}"
    );
}

#[test]
fn connections_cut_mid_event_are_resumed_without_a_trace() {
    let db = server();
    db.write_workload(10).expect("schema");
    let archive = Archive::new();
    let proxy = TcpProxy::start(db.port()).expect("proxy");
    let source = format!(
        "mysql://{}@127.0.0.1:{}",
        binlogd_testkit::REPLICATION_USER,
        proxy.port()
    );
    let streamer = Streamer::start_with(&db, &archive, &[], &source);
    let workload = Workload::start(&db);
    let mut random = Random::from_time();
    for _ in 0..15 {
        // Cut the next connection after a random number of bytes: inside the handshake,
        // a packet header, an event header or an event body.
        proxy.cut_after(1 + random.below(200_000));
        std::thread::sleep(Duration::from_millis(100 + random.below(300)));
        proxy.cut_all();
    }
    workload.finish();
    archive.wait_caught_up(&db, Duration::from_secs(60));
    assert_identical_to_server(&db, &archive);
    archive.assert_index_lists_every_gtid_once(&db);
    // A cut during a backoff pause finds no connection to cut: not every cut counts.
    assert!(
        proxy.accepted() > 5,
        "binlogd reconnected {} times",
        proxy.accepted()
    );
    streamer.stop();
}
