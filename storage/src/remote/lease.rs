//! One writer per object archive: the lease (`lease.json`).
//!
//! Two `binlogd stream` processes writing one prefix would interleave segments of the
//! same files; the second is refused instead. The lease names its holder by the spool it
//! streams from (an id kept in the spool directory), so the same writer restarting after
//! a crash takes its lease back at once, while another writer waits for the lease to go
//! stale: not renewed while it watches it for a whole TTL on its own clock. The time in
//! the lease is the holder's clock: it may refuse a taker at once (a wait, if clocks
//! differ), never let one in. It is created only if absent (`If-None-Match: *`) and
//! renewed only if unchanged (`If-Match`); on a store that ignores those conditions a
//! read-back check stands in, which narrows the race without closing it.

use super::keys;
use super::store::{Metadata, ObjectStore};
use crate::error::StorageError;
use crate::index::now_micros;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What `lease.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who writes: the spool's writer id, host and process.
    pub holder: String,
    /// The writer id alone (the part that survives restarts).
    pub writer_id: String,
    /// When the holder last renewed it, µs since the epoch.
    pub renewed_micros: u64,
    /// How long it stays valid without renewal.
    pub ttl_seconds: u64,
}

/// A lease held on an archive.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    record: LeaseRecord,
    etag: Option<String>,
    /// Set once this writer has written the lease.
    held: bool,
}

impl Lease {
    /// Takes the lease for `writer_id` (see [`writer_id`]): creates it, takes back our
    /// own, or takes over a stale one. Refuses with [`StorageError::LeaseHeld`] while
    /// another writer holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        writer_id: &str,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let record = LeaseRecord {
            holder: format!(
                "{writer_id} (host {}, pid {})",
                hostname(),
                std::process::id()
            ),
            writer_id: writer_id.to_owned(),
            renewed_micros: now_micros(),
            ttl_seconds: ttl.as_secs().max(1),
        };
        let mut lease = Lease {
            store,
            record,
            etag: None,
            held: false,
        };
        if !lease.store.honours_conditions() {
            // The store would let the create below overwrite a live lease: look first,
            // and judge what is there as below.
            if let Some(current) = lease.store.get(keys::LEASE).await? {
                lease.judge(&current, writer_id).await?;
                lease
                    .take_over(current.etag.as_deref(), &current.body)
                    .await?;
                return Ok(lease);
            }
        }
        if let Some(etag) = lease
            .store
            .put_if_absent(keys::LEASE, lease.body(), &Metadata::new())
            .await?
        {
            lease.etag = Some(etag);
            lease.held = true;
            lease.check_still_ours().await?;
            return Ok(lease);
        }
        let Some(current) = lease.store.get(keys::LEASE).await? else {
            // Released between the two calls: try once more.
            let etag = lease
                .store
                .put_if_absent(keys::LEASE, lease.body(), &Metadata::new())
                .await?;
            lease.etag = etag;
            lease.held = true;
            lease.check_still_ours().await?;
            return Ok(lease);
        };
        lease.judge(&current, writer_id).await?;
        lease
            .take_over(current.etag.as_deref(), &current.body)
            .await?;
        Ok(lease)
    }

    /// Decides whether the lease found (`current`) may be taken by `writer_id`: its own,
    /// or another's that nobody renews. Refuses with [`StorageError::LeaseHeld`] otherwise.
    async fn judge(
        &self,
        current: &super::store::Object,
        writer_id: &str,
    ) -> Result<(), StorageError> {
        let held: LeaseRecord = serde_json::from_slice(&current.body).map_err(|e| {
            StorageError::inconsistent(keys::LEASE, 0, format!("unreadable lease: {e}"))
        })?;
        let age = now_micros().saturating_sub(held.renewed_micros) / 1_000_000;
        let ours = held.writer_id == writer_id;
        if !ours && age < held.ttl_seconds {
            // Fresh by our clock: refused at once. (Wrong only when our clock is behind,
            // and then the harm is a wait, not two writers.)
            return Err(StorageError::LeaseHeld {
                location: self.store.location(),
                holder: held.holder,
                renewed_seconds_ago: age,
            });
        }
        if !ours {
            // Stale by our clock, which may be wrong: the holder's clock wrote the time.
            // Watch the lease itself for a whole TTL on our own clock instead: a live
            // holder renews it meanwhile (every third of it), a dead one does not.
            let watched = Duration::from_secs(held.ttl_seconds.clamp(1, 3600));
            tracing::info!(holder = %held.holder, seconds = watched.as_secs(),
                "the archive's lease looks stale; watching it for its TTL before taking it over");
            tokio::time::sleep(watched).await;
            let now = self.store.get(keys::LEASE).await?;
            if now.as_ref().map(|o| &o.body) != Some(&current.body) {
                let holder = now
                    .and_then(|o| serde_json::from_slice::<LeaseRecord>(&o.body).ok())
                    .map_or_else(|| "nobody".to_owned(), |r| r.holder);
                return Err(StorageError::LeaseHeld {
                    location: self.store.location(),
                    holder,
                    renewed_seconds_ago: 0,
                });
            }
            tracing::warn!(previous = %held.holder, watched_seconds = watched.as_secs(),
                "taking over the archive's lease: its holder did not renew it while we watched for its TTL");
        }
        Ok(())
    }

    /// Writes our record over the lease read as `seen` (tag `etag`): only if it is still
    /// that one (If-Match; on a store without conditions, read back first).
    async fn take_over(&mut self, etag: Option<&str>, seen: &Bytes) -> Result<(), StorageError> {
        if !self.store.honours_conditions() || etag.is_none() {
            let now = self.store.get(keys::LEASE).await?;
            if now.as_ref().is_some_and(|o| o.body != seen) {
                return Err(self.lost().await);
            }
        }
        self.replace(etag).await
    }

    /// Renews the lease; fails with [`StorageError::LeaseLost`] if another writer took it.
    pub async fn renew(&mut self) -> Result<(), StorageError> {
        self.record.renewed_micros = now_micros();
        let etag = self.etag.clone();
        self.replace(etag.as_deref()).await
    }

    /// Until when the lease is ours without another renewal, µs since the epoch (by
    /// this writer's clock).
    pub fn valid_until_micros(&self) -> u64 {
        self.record
            .renewed_micros
            .saturating_add(self.record.ttl_seconds.saturating_mul(1_000_000))
    }

    /// Gives the lease up (a clean stop), so another writer need not wait for its TTL.
    pub async fn release(self) -> Result<(), StorageError> {
        self.check_still_ours().await?;
        self.store.delete(keys::LEASE).await?;
        Ok(())
    }

    /// Writes our record over the lease whose tag is `etag`.
    async fn replace(&mut self, etag: Option<&str>) -> Result<(), StorageError> {
        let replaced = match etag {
            Some(etag) if self.store.honours_conditions() => {
                self.store
                    .put_if_match(keys::LEASE, self.body(), &Metadata::new(), etag)
                    .await?
            }
            _ => {
                self.check_still_ours_unless_taking_over().await?;
                self.store
                    .put(keys::LEASE, self.body(), &Metadata::new())
                    .await?;
                Some(String::new())
            }
        };
        match replaced {
            Some(tag) => {
                self.etag = Some(tag).filter(|t| !t.is_empty());
                self.held = true;
                self.check_still_ours().await
            }
            None => Err(self.lost().await),
        }
    }

    /// Reads the lease back: another writer may have raced us on a store without
    /// conditional writes.
    async fn check_still_ours(&self) -> Result<(), StorageError> {
        match self.current().await? {
            Some(held) if held.writer_id == self.record.writer_id => Ok(()),
            _ => Err(self.lost().await),
        }
    }

    /// Before an unconditional write: the lease must still be ours, unless this writer has
    /// not held it yet (a take-over, whose caller watched the lease go unrenewed). Whether
    /// another holder's lease is stale is never judged here by comparing clocks.
    async fn check_still_ours_unless_taking_over(&self) -> Result<(), StorageError> {
        if self.held {
            self.check_still_ours().await
        } else {
            Ok(())
        }
    }

    async fn current(&self) -> Result<Option<LeaseRecord>, StorageError> {
        Ok(self
            .store
            .get(keys::LEASE)
            .await?
            .and_then(|object| serde_json::from_slice(&object.body).ok()))
    }

    async fn lost(&self) -> StorageError {
        let holder = match self.current().await {
            Ok(Some(held)) => held.holder,
            _ => "nobody".to_owned(),
        };
        StorageError::LeaseLost {
            location: self.store.location(),
            holder,
        }
    }

    fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.record).unwrap_or_default())
    }
}

/// The writer id kept in the spool directory, created on first use: the same spool is
/// the same writer, across restarts.
pub fn writer_id(spool: &std::path::Path) -> Result<String, StorageError> {
    let path = spool.join("binlogd-writer-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("reading", &path)(e)),
    }
    let seed = format!(
        "{}/{}/{}/{}",
        hostname(),
        std::process::id(),
        now_micros(),
        spool.display()
    );
    let id = format!(
        "writer-{:08x}{:08x}",
        crc32fast::hash(seed.as_bytes()),
        now_micros() as u32
    );
    crate::layout::write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Holds a lease: a task renews it every third of its TTL until it is released, and says
/// when it was lost (another writer took it, or the store refuses it for good). Renewal
/// runs whatever the writer is doing — opening an archive through a slow store, one long
/// checkpoint of a large backlog, a purge deleting many files.
pub struct LeaseKeeper {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<Lease, StorageError>>>,
    lost: tokio::sync::watch::Receiver<bool>,
    /// [`Lease::valid_until_micros`] as of the last renewal; 0 once lost.
    valid_until: Arc<AtomicU64>,
}

impl LeaseKeeper {
    /// Renews `lease` every third of `ttl` from now on (on the current tokio runtime).
    pub fn start(mut lease: Lease, ttl: Duration) -> LeaseKeeper {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (lose, lost) = tokio::sync::watch::channel(false);
        let valid_until = Arc::new(AtomicU64::new(lease.valid_until_micros()));
        let renewed_until = Arc::clone(&valid_until);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(lease),
                    _ = tokio::time::sleep(ttl / 3) => match lease.renew().await {
                        Ok(()) => renewed_until.store(lease.valid_until_micros(), Ordering::Relaxed),
                        Err(StorageError::Store(e)) if e.is_transient() => {
                            tracing::warn!(error = %e, "renewing the archive's lease failed; retrying");
                        }
                        Err(e) => {
                            renewed_until.store(0, Ordering::Relaxed);
                            let _ = lose.send(true);
                            return Err(e);
                        }
                    },
                }
            }
        });
        LeaseKeeper {
            stop: Some(stop),
            task: Some(task),
            lost,
            valid_until,
        }
    }

    /// Until when the lease is ours as of its last renewal, µs since the epoch; 0 once
    /// it is lost. A time in the past means renewals have been failing for a whole TTL:
    /// another writer may take the archive over at any moment.
    pub fn valid_until_micros(&self) -> u64 {
        self.valid_until.load(Ordering::Relaxed)
    }

    /// A view of [`LeaseKeeper::valid_until_micros`] that another task can read while
    /// the keeper is busy (a checkpoint longer than the TTL, say).
    pub fn validity(&self) -> LeaseValidity {
        LeaseValidity(Arc::clone(&self.valid_until))
    }

    /// Whether the lease is gone: stop writing.
    pub fn lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Why it was lost (once [`LeaseKeeper::lost`] says so).
    pub async fn loss(mut self) -> StorageError {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => StorageError::LeaseTask("the lease was given up".to_owned()),
                Err(e) => StorageError::LeaseTask(e.to_string()),
            },
            None => StorageError::LeaseTask("the lease was given up".to_owned()),
        }
    }

    /// Stops renewing and gives the lease up (a clean stop: the next writer need not
    /// wait for its TTL).
    pub async fn release(mut self) -> Result<(), StorageError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let lease = match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| StorageError::LeaseTask(e.to_string()))??,
            None => {
                return Err(StorageError::LeaseTask(
                    "the lease was given up already".to_owned(),
                ));
            }
        };
        lease.release().await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        // Not released: stop renewing, and let the TTL run out.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Until when a kept lease holds, readable from anywhere (see [`LeaseKeeper::validity`]).
#[derive(Debug, Clone)]
pub struct LeaseValidity(Arc<AtomicU64>);

impl LeaseValidity {
    /// Until when the lease is ours as of its last renewal, µs since the epoch; 0 once
    /// it is lost.
    pub fn valid_until_micros(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("lost", &self.lost())
            .finish_non_exhaustive()
    }
}
