//! Making archived bytes durable on a thread of their own.
//!
//! An `fdatasync` of a few MiB takes milliseconds; done inline it stopped the stream from
//! being read for that long each time, which cost a third of a bulk pull's wall time.
//! The writer hands each sync to the [`Syncer`] thread as a [`SyncJob`] and goes on
//! reading; the thread fsyncs the job's data, then appends the index lines describing it
//! and fsyncs those. Jobs run one after the other in the order given, so index lines are
//! appended in order and never before the data they point at, exactly as when the writer
//! synced inline.
//!
//! After a failed fsync nothing further is trusted (the kernel may have dropped the dirty
//! pages and a second fsync would succeed without them): the thread reports the error
//! and stops taking jobs.

use crate::error::StorageError;
use crate::index::TransactionEntry;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Everything up to here is durable and indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    /// The file.
    pub file: String,
    /// The end of its last whole transaction (or other complete event group).
    pub position: u64,
    /// The last transaction indexed, in this file or an earlier one.
    pub last_transaction: Option<TransactionEntry>,
}

/// Called on the syncer thread after each job, to wake whoever waits for durability.
pub(crate) type Waker = Box<dyn Fn() + Send + Sync>;

/// One sync: everything written to `data` so far, then `index_lines` appended to `index`.
#[derive(Debug)]
pub(crate) struct SyncJob {
    pub data: Arc<File>,
    pub data_path: PathBuf,
    /// False when only index lines are new.
    pub sync_data: bool,
    pub index: Arc<File>,
    pub index_path: PathBuf,
    pub index_lines: Vec<u8>,
    /// What is durable once the job is done.
    pub durable: Durable,
}

impl SyncJob {
    fn run(self) -> Result<Durable, StorageError> {
        if self.sync_data {
            self.data
                .sync_data()
                .map_err(StorageError::io("fsync of", &self.data_path))?;
        }
        if !self.index_lines.is_empty() {
            (&*self.index)
                .write_all(&self.index_lines)
                .map_err(StorageError::io("writing", &self.index_path))?;
            self.index
                .sync_data()
                .map_err(StorageError::io("fsync of", &self.index_path))?;
        }
        Ok(self.durable)
    }
}

/// The sync thread and the two channels to it.
pub(crate) struct Syncer {
    jobs: Option<Sender<SyncJob>>,
    done: Receiver<Result<Durable, StorageError>>,
    in_flight: usize,
    waker: Arc<OnceLock<Waker>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("in_flight", &self.in_flight)
            .field("waker", &self.waker.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    pub fn start() -> Result<Syncer, StorageError> {
        let (jobs, job_queue) = channel::<SyncJob>();
        let (report, done) = channel();
        let waker: Arc<OnceLock<Waker>> = Arc::new(OnceLock::new());
        let thread_waker = Arc::clone(&waker);
        let thread = std::thread::Builder::new()
            .name("binlogd-sync".to_owned())
            .spawn(move || {
                for job in job_queue {
                    let result = job.run();
                    let failed = result.is_err();
                    // The writer may be gone (dropped mid-job): nobody left to tell.
                    let _ = report.send(result);
                    if let Some(wake) = thread_waker.get() {
                        wake();
                    }
                    if failed {
                        break;
                    }
                }
            })
            .map_err(StorageError::io(
                "starting",
                std::path::Path::new("the sync thread"),
            ))?;
        Ok(Syncer {
            jobs: Some(jobs),
            done,
            in_flight: 0,
            waker,
            thread: Some(thread),
        })
    }

    /// Sets what wakes a waiter when a job is done (once; later calls are ignored).
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues `job`.
    pub fn submit(&mut self, job: SyncJob) -> Result<(), StorageError> {
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        // Refused only when the thread stopped after a failure: no more fsyncs.
        jobs.send(job).map_err(|_| stopped())?;
        self.in_flight += 1;
        Ok(())
    }

    /// The latest job finished since the last call, without waiting.
    pub fn poll(&mut self) -> Result<Option<Durable>, StorageError> {
        let mut latest = None;
        while let Ok(result) = self.done.try_recv() {
            self.in_flight -= 1;
            latest = Some(result?);
        }
        if self.in_flight > 0 && self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return Err(stopped());
        }
        Ok(latest)
    }

    /// Waits for every queued job; returns the last one's result.
    pub fn wait(&mut self) -> Result<Option<Durable>, StorageError> {
        let mut latest = None;
        while self.in_flight > 0 {
            let result = self.done.recv().map_err(|_| stopped())?;
            self.in_flight -= 1;
            latest = Some(result?);
        }
        Ok(latest)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Finish what was queued before anyone (a recovery) reads the files again.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StorageError {
    StorageError::inconsistent("", 0, "the sync thread stopped after an earlier failure")
}
