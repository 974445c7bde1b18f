//! What `binlogd restore` shows while and after it replays: progress bars on a terminal,
//! else a log line every 5 s (a restore Job's log is what the operator reads), and the
//! `restored` line that says what was reached against what was asked.

use binlogd_restore::apply::Progress;
use binlogd_restore::replay::Observer;
use binlogd_storage::plan::{Plan, StopAt, format_micros};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar over `total` bytes when stderr is a terminal.
pub fn progress_bar(total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

/// A replay's progress as people see it: bars on a terminal, else a log line every 5 s
/// (a restore Job's log is read by the operator).
pub struct Shown {
    staging: Option<indicatif::ProgressBar>,
    applying: Option<indicatif::ProgressBar>,
    total: u64,
    last_report: Instant,
}

impl Shown {
    /// For a replay of `total` bytes: the staging bar first.
    pub fn new(total: u64) -> Shown {
        Shown {
            staging: progress_bar(total, "staging"),
            applying: None,
            total,
            last_report: Instant::now(),
        }
    }

    /// For a replay of `total` bytes with nothing staged (by replication): applying only.
    pub fn applying_only(total: u64) -> Shown {
        Shown {
            staging: None,
            applying: progress_bar(total, "applying"),
            total,
            last_report: Instant::now(),
        }
    }

    /// Takes the bars off the terminal.
    pub fn clear(&self) {
        for bar in [&self.staging, &self.applying].into_iter().flatten() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Shown {
    fn staged(&mut self, file: &str, bytes: u64) {
        match &self.staging {
            Some(bar) => bar.inc(bytes),
            None => tracing::debug!(file, bytes, "staged"),
        }
    }

    fn staging_done(&mut self, relay_logs: usize, bytes: u64, took: Duration) {
        if let Some(bar) = self.staging.take() {
            bar.finish_and_clear();
        }
        tracing::info!(
            files = relay_logs,
            bytes,
            seconds = took.as_secs_f64(),
            "relay logs staged"
        );
        self.applying = progress_bar(self.total, "applying");
    }

    fn applying(&mut self, progress: &Progress, done: u64, total: u64) {
        match &self.applying {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(progress.applied.to_string());
            }
            None if self.last_report.elapsed() >= Duration::from_secs(5) => {
                self.last_report = Instant::now();
                tracing::info!(applied = %progress.applied, done_bytes = done,
                        total_bytes = total, file = %progress.at.0,
                        position = progress.at.1, "applying");
            }
            None => {}
        }
    }
}

/// The `restored` log line a restore Job is followed by: what was reached, what was asked,
/// and whether that is the same.
pub fn log_restored(plan: &Plan, asked: &StopAt, began: Instant) {
    let stop = plan.stop.as_ref();
    tracing::info!(
        reached_gtid = %plan.end,
        reached_time = %stop.map_or("-".to_owned(), |s| format_micros(s.commit_micros)),
        asked = %asked,
        target_reached = plan.target_reached,
        transactions = plan.transactions,
        seconds = began.elapsed().as_secs_f64(),
        "restored"
    );
}

/// The end of the final line for a restore that stopped short of what was asked (the
/// archive ends first): said there too, not only in a warning at the start.
pub fn short_of(plan: &Plan, asked: &StopAt) -> String {
    if plan.target_reached {
        String::new()
    } else {
        format!("; SHORT of the target {asked}: the archive ends there")
    }
}
