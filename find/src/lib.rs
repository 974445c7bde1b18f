//! `binlogd find`: which archived transactions match what a user remembers of the one
//! that broke their data — a table, a kind of change, a statement's text, a number of
//! rows, a time — across the whole archive, local or in an object store.
//!
//! - [`filter`]: what is looked for; every filter given must hold.
//! - [`statement`]: what a statement's text does, and to which tables.
//! - `scan`: one run of archived bytes read transaction by transaction: tables, kinds,
//!   rows (row images walked only when rows must be counted), statement texts.
//! - `reading`: byte ranges of a local file or of an object archive's segments.
//!
//! The index does the first cut: files outside `--from`/`--until` are not opened; each
//! other file's index (several read and parsed at once) leaves out the transactions
//! outside the time or GTID filters (and, when every `--kind` is a DDL kind, those it does
//! not mark as DDL); the ones left are read in runs of at most [`CHUNK`] bytes, parsed on
//! the blocking pool while the next bytes are fetched. Results come back file by file in
//! archive order.

pub mod filter;
pub mod statement;

mod error;
mod reading;
mod scan;

use std::sync::Arc;

use binlogd_storage::{Archive, FileIndex, TransactionEntry};
use futures_util::stream::{self, Stream, StreamExt};

pub use error::FindError;
pub use filter::Filter;
pub use scan::{Change, Found, Target};

use crate::reading::FileBytes;

/// Bytes read and parsed at a time (more only for one transaction larger than this).
pub const CHUNK: u64 = 16 << 20;

/// What a find will look at: the archive's files whose commit times can match.
#[derive(Debug, Clone)]
pub struct Plan {
    files: Vec<FileToRead>,
    /// Files in the archive.
    pub files_in_archive: usize,
    /// Bytes of the files to look at (what is read of them is decided by their indexes).
    pub bytes: u64,
}

impl Plan {
    /// Files to look at.
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

/// One archived file to look at.
#[derive(Debug, Clone)]
struct FileToRead {
    epoch: String,
    name: String,
    /// Where its last indexed transaction ends.
    indexed_end: u64,
    /// First and last commit times, when known without reading its index.
    commits: Option<(Option<u64>, Option<u64>)>,
}

/// A run of consecutive transactions of one file, read at once.
#[derive(Debug, Clone)]
struct Chunk {
    start: u64,
    end: u64,
    entries: Vec<TransactionEntry>,
}

/// Lists the archive and keeps the files whose commit times can match `filter` (when
/// the listing knows them: an object archive's catalogue does; a local archive is listed
/// by its indexes' ends only, so that each index is read once, in parallel, by [`run`]).
pub async fn plan(archive: &Archive, filter: &Filter) -> Result<Plan, FindError> {
    let files: Vec<FileToRead> = match archive {
        Archive::Local(local) => {
            let mut files = Vec::new();
            for epoch in local.epochs()? {
                let epoch_name = binlogd_storage::remote::format::epoch_name(&epoch);
                for name in epoch.binlog_files()? {
                    let ends = binlogd_storage::read_index_ends(&epoch.index_path(&name))?;
                    let size = std::fs::metadata(epoch.data_path(&name)).map_or(0, |m| m.len());
                    files.push(FileToRead {
                        epoch: epoch_name.clone(),
                        indexed_end: if ends.closed.is_some() {
                            size
                        } else {
                            ends.indexed_end.min(size)
                        },
                        name,
                        commits: None,
                    });
                }
            }
            files
        }
        Archive::Remote(_) => archive
            .files()
            .await?
            .into_iter()
            .filter(|file| file.transactions > 0)
            .map(|file| FileToRead {
                commits: Some((file.first_commit_micros, file.last_commit_micros)),
                epoch: file.epoch,
                name: file.name,
                indexed_end: file.indexed_end,
            })
            .collect(),
    };
    let files_in_archive = files.len();
    let outside = |file: &FileToRead| {
        let Some((first, last)) = file.commits else {
            return false;
        };
        filter
            .until_micros
            .is_some_and(|until| first.is_some_and(|f| f > until))
            || filter
                .from_micros
                .is_some_and(|from| last.is_some_and(|l| l < from))
    };
    let files: Vec<FileToRead> = files
        .into_iter()
        .filter(|file| file.indexed_end > 4 && !outside(file))
        .collect();
    Ok(Plan {
        bytes: files.iter().map(|f| f.indexed_end).sum(),
        files,
        files_in_archive,
    })
}

/// The transactions of one file's index that `filter` can match (by commit time, GTID;
/// only those marked DDL when every `--kind` is a DDL kind), skipping repeats of a
/// failover's earlier epoch, cut into chunks.
fn choose(entries: Vec<TransactionEntry>, indexed_end: u64, filter: &Filter) -> Vec<Chunk> {
    let only_ddl = filter.only_ddl();
    let mut chunks: Vec<Chunk> = Vec::new();
    for entry in entries {
        if entry.repeated
            || (only_ddl && !entry.ddl)
            || entry.end > indexed_end
            || !filter.time_allows(entry.commit_micros)
            || !filter.gtid_allows(entry.gtid.as_ref())
        {
            continue;
        }
        match chunks.last_mut() {
            Some(chunk) if chunk.end == entry.start && chunk.end - chunk.start < CHUNK => {
                chunk.end = entry.end;
                chunk.entries.push(entry);
            }
            _ => chunks.push(Chunk {
                start: entry.start,
                end: entry.end,
                entries: vec![entry],
            }),
        }
    }
    chunks
}

/// What one file gave: its matches, and the tables whose `--row-match` columns have no
/// names in the binlog (nor in `--columns`).
#[derive(Debug, Clone, Default)]
pub struct FileResult {
    /// Matching transactions, in file order.
    pub found: Vec<Found>,
    /// `schema.table` of each table a `--row-match` by name could not be applied to.
    pub unnamed_tables: Vec<String>,
    /// Transactions read.
    pub transactions: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// Reads the files `plan` kept, `jobs` at a time (each one's index, then the ranges of
/// the transactions it names that can match); yields each file's matches in archive
/// order. `progress` hears of every file's bytes as they are dealt with.
pub fn run<'a>(
    archive: &'a Archive,
    plan: Plan,
    filter: Arc<Filter>,
    jobs: usize,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> impl Stream<Item = Result<FileResult, FindError>> + 'a {
    stream::iter(plan.files)
        .map(move |file| scan_file(archive, file, Arc::clone(&filter), Arc::clone(&progress)))
        .buffered(jobs.max(1))
}

/// A file's index: read and parsed on the blocking pool for a local archive (so several
/// files' are at once), fetched for an object archive.
async fn file_index(archive: &Archive, file: &FileToRead) -> Result<FileIndex, FindError> {
    match archive {
        Archive::Local(local) => {
            let path = local.root().join(&file.epoch).join(format!(
                "{}{}",
                file.name,
                binlogd_storage::index::INDEX_SUFFIX
            ));
            Ok(
                tokio::task::spawn_blocking(move || binlogd_storage::read_index(&path))
                    .await
                    .map_err(|e| FindError::Task(e.to_string()))??,
            )
        }
        Archive::Remote(remote) => Ok(remote.file_index(&file.epoch, &file.name).await?),
    }
}

async fn scan_file(
    archive: &Archive,
    file: FileToRead,
    filter: Arc<Filter>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<FileResult, FindError> {
    let id = format!("{}/{}", file.epoch, file.name);
    let index = file_index(archive, &file).await?;
    let chunks = choose(index.transactions, file.indexed_end, &filter);
    let mut result = FileResult::default();
    if !chunks.is_empty() {
        let mut bytes = FileBytes::open(archive, &file.epoch, &file.name).await?;
        let framer = bytes.format(&id).await?;
        let names = Arc::new((file.epoch.clone(), file.name.clone()));
        for chunk in chunks {
            let data = bytes.read(chunk.start, chunk.end).await?;
            let size = chunk.end - chunk.start;
            result.transactions += chunk.entries.len() as u64;
            result.bytes += size;
            let (framer, filter, names) = (framer.clone(), Arc::clone(&filter), Arc::clone(&names));
            let (hits, unnamed) = tokio::task::spawn_blocking(move || {
                scan::scan(&names, &data, chunk.start, &framer, &chunk.entries, &filter)
            })
            .await
            .map_err(|e| FindError::Task(e.to_string()))??;
            progress(size);
            result.found.extend(hits);
            for table in unnamed {
                if !result.unnamed_tables.contains(&table) {
                    result.unnamed_tables.push(table);
                }
            }
        }
    }
    // What the index let go unread counts as dealt with.
    progress(file.indexed_end.saturating_sub(result.bytes));
    Ok(result)
}
