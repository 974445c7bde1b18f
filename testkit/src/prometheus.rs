//! A private Prometheus server (Debian's `prometheus` package) on a free loopback port: it
//! scrapes the targets a test names as job `binlogd` and evaluates the rule files it is
//! given, every second, so that an alert's `for:` of a few seconds plays out in a test.
//!
//! Read through its HTTP API (<https://prometheus.io/docs/prometheus/latest/querying/api/>):
//! `/api/v1/query` for an expression (Prometheus' own parser judges it) and
//! `/api/v1/alerts` for what fires.

use crate::process::{ChildGuard, free_port, wait_until};
use crate::reap::{new_instance_dir, record_server_pid};
use crate::tools::{Tool, find_tool};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus. Dropping it stops it and removes its data.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    /// Held for its drop, which stops the server.
    _server: ChildGuard,
    dir: tempfile::TempDir,
}

/// An alert as `/api/v1/alerts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) as job `binlogd` every second,
    /// with `rule_files` evaluated every second; waits until it is ready.
    pub fn start(targets: &[String], rule_files: &[PathBuf]) -> Result<Prometheus> {
        let program = find_tool(Tool::Prometheus)?;
        let dir = new_instance_dir("prometheus-")?;
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|item| format!("{item:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = rule_files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: binlogd\n    static_configs:\n      - targets: [{}]\n",
            quoted(rules),
            quoted(targets.to_vec())
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).context("write prometheus.yml")?;
        let port = free_port()?;
        let log = fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start prometheus")?;
        let mut server = ChildGuard::new(child, format!("prometheus on port {port}"));
        record_server_pid(dir.path(), server.pid())?;
        let address = format!("127.0.0.1:{port}");
        wait_until(&mut server, Duration::from_secs(60), "prometheus", || {
            Ok(get(&address, "/-/ready").is_ok_and(|(status, _)| status == 200))
        })
        .with_context(|| format!("prometheus did not start:\n{}", log_tail(&dir)))?;
        Ok(Prometheus {
            port,
            _server: server,
            dir,
        })
    }

    /// The address of its web UI and API.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Evaluates `expr` now: the result vector, or Prometheus' own error (a parse error
    /// names the position).
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>> {
        let (_, body) = get(
            &self.address(),
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        if answer["status"] != "success" {
            bail!("{expr}: {} ({})", answer["error"], answer["errorType"]);
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The alerts pending or firing now.
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        let (_, body) = get(&self.address(), "/api/v1/alerts")?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        let strings = |value: &serde_json::Value| -> BTreeMap<String, String> {
            value
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|alert| {
                let labels = strings(&alert["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: alert["state"].as_str().unwrap_or_default().to_owned(),
                    annotations: strings(&alert["annotations"]),
                    labels,
                }
            })
            .collect())
    }

    /// The alert named `name` once it fires; fails after `timeout`, saying what did fire.
    pub fn wait_for_firing(&self, name: &str, timeout: Duration) -> Result<Alert> {
        let deadline = Instant::now() + timeout;
        loop {
            // A Prometheus that died fails here: its API no longer answers.
            let alerts = self.alerts()?;
            if let Some(alert) = alerts
                .iter()
                .find(|a| a.name == name && a.state == "firing")
            {
                return Ok(alert.clone());
            }
            if Instant::now() >= deadline {
                bail!("{name} did not fire within {timeout:?}; the alerts were {alerts:#?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the alert named `name` neither fires nor is pending.
    pub fn wait_for_resolved(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // A Prometheus that died fails here: its API no longer answers.
            let alerts = self.alerts()?;
            if !alerts.iter().any(|a| a.name == name) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{name} still active after {timeout:?}: {alerts:#?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }
}

fn log_tail(dir: &tempfile::TempDir) -> String {
    let log = fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A bare HTTP/1.0 GET on loopback: status and body.
fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A query string value: everything but unreserved characters as %XX.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
