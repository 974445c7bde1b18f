//! Retention on a local archive while it is streamed into. (An object archive's
//! retention runs in the checkpoint task, which holds its lease.)

use crate::observer::Observer;
use binlogd_storage::archive::local_files;
use binlogd_storage::index::now_micros;
use binlogd_storage::retention::{Retention, purge_local};
use binlogd_storage::{LocalArchive, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// Applies `retention` to a local archive now and every `interval`, for ever. The stream
/// only ever writes the newest file, which a purge never touches.
pub(crate) async fn purge_local_now_and_then(
    archive: LocalArchive,
    retention: Retention,
    interval: Duration,
    observer: Arc<dyn Observer>,
) {
    loop {
        let (archive_now, retention_now) = (archive.clone(), retention.clone());
        let done = tokio::task::spawn_blocking(move || {
            let files = local_files(&archive_now)?;
            let victims = retention_now.purgeable(&files, now_micros()).to_vec();
            let bytes = purge_local(&archive_now, &victims)?;
            Ok::<_, StorageError>((victims.len(), bytes))
        })
        .await;
        match done {
            Ok(Ok((0, _))) => observer.purged(Ok(0)),
            Ok(Ok((files, bytes))) => {
                tracing::info!(files, bytes, "retention: deleted old archived files");
                observer.purged(Ok(files));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention: purging failed; trying again later");
                observer.purged(Err(&e.to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: the purge task failed");
                observer.purged(Err(&e.to_string()));
            }
        }
        tokio::time::sleep(interval).await;
    }
}
