//! Helpers for the `binlogd serve` tests: an account file, and the server run in the
//! background over an archive.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::stream_common::{Archive, binlogd};

/// The account replicas log in to `binlogd serve` with.
pub const USER: &str = "replica";
pub const PASSWORD: &str = "Serve-Secret-7";

/// A users file with [`USER`], written by `binlogd serve-user`.
pub fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users");
    let mut child = binlogd()
        .args(["serve-user", USER, "--users-file"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve-user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    let output = child.wait_with_output().expect("serve-user");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// `binlogd serve` in the background; killed when dropped.
pub struct Serve {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Serve {
    pub fn start(archive: &Archive, users: &Path, extra: &[&str]) -> Serve {
        let log = archive.log_path().with_file_name("serve.log");
        Serve::start_with(
            archive.path().to_str().expect("utf-8"),
            users,
            extra,
            Vec::new(),
            log,
        )
    }

    /// Serves the archive `location` names (a directory or `s3://...`), with `env` for
    /// the store's credentials, logging to `log`.
    pub fn start_with(
        location: &str,
        users: &Path,
        extra: &[&str],
        env: Vec<(&str, String)>,
        log: PathBuf,
    ) -> Serve {
        let port = binlogd_testkit::free_port().expect("port");
        let child = binlogd()
            .args(["serve", "--archive", location])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--users-file"])
            .arg(users)
            .args(extra)
            .envs(env)
            // BINLOGD_TEST_SERVE_LOG=debug shows every session in a failing test's output.
            .env(
                "BINLOGD_LOG",
                std::env::var("BINLOGD_TEST_SERVE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn binlogd serve");
        let serve = Serve { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not listen:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and a clean exit expected.
    pub fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "serve exited with {status}:\n{}",
            self.log()
        );
        if std::env::var_os("BINLOGD_TEST_SHOW_LOG").is_some() {
            eprintln!("serve log:\n{}", self.log());
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new MariaDB replica (server id 2, its defaults) of `serve`, by GTID, with `extra`
/// `CHANGE MASTER TO` options, caught up to `gtid_pos`; on a timeout the panic shows the
/// replica's status and serve's log.
pub fn replica_caught_up(serve: &Serve, gtid_pos: &str, extra: &str) -> binlogd_testkit::MariaDb {
    let replica = binlogd_testkit::MariaDbConfig {
        server_id: 2,
        ..binlogd_testkit::MariaDbConfig::default()
    }
    .start()
    .expect("replica");
    replica
        .replicate_from_port(serve.port, USER, PASSWORD, extra)
        .expect("CHANGE MASTER");
    wait_caught_up(&replica, serve, gtid_pos);
    replica
}

/// Waits (90 s at most) until `replica` of `serve` has applied `gtid_pos`.
pub fn wait_caught_up(replica: &binlogd_testkit::MariaDb, serve: &Serve, gtid_pos: &str) {
    if let Err(e) = replica.wait_for_gtid(gtid_pos, Duration::from_secs(90)) {
        let status = replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default();
        panic!("{e:#}\n{status}\nserve log:\n{}", serve.log());
    }
}
