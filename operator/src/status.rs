//! A BinlogServer's status from its running binlogd: the `/metrics` page binlogd serves
//! (Prometheus text format), read through the API server's pod proxy, so the operator needs
//! no network path of its own to the pod.
//!
//! Read from it: the last archived GTID (`binlogd_last_archived_gtid{gtid=...}`), its commit
//! time, the lag, whether binlogd is connected to the source, and whether everything durable
//! has reached the store (`binlogd_upload_backlog_bytes` 0: the last archived commit is then
//! also the last recoverable one).

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

/// Seconds since the epoch as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(seconds: f64) -> Option<String> {
    let timestamp = k8s_openapi::jiff::Timestamp::from_second(seconds.floor() as i64).ok()?;
    Some(timestamp.to_string())
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
            }
        );
        assert_eq!(
            rfc3339(1_795_441_094.0).as_deref(),
            Some("2026-11-23T13:38:14Z")
        );
    }

    #[test]
    fn a_page_without_the_metrics_reads_as_unknown() {
        assert_eq!(
            read_metrics("# nothing\nother_metric 3\n"),
            MetricsReading::default()
        );
    }
}
