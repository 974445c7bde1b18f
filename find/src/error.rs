//! What can go wrong in a find, each naming what it concerns.

/// A find error.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// A filter that cannot be used as given.
    #[error("{0}")]
    Usage(String),
    /// The archive could not be listed or read.
    #[error(transparent)]
    Storage(#[from] binlogd_storage::StorageError),
    /// Archived bytes that do not parse: damage, which `binlogd verify` also reports.
    #[error("{file} at offset {offset}{event}: {message}")]
    Corrupt {
        /// `epoch/name`.
        file: String,
        /// Where.
        offset: u64,
        /// `, in a TABLE_MAP event` when the event type is known.
        event: String,
        /// What is wrong.
        message: String,
    },
    /// Reading a local file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A reading task failed to run.
    #[error("a reading task failed: {0}")]
    Task(String),
}

impl FindError {
    /// A parse error in `file`, where the parser says.
    pub(crate) fn corrupt(file: &str, error: &binlogd_parser::ParseError) -> FindError {
        FindError::Corrupt {
            file: file.to_owned(),
            offset: error.offset,
            event: error
                .event_type
                .map_or(String::new(), |t| format!(", in a {t} event")),
            message: error.kind.to_string(),
        }
    }
}
