//! The pump: moves a dump's events into the archive writer until the stream ends, fails,
//! or a shutdown is asked for, making them durable by a [`DurabilityPolicy`] and
//! acknowledging a semi-sync primary only once its transaction is durable.
//!
//! Syncs run on the writer's sync thread while the stream is read on. Each event is
//! ingested where it lies in the receive buffer (`BinlogStream::read_piece`); when
//! nothing more is there, the pump asks for a sync and waits for the socket, a finished
//! sync or a shutdown, whichever comes first.

use crate::checkpoint::SpoolShare;
use crate::config::DurabilityPolicy;
use crate::error::ReplicaError;
use crate::observer::{Archived, Observer};
use binlogd_protocol::BinlogStream;
use binlogd_storage::index::now_micros;
use binlogd_storage::{ArchiveWriter, Durable, Ingested, WriterStats};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// `exit_at_end` and everything is archived.
    CaughtUp,
    /// A shutdown was asked for.
    Shutdown,
}

/// A spool that pauses the stream while it holds `max` bytes the store does not have.
#[derive(Debug, Clone)]
pub(crate) struct SpoolLimit {
    pub share: Arc<SpoolShare>,
    pub max: u64,
}

/// What the pump keeps between sessions, and what it reports to.
pub(crate) struct Pump<'a> {
    pub policy: DurabilityPolicy,
    pub observer: &'a dyn Observer,
    pub shutdown: watch::Receiver<bool>,
    pub spool: Option<SpoolLimit>,
    /// What the archive holds durably, as the writer last said.
    pub durable: &'a mut Option<Durable>,
    /// Where the stream is stuck, until a transaction past that place is durable.
    pub stuck_at: &'a mut Option<(String, u64)>,
    /// The writer's counters as last reported (the writer counts per session).
    pub reported: WriterStats,
}

impl Pump<'_> {
    /// Moves events from `stream` into `writer` until something ends the session; then
    /// makes what arrived durable, whatever ended it.
    pub async fn run(
        mut self,
        mut stream: BinlogStream,
        mut writer: ArchiveWriter,
    ) -> Result<SessionEnd, ReplicaError> {
        let result = self.pump(&mut stream, &mut writer).await;
        let synced = writer
            .sync()
            .map(|durable| self.note_durable(durable, &writer, true));
        match (result, synced) {
            (Ok(end), Ok(())) => Ok(end),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    async fn pump(
        &mut self,
        stream: &mut BinlogStream,
        writer: &mut ArchiveWriter,
    ) -> Result<SessionEnd, ReplicaError> {
        let policy = self.policy;
        // Masks, not divisions: these are tested for every event.
        let look = policy.look_every.max(1).next_power_of_two() - 1;
        let yield_now = policy.yield_every.max(1).next_power_of_two() - 1;
        let sync_done = Arc::new(tokio::sync::Notify::new());
        let waker = Arc::clone(&sync_done);
        writer.set_sync_waker(move || waker.notify_one());
        let mut last_sync = Instant::now();
        let mut pieces = 0u32;
        let mut shutdown = self.shutdown.clone();
        loop {
            // A lock: look now and then (and whenever waiting, below).
            if pieces & look == 0 && *shutdown.borrow() {
                return Ok(SessionEnd::Shutdown);
            }
            let read =
                stream.read_piece(|bytes, first, last| (writer.ingest(bytes, first, last), last));
            let Some(read) = read else {
                // Nothing more ready: have what arrived made durable.
                self.report_durable(writer, true)?;
                if writer.syncs_in_flight() == 0 && writer.request_sync()? {
                    last_sync = Instant::now();
                }
                tokio::select! {
                    ready = stream.readable() => ready?,
                    _ = sync_done.notified() => {}
                    _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                }
                continue;
            };
            let Some((ingested, last)) = read? else {
                return Ok(SessionEnd::CaughtUp);
            };
            let ingested = ingested?;
            if let Ingested::Heartbeat { file, position } = &ingested
                && writer.position().is_some_and(|(ours, _)| ours == file)
            {
                // The source is at `position` of the file we write: the difference is
                // what is not yet durable here.
                let durable = self.durable.as_ref().filter(|d| &d.file == file);
                let durable = durable.map_or(0, |d| d.position);
                self.observer.behind_by(position.saturating_sub(durable));
            }
            if last && stream.ack_requested() {
                // Semi-sync: the primary's commit waits for this acknowledgement, which
                // promises the transaction is durable here.
                let durable = writer.sync()?;
                self.note_durable(durable, writer, false);
                if let Some(durable) = &*self.durable
                    && !writer.in_event()
                {
                    stream
                        .acknowledge(&durable.file, durable.position)
                        .await
                        .map_err(ReplicaError::protocol(
                            "acknowledging to the semi-sync primary",
                        ))?;
                }
                last_sync = Instant::now();
            }
            pieces = pieces.wrapping_add(1);
            if pieces & look == 0 {
                self.report_durable(writer, false)?;
                if self.spool_is_full() {
                    let durable = writer.sync()?;
                    self.note_durable(durable, writer, false);
                    if self.wait_for_spool_room(&mut shutdown).await {
                        return Ok(SessionEnd::Shutdown);
                    }
                }
                if writer.syncs_in_flight() == 0
                    && (writer.unsynced_bytes() >= policy.sync_after_bytes
                        || last_sync.elapsed() >= policy.sync_after)
                    && writer.request_sync()?
                {
                    last_sync = Instant::now();
                }
            }
            if pieces & yield_now == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Takes in the syncs the writer finished, without waiting.
    fn report_durable(
        &mut self,
        writer: &mut ArchiveWriter,
        caught_up: bool,
    ) -> Result<(), ReplicaError> {
        self.observer.heard();
        let durable = writer.poll_durable()?;
        self.note_durable(durable, writer, caught_up);
        Ok(())
    }

    /// Reports what is durable after a sync finished, or when the stream is caught up.
    fn note_durable(&mut self, durable: Option<Durable>, writer: &ArchiveWriter, caught_up: bool) {
        let had_news = durable.is_some();
        if let Some(durable) = durable {
            *self.durable = Some(durable);
        }
        if let (Some((file, offset)), Some(durable)) = (&*self.stuck_at, &*self.durable)
            && (&durable.file != file || durable.position > *offset)
        {
            tracing::info!(file = %durable.file, position = durable.position, "the stream is moving again");
            *self.stuck_at = None;
            self.observer.stuck(None);
        }
        if !had_news && !caught_up {
            return;
        }
        let stats = writer.stats();
        let new_bytes = stats.bytes - self.reported.bytes;
        if let Some(spool) = &self.spool {
            spool.share.written.fetch_add(new_bytes, Ordering::Relaxed);
        }
        let last_transaction = self
            .durable
            .as_ref()
            .and_then(|d| d.last_transaction.as_ref());
        let all_durable = caught_up && !writer.has_unsynced() && writer.syncs_in_flight() == 0;
        let now = now_micros();
        let lag = last_transaction.map(|last| {
            if all_durable {
                Duration::ZERO
            } else {
                Duration::from_micros(now.saturating_sub(last.commit_micros))
            }
        });
        // Caught up with everything durable: nothing the source committed until now is
        // missing. Otherwise only what the last durable transaction shows.
        let recoverable = if all_durable {
            Some(now)
        } else {
            last_transaction.map(|last| last.commit_micros)
        };
        if let Some(recoverable) = recoverable {
            match &self.spool {
                // An object archive can restore to it once a checkpoint has shipped it.
                Some(spool) => {
                    spool
                        .share
                        .recoverable
                        .fetch_max(recoverable, Ordering::Relaxed);
                }
                None => self.observer.recoverable(recoverable),
            }
        }
        self.observer.archived(&Archived {
            new_events: stats.events - self.reported.events,
            new_bytes,
            new_transactions: stats.transactions - self.reported.transactions,
            session_transactions: stats.transactions,
            session_bytes: stats.bytes,
            last_transaction,
            lag,
            position: writer.position(),
        });
        self.reported.events = stats.events;
        self.reported.bytes = stats.bytes;
        self.reported.transactions = stats.transactions;
    }

    /// Whether the spool holds more than its limit of bytes the store does not have yet.
    fn spool_is_full(&self) -> bool {
        self.spool
            .as_ref()
            .is_some_and(|s| s.share.backlog.load(Ordering::Relaxed) > s.max)
    }

    /// Stops reading from the source until uploads bring the spool under its limit.
    /// Returns true if a shutdown was asked for meanwhile.
    async fn wait_for_spool_room(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        tracing::warn!(
            spool_max = self.spool.as_ref().map_or(0, |s| s.max),
            "the spool is full of data the object store does not have yet; pausing the stream \
             until uploads catch up"
        );
        while self.spool_is_full() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return true,
            }
        }
        tracing::info!("the spool has room again; streaming on");
        false
    }
}
