//! `stream`: the whole engine for one archive: the follower into the local archive (or
//! spool), the checkpoint task beside it for an object archive, and local retention.

use crate::checkpoint::{self, ArchiveTarget, CheckpointPolicy, CheckpointTask, SpoolShare};
use crate::config::ReplicaConfig;
use crate::error::ReplicaError;
use crate::follow::Follower;
use crate::observer::Observer;
use crate::pump::{SessionEnd, SpoolLimit};
use crate::purge::purge_local_now_and_then;
use binlogd_storage::LocalArchive;
use binlogd_storage::retention::Retention;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything a stream needs besides the source: where it archives.
#[derive(Debug)]
pub struct StreamConfig {
    /// How to follow the source.
    pub replica: ReplicaConfig,
    /// The local archive, or with an object archive its spool.
    pub local: PathBuf,
    /// With an object archive: where and when to upload, and how much the spool may
    /// hold that the store does not have before the stream pauses.
    pub remote: Option<RemoteArchive>,
    /// What old files to delete (from the object archive if there is one).
    pub retention: Retention,
    /// How often to apply `retention`.
    pub purge_interval: Duration,
}

/// The object archive a spool feeds.
#[derive(Debug)]
pub struct RemoteArchive {
    /// The store and how to write to it.
    pub target: ArchiveTarget,
    /// When to upload.
    pub checkpoints: CheckpointPolicy,
    /// Pause the stream while this many durable bytes wait for upload.
    pub spool_max: u64,
}

/// Streams the source into the archive until it is caught up (with `exit_at_end`),
/// `stop` turns true (a signal), or something fails that retrying cannot fix. With an
/// object archive, what the spool holds is uploaded before this returns, whatever ended
/// the stream; a checkpoint task that fails for good raises `stop` itself.
pub async fn stream(
    config: StreamConfig,
    observer: Arc<dyn Observer>,
    stop: Arc<watch::Sender<bool>>,
) -> Result<SessionEnd, ReplicaError> {
    let opening = || ReplicaError::storage("opening the archive");
    let archive = LocalArchive::open(&config.local).map_err(opening())?;
    let _writing = archive.claim_for_writing().map_err(opening())?;
    let share = Arc::new(SpoolShare::default());
    let (finish, finishing) = watch::channel(false);
    let (checkpoints, spool) = match config.remote {
        Some(remote) => {
            let (uploader, lease) = checkpoint::open(&remote.target, archive.clone()).await?;
            let task = CheckpointTask {
                uploader,
                lease,
                policy: remote.checkpoints,
                retention: (config.retention, config.purge_interval),
                share: Arc::clone(&share),
                observer: Arc::clone(&observer),
            };
            let spool = SpoolLimit {
                share,
                max: remote.spool_max,
            };
            (
                Some(tokio::spawn(task.run(finishing, Arc::clone(&stop)))),
                Some(spool),
            )
        }
        None => {
            if config.retention.is_active() {
                tokio::spawn(purge_local_now_and_then(
                    archive.clone(),
                    config.retention,
                    config.purge_interval,
                    Arc::clone(&observer),
                ));
            }
            (None, None)
        }
    };
    let mut follower = Follower {
        config: &config.replica,
        archive,
        observer: observer.as_ref(),
        shutdown: stop.subscribe(),
        spool,
        continuity: Default::default(),
        stuck_at: None,
        durable: None,
        connected: false,
    };
    let streamed = follower.follow().await;
    // Whatever ended the stream, upload what the spool holds before returning.
    let uploaded = match checkpoints {
        Some(task) => {
            let _ = finish.send(true);
            task.await
                .map_err(|e| ReplicaError::Task("checkpoint", e))
                .and_then(|done| done)
        }
        None => Ok(()),
    };
    match (streamed, uploaded) {
        (Ok(end), Ok(())) => Ok(end),
        (_, Err(e)) | (Err(e), Ok(())) => Err(e),
    }
}
