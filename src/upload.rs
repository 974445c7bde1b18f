//! `binlogd upload`: pushes what the spool of a stopped `binlogd stream` holds to its S3
//! archive (`binlogd_replica::checkpoint::drain`), and reads the store and lease flags
//! into an [`ArchiveTarget`] for it and for `binlogd stream`.

use crate::flags::{LeaseArgs, S3Args};
use anyhow::Context;
use binlogd_replica::checkpoint::{self, ArchiveTarget};
use binlogd_storage::LocalArchive;
use binlogd_storage::remote::keys::Codec;
use binlogd_storage::remote::s3::S3Url;
use binlogd_storage::remote::upload::UploadOptions;
use std::time::Duration;

/// Where a writer uploads to, and how, from the command line's store and lease options.
pub fn archive_target_of(
    url: S3Url,
    s3: &S3Args,
    lease: &LeaseArgs,
    codec: Codec,
    max_segment: u64,
) -> anyhow::Result<ArchiveTarget> {
    let options = s3.options()?;
    Ok(ArchiveTarget {
        url,
        options: UploadOptions {
            codec,
            client_key: s3.client_key()?,
            max_parallel: usize::from(s3.max_parallel),
            max_segment,
            delete_delay: lease.delete_delay,
            consolidate_every: lease.consolidate_every as usize,
            server_side: options.server_side.as_ref().map(|sse| {
                let (mode, key) = sse.record();
                binlogd_storage::remote::format::ServerSide { mode, key }
            }),
        },
        s3: options,
        lease_ttl: lease.ttl(),
    })
}

const UPLOAD_EXAMPLES: &str = "\
Examples:
  # The source is gone, or binlogd was killed before it could upload: push what its spool holds.
  binlogd upload --spool-dir /var/lib/binlogd/spool --archive s3://backups/db1

  # The same, against MinIO or Garage, trying for ten minutes while the store is away.
  binlogd upload --spool-dir ./spool --archive s3://backups/db1 \\
      --s3-endpoint http://127.0.0.1:9000 --patience 600

Exits 0 once everything durable in the spool is in the store (then the spool may be deleted);
1 if the store would not take it in time (the spool keeps it: nothing is lost).";

/// Arguments of `binlogd upload`.
#[derive(Debug, clap::Args)]
#[command(after_help = UPLOAD_EXAMPLES)]
pub struct UploadArgs {
    /// The spool of a `binlogd stream` to an S3 archive (its --spool-dir). No stream may be
    /// running on it: they would both write the archive.
    #[arg(long, env = "BINLOGD_SPOOL_DIR", value_name = "DIR")]
    spool_dir: std::path::PathBuf,
    /// The archive the spool feeds (the stream's --archive): s3://BUCKET/PREFIX.
    #[arg(long, env = "BINLOGD_ARCHIVE", value_name = "s3://BUCKET/PREFIX")]
    archive: S3Url,
    /// Segment compression of what goes up now: zstd, gzip, bzip2 or none.
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    compression: Codec,
    /// Keep retrying a failing store this long before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0, value_parser = crate::flags::parse_seconds)]
    patience: f64,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    lease: LeaseArgs,
}

/// `binlogd upload`: checkpoints the spool into its object archive until nothing durable
/// is left behind, with the same lease, layout and encryption as the stream's own uploads.
pub fn upload_spool(args: &UploadArgs) -> anyhow::Result<std::process::ExitCode> {
    if !(args.patience >= 0.0 && args.patience <= 86_400.0) {
        anyhow::bail!("--patience {}: give seconds, 0 to 86400", args.patience);
    }
    let spool_dir = &args.spool_dir;
    if !checkpoint::is_spool(spool_dir) {
        anyhow::bail!(
            "{}: not a binlogd spool (no {}): give the --spool-dir of the stream",
            spool_dir.display(),
            binlogd_storage::layout::ARCHIVE_MARKER
        );
    }
    let spool = LocalArchive::open(spool_dir)?;
    let _writing = spool.claim_for_writing()?;
    // A stream killed (SIGKILL, a node lost) may have written whole transactions past its
    // index's last line: recovery indexes them (and cuts an unfinished one), as the next
    // stream would, so that they are uploaded too and not lost with the spool's volume.
    for epoch in spool.epochs()? {
        binlogd_storage::recover(&epoch)
            .with_context(|| format!("recovering {}", epoch.dir.display()))?;
    }
    if spool.epochs()?.is_empty() {
        println!(
            "{}: the spool holds nothing; nothing to upload",
            spool_dir.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let target = archive_target_of(
        args.archive.clone(),
        &args.s3,
        &args.lease,
        args.compression,
        // The stream's default --segment-size.
        16 << 20,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let patience = Duration::from_secs_f64(args.patience);
    let drained = runtime.block_on(checkpoint::drain(&target, spool, patience))?;
    println!(
        "uploaded {} binlog bytes ({} segments, {} files sealed) from {} to {}; \
         everything the spool holds is in the store",
        drained.binlog_bytes,
        drained.segments,
        drained.sealed,
        spool_dir.display(),
        args.archive
    );
    Ok(std::process::ExitCode::SUCCESS)
}
