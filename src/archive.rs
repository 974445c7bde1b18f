//! Naming an archive on the command line — a directory or `s3://BUCKET/PREFIX` — for the
//! commands that read one (`list`, `verify`, `search`, `timeline`, `purge`).

use crate::upload::S3Args;
use anyhow::Context;
use binlogd_storage::remote::read::RemoteArchive;
use binlogd_storage::remote::s3::{S3Store, S3Url};
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::{Archive, GtidState, LocalArchive};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The archive to read and how to print what is found.
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// The archive: a directory, or s3://BUCKET/PREFIX.
    #[arg(long, env = "BINLOGD_ARCHIVE", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub archive: String,
    /// text for people, or json for scripts (list and verify: one object per file and
    /// line; search, timeline and purge: one object).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Where the archive is.
#[derive(Debug)]
pub enum Location {
    Local(PathBuf),
    Remote(S3Url),
}

impl ArchiveArgs {
    pub fn location(&self) -> anyhow::Result<Location> {
        if self.archive.starts_with("s3://") {
            let url = self.archive.parse().map_err(anyhow::Error::msg)?;
            Ok(Location::Remote(url))
        } else {
            Ok(Location::Local(PathBuf::from(&self.archive)))
        }
    }
}

/// A local archive, which must exist.
pub fn open_local(root: &Path) -> anyhow::Result<LocalArchive> {
    if !root.join(binlogd_storage::layout::ARCHIVE_MARKER).is_file() {
        anyhow::bail!(
            "{} is not a binlogd archive (no {})",
            root.display(),
            binlogd_storage::layout::ARCHIVE_MARKER
        );
    }
    Ok(LocalArchive::open(root)?)
}

/// An object archive, opened for reading.
pub async fn open_remote(url: &S3Url, s3: &S3Args) -> anyhow::Result<RemoteArchive> {
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(url.clone(), &s3.options()?).await);
    let key = s3.client_key()?;
    Ok(RemoteArchive::open(store, key)
        .await
        .with_context(|| format!("opening {url}"))?
        .with_max_parallel(usize::from(s3.max_parallel)))
}

/// The archive `args` names, local or remote, opened for reading.
pub async fn open_archive(args: &ArchiveArgs) -> anyhow::Result<Archive> {
    Ok(match args.location()? {
        Location::Local(root) => Archive::Local(open_local(&root)?),
        Location::Remote(url) => Archive::Remote(open_remote(&url, &args.s3).await?),
    })
}

/// Parses a time as users write it: RFC 3339 with a zone (`2026-11-23T10:00:00Z`,
/// `2026-11-23 11:00:00+01:00`), to µs since the Unix epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let time: jiff::Timestamp = text.trim().parse().map_err(|e| {
        format!(
            "{text:?} is not a time with a zone (write it like 2026-11-23T10:00:00Z or 2026-11-23T11:00:00+01:00): {e}"
        )
    })?;
    u64::try_from(time.as_microsecond()).map_err(|_| format!("{text:?} is before 1970"))
}

/// Parses a number of seconds for a command-line option: finite, not negative, and at
/// most about 46 days (4,000,000 s), so that it always makes a `Duration`.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a number of seconds: {e}"))?;
    if seconds.is_finite() && (0.0..=4_000_000.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{text:?} is not between 0 and 4000000 seconds"))
    }
}

/// Parses a GTID state (`0-1-41,1-2-7` or `uuid:1-5`).
pub fn parse_gtids(text: &str) -> Result<GtidState, String> {
    text.parse()
}

/// Runs `work` on a one-thread runtime: the readers talk to one store at a time.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}
