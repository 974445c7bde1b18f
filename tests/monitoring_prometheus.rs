//! deploy/monitoring/ against real things: Debian's Prometheus scrapes a real `binlogd
//! stream` that follows a real MariaDB (its defaults) into an S3 archive (with retention),
//! and evaluates the shipped alerting rules. The source stops, then the store fails: each
//! time the alert for it fires, and resolves once the thing is back. Then every expression
//! of the Grafana dashboard is evaluated by the same Prometheus against the same binlogd:
//! it parses, and the metrics it names have data.
//!
//! The rules are used as shipped except their `for:` waits, cut to two seconds so that
//! the test takes seconds rather than the minutes an operator wants.

mod stream_common;

use binlogd_testkit::{Faults, HttpFaultProxy, MariaDb, Prometheus, S3Server};
use std::path::{Path, PathBuf};
use std::time::Duration;
use stream_common::binlogd;

const BUCKET: &str = "monitoring";

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring")
}

/// binlogd-rules.yaml with every `for:` cut to 2 s, written into `dir`.
fn rules_with_short_waits(dir: &Path) -> PathBuf {
    let shipped =
        std::fs::read_to_string(monitoring_dir().join("binlogd-rules.yaml")).expect("rules");
    let waits = regex::Regex::new(r"(?m)^(\s+for:) \S+$").expect("regex");
    let short = waits.replace_all(&shipped, "$1 2s");
    assert!(short.matches("for: 2s").count() >= 10, "{short}");
    let path = dir.join("binlogd-rules.yaml");
    std::fs::write(&path, short.as_ref()).expect("write the rules");
    path
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `expr` until it returns a series; fails after `timeout` with `context()`.
fn wait_for_series(
    prometheus: &Prometheus,
    expr: &str,
    timeout: Duration,
    context: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match prometheus.query(expr) {
            Ok(result) if !result.is_empty() => return,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{expr} returned nothing within {timeout:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn alerts_fire_when_the_source_or_the_store_breaks_and_resolve_when_it_is_back() {
    let mut db = MariaDb::start_default().expect("start MariaDB");
    db.write_workload(20).expect("workload");
    let s3 = S3Server::start_from_env().expect("start the S3 server");
    s3.create_bucket(BUCKET).expect("bucket");
    let store = HttpFaultProxy::start(s3.port(), Faults::default()).expect("proxy");
    let work = tempfile::tempdir().expect("work dir");
    let spool = work.path().join("spool");
    let log_path = work.path().join("binlogd.log");
    let metrics_addr = format!("127.0.0.1:{}", binlogd_testkit::free_port().expect("port"));
    let _streamer = KillOnDrop(
        binlogd()
            .args(["stream", "--no-progress", "--source"])
            .arg(db.replication_url())
            .args(["--archive", &format!("s3://{BUCKET}/prod"), "--spool-dir"])
            .arg(&spool)
            .args(["--s3-endpoint", &store.endpoint()])
            .args(["--checkpoint-interval", "1", "--max-retry-delay", "1"])
            .args(["--retention", "30d", "--purge-interval", "5"])
            .args(["--metrics-addr", &metrics_addr])
            .env("BINLOGD_SOURCE_PASSWORD", db.replication_password())
            .envs(s3.aws_env())
            .env("AWS_ENDPOINT_URL", store.endpoint())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("spawn binlogd"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let rules = rules_with_short_waits(work.path());
    let prometheus =
        Prometheus::start(std::slice::from_ref(&metrics_addr), &[rules]).expect("start Prometheus");
    let both = || {
        format!(
            "binlogd:\n{}\nprometheus:\n{}",
            log(),
            prometheus.log_tail()
        )
    };

    // Healthy: scraped, connected, uploading, recoverable to about now, and nothing fires.
    let timeout = Duration::from_secs(60);
    wait_for_series(&prometheus, r#"up{job="binlogd"} == 1"#, timeout, both);
    wait_for_series(&prometheus, "binlogd_source_connected == 1", timeout, both);
    wait_for_series(
        &prometheus,
        "binlogd_last_checkpoint_timestamp_seconds > 0",
        timeout,
        both,
    );
    wait_for_series(
        &prometheus,
        "binlogd_last_purge_timestamp_seconds > 0",
        timeout,
        both,
    );
    wait_for_series(
        &prometheus,
        "binlogd_lease_valid_until_timestamp_seconds > time()",
        timeout,
        both,
    );
    wait_for_series(
        &prometheus,
        "time() - binlogd_recoverable_until_timestamp_seconds < 10",
        timeout,
        both,
    );
    // Longer than every (shortened) wait: anything that would fire has.
    std::thread::sleep(Duration::from_secs(5));
    let alerts = prometheus.alerts().expect("alerts");
    // The one alert about the machine rather than binlogd: it fires exactly when this
    // machine's disk is in fact under 10% free.
    let disk_nearly_full = !prometheus
        .query("binlogd_spool_disk_available_bytes / binlogd_spool_disk_size_bytes < 0.10")
        .expect("query")
        .is_empty();
    let disk_alert = alerts.iter().any(|a| a.name == "BinlogdSpoolDiskFull");
    assert_eq!(disk_alert, disk_nearly_full, "{alerts:#?}");
    let about_binlogd = |alerts: Vec<binlogd_testkit::Alert>| -> Vec<binlogd_testkit::Alert> {
        alerts
            .into_iter()
            .filter(|a| !a.name.starts_with("BinlogdSpoolDisk"))
            .collect()
    };
    let alerts = about_binlogd(alerts);
    assert!(
        alerts.is_empty(),
        "alerts while healthy: {alerts:#?}\n{}",
        both()
    );

    // The source stops: disconnected fires, naming the instance and what to do.
    db.shutdown().expect("stop MariaDB");
    let broken = std::time::Instant::now();
    let alert = prometheus
        .wait_for_firing("BinlogdSourceDisconnected", timeout)
        .unwrap_or_else(|e| panic!("{e}\n{}", both()));
    eprintln!(
        "BinlogdSourceDisconnected fired {:.1} s after the source stopped (its for: cut to 2 s)",
        broken.elapsed().as_secs_f64()
    );
    assert_eq!(alert.labels["instance"], metrics_addr);
    assert_eq!(alert.labels["severity"], "critical");
    assert!(
        alert.annotations["description"].contains("reconnecting"),
        "{alert:?}"
    );
    // It comes back: binlogd reconnects and the alert resolves.
    db.start_again().expect("start MariaDB again");
    db.write_workload(5).expect("workload after the restart");
    prometheus
        .wait_for_resolved("BinlogdSourceDisconnected", timeout)
        .unwrap_or_else(|e| panic!("{e}\n{}", both()));

    // The store fails every request: the store alert fires, and the backlog is shown.
    store.set_faults(Faults {
        fail_one_in: 1,
        ..Faults::default()
    });
    db.write_workload(5)
        .expect("workload while the store fails");
    let broken = std::time::Instant::now();
    let alert = prometheus
        .wait_for_firing("BinlogdObjectStoreFailing", timeout)
        .unwrap_or_else(|e| panic!("{e}\n{}", both()));
    eprintln!(
        "BinlogdObjectStoreFailing fired {:.1} s after the store began refusing (its for: cut to 2 s)",
        broken.elapsed().as_secs_f64()
    );
    assert_eq!(alert.labels["instance"], metrics_addr);
    wait_for_series(
        &prometheus,
        "binlogd_upload_backlog_bytes > 0",
        timeout,
        both,
    );
    // It answers again: the spool drains and the alert resolves.
    store.set_faults(Faults::default());
    prometheus
        .wait_for_resolved("BinlogdObjectStoreFailing", timeout)
        .unwrap_or_else(|e| panic!("{e}\n{}", both()));
    wait_for_series(
        &prometheus,
        "binlogd_upload_backlog_bytes == 0",
        timeout,
        both,
    );
    let alerts = about_binlogd(prometheus.alerts().expect("alerts"));
    assert!(alerts.is_empty(), "alerts once all is back: {alerts:#?}");

    // The dashboard: every expression, as Grafana would send it, parses (Prometheus' own
    // parser) and returns data from this binlogd.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("grafana-binlogd.json")).expect("read"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 15, "{exprs:?}");
    for expr in &exprs {
        let promql = grafana_to_promql(expr);
        let result = prometheus
            .query(&promql)
            .unwrap_or_else(|e| panic!("the dashboard's {expr:?} does not parse: {e}"));
        // ALERTS is Prometheus' own series, empty while nothing fires.
        if !promql.starts_with("ALERTS") {
            assert!(
                !result.is_empty(),
                "the dashboard's {expr:?} has no data from a running binlogd"
            );
        }
    }
    assert!(!log().contains("panicked"), "{}", log());
}

/// Every PromQL expression of a Grafana dashboard (panel targets, variables, annotations).
fn collect_exprs(node: &serde_json::Value, found: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(expr)) => {
                        found.push(expr.clone())
                    }
                    _ => collect_exprs(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, found)),
        _ => {}
    }
}

/// What Grafana sends for `expr`: its variables filled in as "all instances" and a one-minute
/// rate window; `label_values(METRIC, LABEL)` (a Grafana function) as the METRIC it reads.
fn grafana_to_promql(expr: &str) -> String {
    if let Some(inner) = expr
        .strip_prefix("label_values(")
        .and_then(|rest| rest.split_once(','))
    {
        return inner.0.trim().to_owned();
    }
    expr.replace("$instance", ".*")
        .replace("$__rate_interval", "1m")
}
