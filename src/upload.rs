//! The upload task of `binlogd stream` with an S3 archive: checkpoints the spool every
//! `--checkpoint-interval`, retries a failing store with backoff while the spool takes
//! the stream, and stops binlogd on what retrying cannot fix.

use crate::flags::{LeaseArgs, S3Args};
use crate::metrics::StreamMetrics;
use anyhow::Context;
use backon::BackoffBuilder;
use binlogd_storage::LocalArchive;
use binlogd_storage::StorageError;
use binlogd_storage::remote::lease::{Lease, LeaseKeeper, writer_id};
use binlogd_storage::remote::s3::{S3Options, S3Store, S3Url};
use binlogd_storage::remote::store::ObjectStore;
use binlogd_storage::remote::upload::{UploadOptions, Uploader};
use binlogd_storage::retention::Retention;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Where a writer uploads to, and how: what `open` needs.
#[derive(Debug)]
pub struct ArchiveTarget {
    pub url: S3Url,
    pub s3: S3Options,
    pub options: UploadOptions,
    /// How long the archive's lease outlives a writer that stops renewing it.
    pub lease_ttl: Duration,
}

impl ArchiveTarget {
    /// From the command line's store and lease options.
    pub fn new(
        url: S3Url,
        s3: &S3Args,
        lease: &LeaseArgs,
        codec: binlogd_storage::remote::keys::Codec,
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
                server_side: options.server_side.as_ref().map(|sse| {
                    let (mode, key) = sse.record();
                    binlogd_storage::remote::format::ServerSide { mode, key }
                }),
            },
            s3: options,
            lease_ttl: lease.ttl(),
        })
    }
}

/// What the upload task of `binlogd stream` needs.
#[derive(Debug)]
pub struct UploadSettings {
    pub target: ArchiveTarget,
    pub interval: Duration,
    /// Checkpoint early when this many durable bytes wait.
    pub size: u64,
    /// What old files to delete from the object archive.
    pub retention: Retention,
    /// How often to apply `retention`.
    pub purge_interval: Duration,
}

/// Shared between the stream and the upload task.
#[derive(Debug, Default)]
pub struct UploadState {
    /// Durable spool bytes not uploaded yet, as of the last checkpoint.
    pub backlog: AtomicU64,
    /// Bytes the stream wrote to the spool since binlogd started.
    pub written: AtomicU64,
}

/// Connects to the store and checks the archive there, before streaming starts, so a
/// missing bucket or refused credentials end binlogd at once with one clear line.
pub async fn open(
    target: &ArchiveTarget,
    spool: LocalArchive,
) -> Result<(Uploader, LeaseKeeper), OpenFailed> {
    let failed = |step: String| move |cause: StorageError| OpenFailed { step, cause };
    let mut store = S3Store::connect(target.url.clone(), &target.s3).await;
    store
        .probe()
        .await
        .map_err(|e| failed(format!("checking {}", target.url))(e.into()))?;
    if !store.honours_conditions() {
        tracing::warn!(
            store = %target.url,
            "the store ignores conditional writes: a second writer is caught by reading the \
             lease back, which narrows the race but cannot close it"
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let writer = writer_id(spool.root()).map_err(failed("reading the spool's writer id".into()))?;
    let lease = Lease::acquire(Arc::clone(&store), &writer, target.lease_ttl)
        .await
        .map_err(failed(format!("taking the lease of {}", target.url)))?;
    // Renewed from now on, whatever the uploader is doing (opening the archive through a
    // slow store, or one long checkpoint of a large backlog).
    let keeper = LeaseKeeper::start(lease, target.lease_ttl);
    let uploader = Uploader::open(store, spool, target.options.clone())
        .await
        .map_err(failed(format!("opening the archive {}", target.url)))?;
    Ok((uploader, keeper))
}

/// Opening an object archive for writing failed at `step`; the store's error stays typed,
/// so that a store that is away (retry) is told from one that refuses (stop).
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub struct OpenFailed {
    step: String,
    #[source]
    cause: StorageError,
}

impl OpenFailed {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        self.cause.is_transient()
    }
}

/// How long binlogd, exiting, keeps trying to upload what the spool holds.
const FINAL_UPLOAD_PATIENCE: Duration = Duration::from_secs(30);

/// Checkpoints until `finish` turns true, then once more, so that everything durable
/// in the spool is uploaded before binlogd exits. Returns an error (and raises `stop`)
/// when the store refuses in a way retrying cannot fix.
pub async fn run(
    mut uploader: Uploader,
    lease: LeaseKeeper,
    settings: UploadSettings,
    state: Arc<UploadState>,
    metrics: Arc<StreamMetrics>,
    mut finish: watch::Receiver<bool>,
    stop: Arc<watch::Sender<bool>>,
) -> anyhow::Result<()> {
    let mut backoff = new_backoff();
    let mut failing = false;
    let mut finishing_since = None;
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        let finishing = *finish.borrow();
        let began = tokio::time::Instant::now();
        if lease.lost() {
            let _ = stop.send(true);
            return Err(
                anyhow::Error::new(lease.loss().await).context("renewing the archive's lease")
            );
        }
        match uploader.checkpoint().await {
            Ok(_) => {
                if failing {
                    tracing::info!("the object store answers again; the spool drains");
                    failing = false;
                }
                backoff = new_backoff();
                let stats = uploader.stats();
                metrics.upload_bytes.set(stats.bytes_put as i64);
                metrics.uploaded_binlog_bytes.set(stats.binlog_bytes as i64);
                let backlog = uploader.backlog();
                state.backlog.store(backlog, Ordering::Relaxed);
                metrics.upload_backlog_bytes.set(backlog as i64);
                if finishing {
                    return lease
                        .release()
                        .await
                        .context("releasing the archive's lease");
                }
                if settings.retention.is_active()
                    && last_purge.is_none_or(|at| at.elapsed() >= settings.purge_interval)
                {
                    last_purge = Some(std::time::Instant::now());
                    match uploader
                        .purge(&settings.retention, crate::flags::now_micros())
                        .await
                    {
                        Ok((files, _)) if files.is_empty() => {}
                        Ok((files, bytes)) => tracing::info!(
                            files = files.len(),
                            bytes,
                            first = %format!("{}/{}", files[0].epoch, files[0].name),
                            "retention: deleted old files from the object archive"
                        ),
                        // Nothing is lost by purging later; the next pass finishes the job.
                        Err(e) => {
                            tracing::warn!(error = %e, "retention: purging failed; trying again later")
                        }
                    }
                }
            }
            Err(StorageError::Store(e)) if e.is_transient() => {
                metrics.upload_errors.inc();
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                    backlog = uploader.backlog(), "uploading failed; the spool keeps the stream");
                failing = true;
                if finishing {
                    // Exiting: keep trying for a while; the spool keeps the rest.
                    let since = *finishing_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= FINAL_UPLOAD_PATIENCE {
                        return Err(anyhow::Error::new(e).context(format!(
                            "the object store did not take the last {} bytes; they wait in the \
                             spool and go up when binlogd next starts with it",
                            uploader.backlog()
                        )));
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = finish.changed() => {}
                }
                continue;
            }
            Err(e) => {
                let _ = stop.send(true);
                let refused_credentials = matches!(&e, StorageError::Store(store)
                    if store.kind == binlogd_storage::remote::store::StoreErrorKind::AccessDenied);
                if refused_credentials {
                    return Err(e).context(
                        "uploading to the object archive: the store refuses binlogd's \
                         credentials (expired or revoked?); what is not uploaded waits in the \
                         spool for the next start",
                    );
                }
                return Err(e).context("uploading to the object archive");
            }
        }
        // The next checkpoint: an interval after this one began (so a slow upload does
        // not stretch the RPO by its own length), or early once the stream wrote
        // --checkpoint-size bytes since this one.
        let written_at = state.written.load(Ordering::Relaxed);
        let wait = tokio::time::sleep_until(began + settings.interval);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = finish.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let written = state.written.load(Ordering::Relaxed);
                    if written.saturating_sub(written_at) >= settings.size {
                        break;
                    }
                }
            }
        }
    }
}

/// Retries of a failing store: quick at first, then every 5-10 s (jittered), so the
/// spool starts draining within seconds of the store coming back.
fn new_backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
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
    compression: binlogd_storage::remote::keys::Codec,
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
    if !spool_dir
        .join(binlogd_storage::layout::ARCHIVE_MARKER)
        .is_file()
    {
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
    let target = ArchiveTarget::new(
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
    runtime.block_on(async {
        let patience = Duration::from_secs_f64(args.patience);
        let started = std::time::Instant::now();
        let mut backoff = new_backoff();
        let (mut uploader, lease) = loop {
            match open(&target, spool.clone()).await {
                Ok(opened) => break opened,
                Err(e) if e.is_transient() && started.elapsed() < patience => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64,
                        "the object store does not answer; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "nothing was uploaded; the spool {} keeps everything",
                        spool_dir.display()
                    )));
                }
            }
        };
        let mut stalled = 0;
        loop {
            let before = uploader.backlog();
            if lease.lost() {
                return Err(anyhow::Error::new(lease.loss().await).context("renewing the archive's lease"));
            }
            match uploader.checkpoint().await {
                Ok(_) if uploader.backlog() == 0 => break,
                // More than one checkpoint's worth (the spool grew, or the first pass
                // only took stock): go on, but not forever on a spool that will not drain.
                Ok(_) => {
                    stalled = if uploader.backlog() < before { 0 } else { stalled + 1 };
                    if stalled >= 3 {
                        anyhow::bail!(
                            "{} bytes of the spool {} did not go up in three checkpoints; \
                             they stay there (see binlogd verify and binlogd list)",
                            uploader.backlog(),
                            spool_dir.display()
                        );
                    }
                }
                Err(StorageError::Store(e)) if e.is_transient() => {
                    if started.elapsed() >= patience {
                        return Err(anyhow::Error::new(e).context(format!(
                            "the object store did not take the spool's last {} bytes in {} s; \
                             they wait in {} (nothing is lost): run binlogd upload again",
                            uploader.backlog(),
                            args.patience,
                            spool_dir.display()
                        )));
                    }
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        backlog = uploader.backlog(), "uploading failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e).context("uploading to the object archive"),
            }
        }
        lease
            .release()
            .await
            .context("releasing the archive's lease")?;
        let stats = uploader.stats();
        println!(
            "uploaded {} binlog bytes ({} segments, {} files sealed) from {} to {}; \
             everything the spool holds is in the store",
            stats.binlog_bytes,
            stats.segments,
            stats.sealed,
            spool_dir.display(),
            args.archive
        );
        Ok(std::process::ExitCode::SUCCESS)
    })
}
