//! Checkpointing a spool to its object archive: the task that runs beside a stream (a
//! checkpoint every interval or every so many bytes, retries with backoff while the
//! spool takes the stream, retention, the lease renewed throughout), and [`drain`], the
//! same for a stopped stream's spool until nothing is left behind.
//!
//! A store that is away is retried (`StorageError::is_transient`); one that refuses
//! (credentials revoked, a lost lease, a catalogue changed by another writer) stops the
//! stream, whose spool keeps everything for the next start.

use crate::error::ReplicaError;
use crate::observer::Observer;
use backon::BackoffBuilder;
use binlogd_storage::index::now_micros;
use binlogd_storage::remote::lease::{Lease, LeaseKeeper, writer_id};
use binlogd_storage::remote::s3::{S3Options, S3Store, S3Url};
use binlogd_storage::remote::store::{ObjectStore, StoreErrorKind};
use binlogd_storage::remote::upload::{UploadOptions, Uploader};
use binlogd_storage::retention::Retention;
use binlogd_storage::{LocalArchive, StorageError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where a writer uploads to, and how.
#[derive(Debug, Clone)]
pub struct ArchiveTarget {
    /// The archive: `s3://BUCKET/PREFIX`.
    pub url: S3Url,
    /// How to reach the store.
    pub s3: S3Options,
    /// Segment size, codec, encryption, parallelism.
    pub options: UploadOptions,
    /// How long the archive's lease outlives a writer that stops renewing it.
    pub lease_ttl: Duration,
}

/// When the checkpoint task uploads.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Upload what is new at least this often (the RPO of the object copy, give or take
    /// one upload).
    pub interval: Duration,
    /// Upload early once this many bytes were written since the last checkpoint.
    pub size: u64,
}

/// Shared between the stream and the checkpoint task.
#[derive(Debug, Default)]
pub struct SpoolShare {
    /// Durable spool bytes not uploaded yet, as of the last checkpoint.
    pub backlog: AtomicU64,
    /// Bytes the stream wrote to the spool since it started.
    pub written: AtomicU64,
    /// What the spool can restore to (see [`Observer::recoverable`]), µs since the epoch:
    /// once a checkpoint that began after it succeeds, so can the object store.
    pub recoverable: AtomicU64,
}

/// Connects to the store, checks the archive there and takes its lease, so that a
/// missing bucket or refused credentials are said at once. The lease is renewed from
/// now on, whatever the uploader does.
pub async fn open(
    target: &ArchiveTarget,
    spool: LocalArchive,
) -> Result<(Uploader, LeaseKeeper), ReplicaError> {
    let mut store = S3Store::connect(target.url.clone(), &target.s3).await;
    store
        .probe()
        .await
        .map_err(|e| ReplicaError::storage(format!("checking {}", target.url))(e.into()))?;
    if !store.honours_conditions() {
        tracing::warn!(
            store = %target.url,
            "the store ignores conditional writes: a second writer is caught by reading the \
             lease back, which narrows the race but cannot close it"
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let writer =
        writer_id(spool.root()).map_err(ReplicaError::storage("reading the spool's writer id"))?;
    let lease = Lease::acquire(Arc::clone(&store), &writer, target.lease_ttl)
        .await
        .map_err(ReplicaError::storage(format!(
            "taking the lease of {}",
            target.url
        )))?;
    // Renewed from now on, whatever the uploader is doing (opening the archive through a
    // slow store, or one long checkpoint of a large backlog).
    let keeper = LeaseKeeper::start(lease, target.lease_ttl);
    let uploader = Uploader::open(store, spool, target.options.clone())
        .await
        .map_err(ReplicaError::storage(format!(
            "opening the archive {}",
            target.url
        )))?;
    Ok((uploader, keeper))
}

/// How long a stream, exiting, keeps trying to upload what the spool holds.
const FINAL_UPLOAD_PATIENCE: Duration = Duration::from_secs(30);

/// The checkpoint task beside a stream.
pub(crate) struct CheckpointTask {
    pub uploader: Uploader,
    pub lease: LeaseKeeper,
    pub policy: CheckpointPolicy,
    /// What old files to delete from the object archive, and how often to look.
    pub retention: (Retention, Duration),
    pub share: Arc<SpoolShare>,
    pub observer: Arc<dyn Observer>,
}

impl CheckpointTask {
    /// Checkpoints until `finish` turns true, then once more, so that everything durable
    /// in the spool is uploaded before the stream exits. Returns an error (and raises
    /// `stop`) when the store refuses in a way retrying cannot fix.
    pub async fn run(
        self,
        mut finish: watch::Receiver<bool>,
        stop: Arc<watch::Sender<bool>>,
    ) -> Result<(), ReplicaError> {
        let CheckpointTask {
            mut uploader,
            lease,
            policy,
            retention: (retention, purge_interval),
            share,
            observer,
        } = self;
        // The lease's validity, reported every second by a task of its own: the loop
        // below may spend longer than the lease's TTL in one checkpoint, while the
        // keeper goes on renewing.
        let _lease_reports = {
            let validity = lease.validity();
            let observer = Arc::clone(&observer);
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    observer.lease(validity.valid_until_micros());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }))
        };
        let mut backoff = new_backoff();
        let mut failing = false;
        let mut finishing_since = None;
        let mut last_purge: Option<Instant> = None;
        loop {
            let finishing = *finish.borrow();
            let began = tokio::time::Instant::now();
            // Everything durable in the spool now is read and shipped by this checkpoint.
            let recoverable = share.recoverable.load(Ordering::Relaxed);
            if lease.lost() {
                let _ = stop.send(true);
                return Err(ReplicaError::storage("renewing the archive's lease")(
                    lease.loss().await,
                ));
            }
            match uploader.checkpoint().await {
                Ok(_) => {
                    if failing {
                        tracing::info!("the object store answers again; the spool drains");
                        failing = false;
                    }
                    backoff = new_backoff();
                    let backlog = uploader.backlog();
                    share.backlog.store(backlog, Ordering::Relaxed);
                    observer.checkpointed(uploader.stats(), backlog);
                    if recoverable > 0 {
                        observer.recoverable(recoverable);
                    }
                    if finishing {
                        return lease
                            .release()
                            .await
                            .map_err(ReplicaError::storage("releasing the archive's lease"));
                    }
                    if retention.is_active()
                        && last_purge.is_none_or(|at| at.elapsed() >= purge_interval)
                    {
                        last_purge = Some(Instant::now());
                        purge_remote(&mut uploader, &retention, observer.as_ref()).await;
                    }
                }
                Err(StorageError::Store(e)) if e.is_transient() => {
                    observer.checkpoint_failed(uploader.backlog());
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        backlog = uploader.backlog(), "uploading failed; the spool keeps the stream");
                    failing = true;
                    if finishing {
                        // Exiting: keep trying for a while; the spool keeps the rest.
                        let since = *finishing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= FINAL_UPLOAD_PATIENCE {
                            return Err(ReplicaError::storage(format!(
                                "the object store did not take the last {} bytes; they wait in \
                                 the spool and go up when binlogd next starts with it",
                                uploader.backlog()
                            ))(StorageError::Store(e)));
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
                        if store.kind == StoreErrorKind::AccessDenied);
                    let doing = if refused_credentials {
                        "uploading to the object archive: the store refuses binlogd's \
                         credentials (expired or revoked?); what is not uploaded waits in the \
                         spool for the next start"
                    } else {
                        "uploading to the object archive"
                    };
                    return Err(ReplicaError::storage(doing)(e));
                }
            }
            // The next checkpoint: an interval after this one began (so a slow upload does
            // not stretch the RPO by its own length), or early once the stream wrote
            // `policy.size` bytes since this one.
            let written_at = share.written.load(Ordering::Relaxed);
            let wait = tokio::time::sleep_until(began + policy.interval);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = finish.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        let written = share.written.load(Ordering::Relaxed);
                        if written.saturating_sub(written_at) >= policy.size {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies `retention` to the object archive. Nothing is lost by purging later: a
/// failure is said, and the next pass finishes the job.
async fn purge_remote(uploader: &mut Uploader, retention: &Retention, observer: &dyn Observer) {
    match uploader.purge(retention, now_micros()).await {
        Ok((files, _)) if files.is_empty() => observer.purged(Ok(0)),
        Ok((files, bytes)) => {
            tracing::info!(
                files = files.len(),
                bytes,
                first = %format!("{}/{}", files[0].epoch, files[0].name),
                "retention: deleted old files from the object archive"
            );
            observer.purged(Ok(files.len()));
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention: purging failed; trying again later");
            observer.purged(Err(&e.to_string()));
        }
    }
}

/// What [`drain`] uploaded.
#[derive(Debug, Clone)]
pub struct Drained {
    /// Binlog bytes shipped (uncompressed).
    pub binlog_bytes: u64,
    /// Segments uploaded.
    pub segments: u64,
    /// Files sealed.
    pub sealed: u64,
}

/// Checkpoints a stopped stream's spool until everything durable in it is in the store,
/// retrying a store that is away for up to `patience`. The spool must be recovered
/// first (a killed stream may have written transactions past its index).
pub async fn drain(
    target: &ArchiveTarget,
    spool: LocalArchive,
    patience: Duration,
) -> Result<Drained, ReplicaError> {
    let spool_dir = spool.root().to_owned();
    let started = Instant::now();
    let mut backoff = new_backoff();
    let (mut uploader, lease) = loop {
        match open(target, spool.clone()).await {
            Ok(opened) => break opened,
            Err(e) if e.is_transient() && started.elapsed() < patience => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %crate::error::chain(&e), retry_in_ms = delay.as_millis() as u64,
                    "the object store does not answer; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(ReplicaError::NothingUploaded {
                    spool: spool_dir.display().to_string(),
                    source: Box::new(e),
                });
            }
        }
    };
    let mut stalled = 0;
    // What is left: bytes to upload, and sealed files still to compact.
    let left = |uploader: &Uploader| uploader.backlog() + uploader.compaction_backlog();
    loop {
        let before = left(&uploader);
        if lease.lost() {
            return Err(ReplicaError::storage("renewing the archive's lease")(
                lease.loss().await,
            ));
        }
        match uploader.checkpoint().await {
            Ok(_) if left(&uploader) == 0 => break,
            // Everything is up; sealed files wait to be compacted beside: wait for the
            // step under way, then go on.
            Ok(_) if uploader.backlog() == 0 => {
                uploader
                    .settle_compaction()
                    .await
                    .map_err(ReplicaError::storage("compacting sealed files"))?;
                stalled = if left(&uploader) < before {
                    0
                } else {
                    stalled + 1
                };
                if stalled >= 3 {
                    // Everything is uploaded; only compaction fails. The spool keeps the
                    // files it waits for, and the next writer compacts them.
                    tracing::warn!(
                        waiting = uploader.compaction_backlog(),
                        "sealed files could not be compacted; the spool keeps them for the next run"
                    );
                    break;
                }
            }
            // More than one checkpoint's worth (the spool grew, or the first pass only
            // took stock, or files wait to be compacted): go on, but not forever on a
            // spool that will not drain.
            Ok(_) => {
                stalled = if left(&uploader) < before {
                    0
                } else {
                    stalled + 1
                };
                if stalled >= 3 {
                    return Err(ReplicaError::SpoolWillNotDrain {
                        backlog: uploader.backlog(),
                        spool: spool_dir.display().to_string(),
                    });
                }
            }
            Err(StorageError::Store(e)) if e.is_transient() => {
                if started.elapsed() >= patience {
                    return Err(ReplicaError::storage(format!(
                        "the object store did not take the spool's last {} bytes in {} s; they \
                         wait in {} (nothing is lost): run binlogd upload again",
                        uploader.backlog(),
                        patience.as_secs_f64(),
                        spool_dir.display()
                    ))(StorageError::Store(e)));
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                    backlog = uploader.backlog(), "uploading failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(ReplicaError::storage("uploading to the object archive")(e)),
        }
    }
    lease
        .release()
        .await
        .map_err(ReplicaError::storage("releasing the archive's lease"))?;
    let stats = uploader.stats();
    Ok(Drained {
        binlog_bytes: stats.binlog_bytes,
        segments: stats.segments,
        sealed: stats.sealed,
    })
}

/// Whether `dir` is a spool (a local archive binlogd wrote).
pub fn is_spool(dir: &Path) -> bool {
    dir.join(binlogd_storage::layout::ARCHIVE_MARKER).is_file()
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
