//! A BinlogServer's status from its running binlogd: the `/metrics` page binlogd serves
//! (Prometheus text format), read through the API server's pod proxy, so the operator needs
//! no network path of its own to the pod.
//!
//! Read from it: the last archived GTID (`binlogd_last_archived_gtid{gtid=...}`), its commit
//! time, the lag, whether binlogd is connected to the source, and the last recoverable
//! time (`binlogd_recoverable_until_timestamp_seconds`; from an older binlogd, the last
//! archived commit once `binlogd_upload_backlog_bytes` is 0).
//!
//! A PointInTimeRestore's status comes the same way from its Job: `binlogd restore
//! --log-format json` logs `planned` (files, bytes, transactions, target GTID and time),
//! `relay logs staged` (by replication: `serving the archive to the server up to the
//! target`), `applying` (bytes done of the total, every 5 s) and `restored`.

/// What one look at binlogd's metrics says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsReading {
    /// The GTID of the last archived transaction.
    pub last_gtid: Option<String>,
    /// Its commit time, in seconds since the epoch.
    pub last_commit_seconds: Option<f64>,
    /// Seconds behind the source.
    pub lag_seconds: Option<f64>,
    /// Whether binlogd streams from the source now.
    pub connected: bool,
    /// Durable bytes not yet in the object store (`None` when not reported).
    pub upload_backlog_bytes: Option<f64>,
    /// Everything committed before this time (seconds since the epoch) can be restored
    /// (`binlogd_recoverable_until_timestamp_seconds`; `None` from a binlogd too old to
    /// say).
    pub recoverable_until_seconds: Option<f64>,
    /// The server followed: `server 1 at 10.0.0.5:3306 (10.11.19-MariaDB-log)`.
    pub source: Option<String>,
}

/// Reads the metrics binlogd serves. Lines it does not know are ignored, so a newer
/// binlogd's page still reads.
pub fn read_metrics(text: &str) -> MetricsReading {
    let mut reading = MetricsReading::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let number = value.parse::<f64>().ok();
        match name {
            "binlogd_last_archived_commit_timestamp_seconds" => {
                reading.last_commit_seconds = number.filter(|&n| n > 0.0);
            }
            "binlogd_lag_seconds" => reading.lag_seconds = number,
            "binlogd_source_connected" => reading.connected = number == Some(1.0),
            "binlogd_upload_backlog_bytes" => reading.upload_backlog_bytes = number,
            "binlogd_recoverable_until_timestamp_seconds" => {
                reading.recoverable_until_seconds = number.filter(|&n| n > 0.0);
            }
            _ if name.starts_with("binlogd_source{") && number == Some(1.0) => {
                let label = |key: &str| {
                    name.split(&format!("{key}=\""))
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .unwrap_or("?")
                        .to_owned()
                };
                reading.source = Some(format!(
                    "server {} at {} ({})",
                    label("server_id"),
                    label("address"),
                    label("version")
                ));
            }
            _ => {
                if let Some(labels) = name
                    .strip_prefix("binlogd_last_archived_gtid{")
                    .and_then(|rest| rest.strip_suffix('}'))
                    && number == Some(1.0)
                {
                    reading.last_gtid = labels
                        .strip_prefix("gtid=\"")
                        .and_then(|g| g.strip_suffix('"'))
                        .map(str::to_owned);
                }
            }
        }
    }
    reading
}

/// The replicas `binlogd serve` reports at `/metrics` (`binlogd_serve_replica_*`, one
/// series per replica, keyed by peer and `server_id`), in the order of their peers.
/// Lines it does not know are ignored.
pub fn read_serve_metrics(text: &str) -> Vec<crate::crd::ServedReplica> {
    use std::collections::BTreeMap;
    let mut replicas: BTreeMap<(String, String), crate::crd::ServedReplica> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series
            .split_once('{')
            .and_then(|(name, rest)| Some((name, rest.strip_suffix('}')?)))
        else {
            continue;
        };
        let Ok(number) = value.parse::<f64>() else {
            continue;
        };
        let labels = prometheus_labels(labels);
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        let key = (label("peer"), label("server_id"));
        let entry = || crate::crd::ServedReplica {
            peer: label("peer"),
            server_id: label("server_id").parse().unwrap_or(0),
            ..crate::crd::ServedReplica::default()
        };
        match name {
            "binlogd_serve_replica_sent_bytes" => {
                let replica = replicas.entry(key).or_insert_with(entry);
                replica.user = label("user");
                replica.sent_bytes = number as u64;
            }
            "binlogd_serve_replica_lag_seconds" => {
                let replica = replicas.entry(key).or_insert_with(entry);
                replica.user = label("user");
                replica.lag_seconds = number;
            }
            "binlogd_serve_replica_position" => {
                let replica = replicas.entry(key).or_insert_with(entry);
                replica.file = label("file");
                replica.position = number as u64;
            }
            _ => {}
        }
    }
    replicas.into_values().collect()
}

/// `a="x",b="y"` (Prometheus' text format: `\\`, `\"` and `\n` escaped) as a map.
fn prometheus_labels(text: &str) -> std::collections::HashMap<String, String> {
    let mut labels = std::collections::HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// A commit time as binlogd exports it (seconds since 1970, fractional for MySQL's µs
/// timestamps), in RFC 3339 as status fields and Events show times.
pub fn commit_time(seconds: f64) -> String {
    let micros = (seconds * 1e6).round();
    (micros.is_finite() && micros.abs() < 9.0e15)
        .then(|| jiff::Timestamp::from_microsecond(micros as i64).ok())
        .flatten()
        .map_or_else(|| format!("{seconds} s since 1970"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_real_binlogd_serves() {
        let text = include_str!("../../testdata/binlogd-metrics.txt");
        let reading = read_metrics(text);
        assert_eq!(
            reading,
            MetricsReading {
                last_gtid: Some("0-1-5".into()),
                last_commit_seconds: Some(1_795_441_094.0),
                lag_seconds: Some(0.0),
                connected: true,
                upload_backlog_bytes: Some(0.0),
                recoverable_until_seconds: None,
                source: Some("server 1 at 127.0.0.1:33999 (10.11.19-MariaDB-0+deb12u1-log)".into()),
            }
        );
        assert_eq!(commit_time(1_795_441_094.0), "2026-11-23T13:38:14Z");
        assert_eq!(commit_time(1_795_441_094.25), "2026-11-23T13:38:14.25Z");
        assert_eq!(
            commit_time(f64::NAN),
            "NaN s since 1970",
            "what binlogd never exports is shown as it came"
        );
    }

    /// A binlogd that says its recoverable time (the lines `binlogd stream` serves since
    /// it has the metric): that is the time read, not the last commit's.
    #[test]
    fn reads_the_recoverable_time() {
        let text = format!(
            "{}# HELP binlogd_recoverable_until_timestamp_seconds Everything ...\n\
             # TYPE binlogd_recoverable_until_timestamp_seconds gauge\n\
             binlogd_recoverable_until_timestamp_seconds 1795441150.5\n",
            include_str!("../../testdata/binlogd-metrics.txt")
        );
        let reading = read_metrics(&text);
        assert_eq!(reading.recoverable_until_seconds, Some(1_795_441_150.5));
        assert_eq!(reading.last_commit_seconds, Some(1_795_441_094.0));
    }

    #[test]
    fn reads_the_replicas_a_real_binlogd_serve_reports() {
        let text = include_str!("../../testdata/binlogd-serve-metrics.txt");
        let replicas = read_serve_metrics(text);
        assert_eq!(
            replicas,
            [crate::crd::ServedReplica {
                peer: "127.0.0.1:40820".into(),
                user: "replica".into(),
                server_id: 2,
                file: "mariadb-bin.000013".into(),
                position: 30214,
                lag_seconds: 0.0,
                sent_bytes: 818_696,
            }]
        );
        // A second replica, with a label value that needs escaping, is its own entry.
        let more = format!(
            "{text}binlogd_serve_replica_sent_bytes{{peer=\"10.0.0.9:3306\",user=\"a\\\"b\",server_id=\"7\"}} 5\n\
             binlogd_serve_replica_position{{peer=\"10.0.0.9:3306\",server_id=\"7\",file=\"b.000002\"}} 99\n"
        );
        let replicas = read_serve_metrics(&more);
        assert_eq!(replicas.len(), 2);
        // In the order of their peers.
        assert_eq!(
            (
                replicas[0].user.as_str(),
                replicas[0].server_id,
                replicas[0].position
            ),
            ("a\"b", 7, 99)
        );
        assert_eq!(replicas[1].server_id, 2);
        assert!(read_serve_metrics(include_str!("../../testdata/binlogd-metrics.txt")).is_empty());
    }

    #[test]
    fn a_restore_short_of_its_target_is_read_as_such() {
        let line = |reached: bool| {
            format!(
                "{{\"fields\":{{\"message\":\"restored\",\"reached_gtid\":\"0-1-9\",\
                 \"reached_time\":\"-\",\"asked\":\"time 2099-01-01T00:00:00Z\",\
                 \"target_reached\":{reached}}}}}"
            )
        };
        let short = read_restore_log(&line(false));
        assert_eq!(short.reached, Some(("0-1-9".to_owned(), None)));
        assert_eq!(short.short_of.as_deref(), Some("time 2099-01-01T00:00:00Z"));
        assert_eq!(read_restore_log(&line(true)).short_of, None);
    }

    #[test]
    fn a_page_without_the_metrics_reads_as_unknown() {
        assert_eq!(
            read_metrics("# nothing\nother_metric 3\n"),
            MetricsReading::default()
        );
    }
}

/// What a restore Job's log (binlogd restore with `--log-format json`) says so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreLog {
    /// The plan, once made.
    pub plan: Option<crate::crd::PlanSummary>,
    /// Whether the applier runs: relay logs staged, or replication begun.
    pub staged: bool,
    /// Bytes of the plan applied, and its total, from the last progress line.
    pub applied_bytes: Option<(u64, u64)>,
    /// The GTID state and commit time reached, once restored.
    pub reached: Option<(String, Option<String>)>,
    /// The restore ended short of the target asked (the archive ends first, and the
    /// restore was not strict): what it says the target was.
    pub short_of: Option<String>,
}

impl RestoreLog {
    /// How much is done, as the PROGRESS column shows it.
    pub fn progress(&self) -> Option<String> {
        if self.reached.is_some() {
            return Some("100%".into());
        }
        let (done, total) = self.applied_bytes?;
        (total > 0).then(|| format!("{}%", (done.min(total) * 100) / total))
    }
}

/// Reads binlogd restore's JSON log lines; other lines (a server's, text) are skipped.
pub fn read_restore_log(text: &str) -> RestoreLog {
    let mut log = RestoreLog::default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &value["fields"];
        let text = |name: &str| fields[name].as_str().map(str::to_owned);
        let time = |name: &str| text(name).filter(|t| t != "-");
        match fields["message"].as_str() {
            Some("planned") => {
                log.plan = Some(crate::crd::PlanSummary {
                    files: fields["files"].as_u64().unwrap_or(0) as u32,
                    bytes: fields["bytes"].as_u64().unwrap_or(0),
                    transactions: fields["transactions"].as_u64().unwrap_or(0),
                    target_gtid: text("target_gtid").unwrap_or_default(),
                    target_time: time("target_time"),
                });
            }
            // Applying begins: after staging, or at once by replication.
            Some("relay logs staged" | "serving the archive to the server up to the target") => {
                log.staged = true;
            }
            Some("applying") => {
                if let (Some(done), Some(total)) = (
                    fields["done_bytes"].as_u64(),
                    fields["total_bytes"].as_u64(),
                ) {
                    log.applied_bytes = Some((done, total));
                }
            }
            Some("restored") => {
                log.reached = Some((
                    text("reached_gtid").unwrap_or_default(),
                    time("reached_time"),
                ));
                if fields["target_reached"] == false {
                    log.short_of = Some(text("asked").unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    log
}
