//! The flags several commands share, and how their values are read: the archive and how
//! to print (`ArchiveArgs`), the S3 store (`S3Args`), the lease (`LeaseArgs`), retention
//! (`RetentionArgs`), where a replay stops (`TargetArgs`), and times, ages, seconds,
//! sizes and GTID states as users write them.
//! One place, so that a flag means the same in every command that takes it.

use anyhow::{Context, bail};
use binlogd_storage::GtidState;
use binlogd_storage::plan::StopAt;
use binlogd_storage::remote::crypt::{ClientKey, read_key_file};
use binlogd_storage::remote::s3::{S3Options, S3Url, ServerSideEncryption};
use binlogd_storage::retention::Retention;
use std::path::PathBuf;
use std::time::Duration;

/// The archive to read and how to print what is found.
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// The archive: a directory, or s3://BUCKET/PREFIX.
    #[arg(long, env = "BINLOGD_ARCHIVE", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub archive: String,
    /// text for people, or json for scripts (list and verify: one object per file and
    /// line; find: one per matching transaction and line; search, timeline and purge: one
    /// object).
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

/// How to reach an S3-compatible store, beyond the AWS chain.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// With an S3 archive: the store's endpoint, for S3-compatible stores (MinIO, Garage,
    /// Ceph); also read from AWS_ENDPOINT_URL. Addressed path-style.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// With an S3 archive: the region (else AWS_REGION, the profile, or us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// With an S3 archive: encrypt segments on this machine with AES-256-GCM under the
    /// key in this file (32 bytes, or 64 hex digits: openssl rand -hex 32), and
    /// authenticate every other object binlogd writes. Readers need the same file, and
    /// with it refuse what someone without the key put in the bucket; list, search and
    /// timeline work without it (indexes stay in the clear).
    #[arg(long, env = "BINLOGD_ENCRYPTION_KEY_FILE", value_name = "PATH")]
    pub encryption_key_file: Option<std::path::PathBuf>,
    /// With an S3 archive: have the store encrypt segments with this customer key (SSE-C;
    /// 32 bytes or 64 hex digits). Reading segments back needs the same file; the store
    /// never keeps the key.
    #[arg(
        long,
        env = "BINLOGD_SSE_C_KEY_FILE",
        value_name = "PATH",
        conflicts_with = "sse_kms"
    )]
    pub sse_c_key_file: Option<std::path::PathBuf>,
    /// With an S3 archive: have the store encrypt every object with AWS KMS (SSE-KMS),
    /// under --sse-kms-key-id or the bucket's default KMS key. Readers need only the
    /// permission to use the key.
    #[arg(long)]
    pub sse_kms: bool,
    /// With --sse-kms: the KMS key (id, ARN or alias/NAME).
    #[arg(long, value_name = "KEY", requires = "sse_kms")]
    pub sse_kms_key_id: Option<String>,
    /// With an S3 archive: how many segments go up (or come down) at once. Catching up
    /// a spool after the store was away is this many times faster, up to the link.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_parallel: u16,
}

impl S3Args {
    /// The client-side key, if one was given.
    pub fn client_key(&self) -> anyhow::Result<Option<ClientKey>> {
        let Some(path) = self.encryption_key_file.as_deref() else {
            return Ok(None);
        };
        crate::secrets::check_secret_file(path, "--encryption-key-file")?;
        Ok(Some(ClientKey::from_file(path)?))
    }

    pub fn options(&self) -> anyhow::Result<S3Options> {
        let server_side = if let Some(path) = &self.sse_c_key_file {
            crate::secrets::check_secret_file(path, "--sse-c-key-file")?;
            Some(ServerSideEncryption::CustomerKey(read_key_file(path)?))
        } else if self.sse_kms {
            Some(ServerSideEncryption::Kms(self.sse_kms_key_id.clone()))
        } else {
            None
        };
        Ok(S3Options {
            region: self.s3_region.clone(),
            endpoint: self.s3_endpoint.clone(),
            server_side,
        })
    }
}

/// `--lease-ttl`, of both writers: how long the lease lasts without renewal (it is
/// renewed every third of it).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// With an S3 archive: how long the archive's lease outlives this writer if it dies
    /// without giving it up; another writer waits that long before taking over. Renewed
    /// every third of it.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_ttl: u64,
    /// With an S3 archive: how long the many small segments of a sealed file stay after
    /// they are compacted into a few large ones (15m, 1h), so that a reader that began
    /// before (a replica of `binlogd serve`, a restore) finishes with them first.
    #[arg(long, value_parser = parse_duration, value_name = "AGE", default_value = "15m")]
    pub delete_delay: Duration,
    /// With an S3 archive: every this many checkpoints of a file still open (or
    /// --segment-size of its bytes), its part so far is consolidated into a few objects
    /// and a partial manifest, so that reading a file open for days (a quiet server) costs
    /// a few requests, not one per checkpoint of its life. Beside the checkpoints, never
    /// in their way.
    #[arg(long, value_name = "CHECKPOINTS", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub consolidate_every: u32,
}

impl LeaseArgs {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl)
    }
}

/// What may be deleted.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Delete sealed files whose last transaction is older than this (720h, 30d, 1w 2d).
    /// Only whole files from the archive's oldest end go; the newest file never does.
    #[arg(long, value_parser = parse_duration, value_name = "AGE")]
    pub retention: Option<Duration>,
    /// Never delete a file holding transactions this GTID state lacks: the state of the
    /// oldest base backup you keep (its gtid_binlog_pos or gtid_executed).
    #[arg(long, value_parser = parse_gtids, value_name = "GTIDS")]
    pub keep_after_gtid: Option<GtidState>,
}

impl RetentionArgs {
    pub fn policy(&self) -> Retention {
        Retention {
            max_age: self.retention,
            keep_after: self.keep_after_gtid.clone(),
        }
    }
}

/// Parses an age: `720h`, `30d`, `1w 2d`, `PT36H`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not an age like 720h, 30d or 1w 2d: {e}"))?;
    // Days and weeks as 24 h and 7 d: retention counts elapsed time, not calendar days.
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{text:?}: {e}"))?;
    Duration::try_from(duration).map_err(|_| format!("{text:?} is negative"))
}

pub use binlogd_storage::index::now_micros;

/// Reads a segment size: a size (see [`parse_size`]) from 4 KiB to 1 GiB.
pub fn parse_segment_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if !(4 << 10..=1 << 30).contains(&size) {
        return Err(format!("{text}: a segment is between 4KiB and 1GiB"));
    }
    Ok(size)
}

/// Reads a size: bytes, or a number with KiB, MiB, GiB, TiB (or KB, MB, GB, TB).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512MiB or 2GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Where a replay stops: the same flags in `search` and `restore` (each also under the
/// name `search` once had: `--time`, `--gtid`, `--position`).
#[derive(Debug, Clone, clap::Args)]
#[group(id = "stop_point", required = true, multiple = false)]
pub struct TargetArgs {
    /// Up to the last transaction committed at or before this time (RFC 3339 with a
    /// zone); stops before the first transaction committed after it, as mariadb-binlog
    /// --stop-datetime does.
    #[arg(long, alias = "time", value_parser = parse_time, value_name = "TIME")]
    pub to_time: Option<u64>,
    /// Up to and including these GTIDs: a MariaDB position (0-1-500,1-2-7) or a MySQL
    /// GTID set (uuid:1-500).
    #[arg(long, alias = "gtid", value_parser = parse_gtids, value_name = "GTIDS")]
    pub to_gtid: Option<GtidState>,
    /// Everything before this transaction, leaving it out (the bad one).
    #[arg(long, value_name = "GTID")]
    pub before_gtid: Option<binlogd_parser::Gtid>,
    /// Up to a transaction boundary of an archived file: FILE:OFFSET, or
    /// EPOCH/FILE:OFFSET when two epochs have a file of that name.
    #[arg(long, alias = "position", value_parser = parse_position, value_name = "FILE:OFFSET")]
    pub to_position: Option<StopAt>,
    /// Everything archived.
    #[arg(long)]
    pub latest: bool,
}

impl TargetArgs {
    /// The stop point the flags name.
    pub fn stop_at(&self) -> StopAt {
        if let Some(time) = self.to_time {
            StopAt::Time(time)
        } else if let Some(gtids) = &self.to_gtid {
            StopAt::Gtids(gtids.clone())
        } else if let Some(gtid) = self.before_gtid {
            StopAt::BeforeGtid(gtid)
        } else if let Some(position) = &self.to_position {
            position.clone()
        } else {
            StopAt::Latest
        }
    }
}

/// Parses `FILE:OFFSET` or `EPOCH/FILE:OFFSET`.
pub fn parse_position(text: &str) -> Result<StopAt, String> {
    let (path, offset) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not FILE:OFFSET"))?;
    let offset = offset
        .parse()
        .map_err(|_| format!("{text:?}: the offset {offset:?} is not a number"))?;
    let (epoch, file) = match path.split_once('/') {
        Some((epoch, file)) => (Some(epoch.to_owned()), file.to_owned()),
        None => (None, path.to_owned()),
    };
    if file.is_empty() {
        return Err(format!("{text:?} names no file"));
    }
    Ok(StopAt::Position {
        epoch,
        file,
        offset,
    })
}

/// Host, port and user of a `mysql://USER@HOST:PORT` URL given with `flag`; refuses one
/// that carries a password (`password_hint` says where passwords go instead).
pub fn parse_server_url(
    source: &str,
    flag: &str,
    password_hint: &str,
) -> anyhow::Result<(String, u16, String)> {
    let url = url::Url::parse(source)
        .with_context(|| format!("{flag} {source:?} is not a URL like mysql://USER@HOST:PORT"))?;
    if !matches!(url.scheme(), "mysql" | "mariadb") {
        bail!(
            "{flag} must start with mysql:// or mariadb://, not {}://",
            url.scheme()
        );
    }
    if url.password().is_some() {
        bail!(
            "{flag} carries a password: command lines are visible to every user of the machine \
             (ps, /proc); put it in {password_hint}"
        );
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("{flag} {source:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let user = url::form_urlencoded::parse(url.username().as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    if user.is_empty() {
        bail!("{flag} {source:?} names no user: mysql://USER@HOST:PORT");
    }
    Ok((host, url.port().unwrap_or(3306), user))
}

/// A password from `file` (first line, checked like every secret file) given with
/// `flag`, else from the environment variable `env`; `None` when neither says one.
pub fn read_password(
    file: Option<&std::path::Path>,
    flag: &str,
    env: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        crate::secrets::check_secret_file(path, flag)?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(std::env::var(env).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Stop {
        #[command(flatten)]
        stop: TargetArgs,
    }

    fn stop(args: &[&str]) -> Result<StopAt, clap::Error> {
        Stop::try_parse_from(std::iter::once("binlogd").chain(args.iter().copied()))
            .map(|parsed| parsed.stop.stop_at())
    }

    #[test]
    fn search_and_restore_name_the_stop_point_alike_and_take_the_old_names() {
        let time = "2026-11-23T10:00:00Z";
        let micros = parse_time(time).expect("time");
        for flag in ["--to-time", "--time"] {
            assert_eq!(stop(&[flag, time]).expect(flag), StopAt::Time(micros));
        }
        for flag in ["--to-gtid", "--gtid"] {
            assert_eq!(
                stop(&[flag, "0-1-5"]).expect(flag),
                StopAt::Gtids("0-1-5".parse().expect("gtids"))
            );
        }
        for flag in ["--to-position", "--position"] {
            assert_eq!(
                stop(&[flag, "0001-a/mariadb-bin.000002:4096"]).expect(flag),
                StopAt::Position {
                    epoch: Some("0001-a".into()),
                    file: "mariadb-bin.000002".into(),
                    offset: 4096
                }
            );
        }
        assert_eq!(stop(&["--latest"]).expect("latest"), StopAt::Latest);
        // Exactly one.
        assert!(stop(&[]).is_err());
        assert!(stop(&["--latest", "--to-gtid", "0-1-5"]).is_err());
        assert!(stop(&["--to-position", "no-offset"]).is_err());
    }

    #[test]
    fn a_server_url_gives_host_port_and_user_but_never_a_password() {
        let parse = |url| parse_server_url(url, "--source", "BINLOGD_SOURCE_PASSWORD");
        assert_eq!(
            parse("mysql://repl@db1:3307").expect("valid"),
            ("db1".to_owned(), 3307, "repl".to_owned())
        );
        assert_eq!(
            parse("mariadb://r%40x@[::1]").expect("valid"),
            ("::1".to_owned(), 3306, "r@x".to_owned())
        );
        let err = parse("mysql://repl:secret@db1").expect_err("password");
        assert!(err.to_string().contains("BINLOGD_SOURCE_PASSWORD"), "{err}");
        assert!(parse("http://repl@db1").is_err());
        assert!(parse("mysql://db1").is_err());
    }
}
