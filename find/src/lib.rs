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
//! The index does the first cut: files outside `--from`/`--until` are not opened,
//! transactions outside the time or GTID filters are not read (nor, when every `--kind` is
//! a DDL kind, those the index does not mark as DDL), and the ones
//! left are read in runs of at most [`CHUNK`] bytes, several files at once, parsed on
//! the blocking pool while the next bytes are fetched. Results come back file by file
//! in archive order.

pub mod filter;
pub mod statement;

mod error;
mod reading;
mod scan;

use std::sync::Arc;

use binlogd_storage::{Archive, ArchiveFile, TransactionEntry};
use futures_util::stream::{self, Stream, StreamExt};

pub use error::FindError;
pub use filter::Filter;
pub use scan::{Change, Found, Target};

use crate::reading::FileBytes;

/// Bytes read and parsed at a time (more only for one transaction larger than this).
pub const CHUNK: u64 = 16 << 20;

/// What a find will read, decided from the archive's indexes.
#[derive(Debug, Clone)]
pub struct Plan {
    files: Vec<(ArchiveFile, Vec<Chunk>)>,
    /// Files in the archive.
    pub files_in_archive: usize,
    /// Bytes to read and parse.
    pub bytes: u64,
    /// Transactions to read.
    pub transactions: u64,
}

impl Plan {
    /// Files to read.
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

/// A run of consecutive transactions of one file, read at once.
#[derive(Debug, Clone)]
struct Chunk {
    start: u64,
    end: u64,
    entries: Vec<TransactionEntry>,
}

/// Chooses, from the archive's indexes, the transactions `filter` can match (by commit
/// time, GTID; only those marked DDL when every `--kind` is a DDL kind), skipping repeats
/// of a failover's earlier epoch, and cuts them into chunks.
pub async fn plan(archive: &Archive, filter: &Filter) -> Result<Plan, FindError> {
    let files = archive.files().await?;
    let files_in_archive = files.len();
    let mut planned = Vec::new();
    let (mut bytes, mut transactions) = (0, 0);
    let only_ddl = filter.only_ddl();
    for file in files {
        let outside = |first: Option<u64>, last: Option<u64>| {
            filter
                .until_micros
                .is_some_and(|until| first.is_some_and(|f| f > until))
                || filter
                    .from_micros
                    .is_some_and(|from| last.is_some_and(|l| l < from))
        };
        if file.transactions == 0 || outside(file.first_commit_micros, file.last_commit_micros) {
            continue;
        }
        let index = archive.file_index(&file).await?;
        let mut chunks: Vec<Chunk> = Vec::new();
        for entry in index.transactions {
            if entry.repeated
                || (only_ddl && !entry.ddl)
                || entry.end > file.indexed_end
                || !filter.time_allows(entry.commit_micros)
                || !filter.gtid_allows(entry.gtid.as_ref())
            {
                continue;
            }
            bytes += entry.end - entry.start;
            transactions += 1;
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
        if !chunks.is_empty() {
            planned.push((file, chunks));
        }
    }
    Ok(Plan {
        files: planned,
        files_in_archive,
        bytes,
        transactions,
    })
}

/// What one file gave: its matches, and the tables whose `--row-match` columns have no
/// names in the binlog (nor in `--columns`).
#[derive(Debug, Clone, Default)]
pub struct FileResult {
    /// Matching transactions, in file order.
    pub found: Vec<Found>,
    /// `schema.table` of each table a `--row-match` by name could not be applied to.
    pub unnamed_tables: Vec<String>,
}

/// Reads what `plan` chose, `jobs` files at a time; yields each file's matches in
/// archive order. `progress` hears of every chunk's bytes once parsed.
pub fn run<'a>(
    archive: &'a Archive,
    plan: Plan,
    filter: Arc<Filter>,
    jobs: usize,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> impl Stream<Item = Result<FileResult, FindError>> + 'a {
    stream::iter(plan.files)
        .map(move |(file, chunks)| {
            scan_file(
                archive,
                file,
                chunks,
                Arc::clone(&filter),
                Arc::clone(&progress),
            )
        })
        .buffered(jobs.max(1))
}

async fn scan_file(
    archive: &Archive,
    file: ArchiveFile,
    chunks: Vec<Chunk>,
    filter: Arc<Filter>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<FileResult, FindError> {
    let id = format!("{}/{}", file.epoch, file.name);
    let mut bytes = FileBytes::open(archive, &file).await?;
    let framer = bytes.format(&id).await?;
    let names = Arc::new((file.epoch.clone(), file.name.clone()));
    let mut result = FileResult::default();
    for chunk in chunks {
        let data = bytes.read(chunk.start, chunk.end).await?;
        let (framer, filter, names) = (framer.clone(), Arc::clone(&filter), Arc::clone(&names));
        let (hits, unnamed) = tokio::task::spawn_blocking(move || {
            scan::scan(&names, &data, chunk.start, &framer, &chunk.entries, &filter)
        })
        .await
        .map_err(|e| FindError::Task(e.to_string()))??;
        progress(chunk.end - chunk.start);
        result.found.extend(hits);
        for table in unnamed {
            if !result.unnamed_tables.contains(&table) {
                result.unnamed_tables.push(table);
            }
        }
    }
    Ok(result)
}
