//! Reading byte ranges of an archived file, wherever the archive is: a local file by
//! positional reads on the blocking pool, an object archive segment by segment (only
//! the segments a range touches are fetched, each checked as `storage` checks it).

use std::path::PathBuf;
use std::sync::Arc;

use binlogd_parser::{EventReader, Framer};
use binlogd_storage::Archive;
use binlogd_storage::remote::read::{FileSegments, RemoteArchive};

use crate::error::FindError;

/// `Read` over a file from an offset, by positional reads (the file's cursor is shared).
struct ReadAt<'f> {
    file: &'f std::fs::File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let read = self.file.read_at(buf, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// One archived file, open for reading ranges.
pub(crate) enum FileBytes<'a> {
    Local {
        file: Arc<std::fs::File>,
        path: PathBuf,
    },
    Remote {
        archive: &'a RemoteArchive,
        segments: FileSegments,
        /// The last segment fetched: its number, the offset it starts at, its bytes.
        cached: Option<(usize, u64, Vec<u8>)>,
        id: String,
    },
}

impl<'a> FileBytes<'a> {
    pub async fn open(
        archive: &'a Archive,
        epoch: &str,
        name: &str,
    ) -> Result<FileBytes<'a>, FindError> {
        match archive {
            Archive::Local(local) => {
                let path = local.root().join(epoch).join(name);
                let opened = std::fs::File::open(&path).map_err(|source| FindError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                Ok(FileBytes::Local {
                    file: Arc::new(opened),
                    path,
                })
            }
            Archive::Remote(remote) => Ok(FileBytes::Remote {
                archive: remote,
                segments: remote.file_segments(epoch, name).await?,
                cached: None,
                id: format!("{epoch}/{name}"),
            }),
        }
    }

    /// The bytes `[start, end)`.
    pub async fn read(&mut self, start: u64, end: u64) -> Result<Vec<u8>, FindError> {
        match self {
            FileBytes::Local { file, path } => {
                let file = Arc::clone(file);
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let len = usize::try_from(end - start).unwrap_or(0);
                    let mut bytes = Vec::with_capacity(len);
                    // Read into the spare capacity without zeroing it first: `take` stops
                    // at `len`, and a short file is an error below.
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(
                            ReadAt {
                                file: &file,
                                at: start,
                            },
                            len as u64,
                        ),
                        &mut bytes,
                    )
                    .and_then(|read| {
                        if read == len {
                            Ok(())
                        } else {
                            Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("the file ends after {read} of {len} bytes"),
                            ))
                        }
                    })
                    .map_err(|source| FindError::Io {
                        path: format!("{} (bytes {start}..{end})", path.display()),
                        source,
                    })?;
                    Ok(bytes)
                })
                .await
                .map_err(|e| FindError::Task(e.to_string()))?
            }
            FileBytes::Remote {
                archive,
                segments,
                cached,
                id,
            } => {
                let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
                let mut at = start;
                while at < end {
                    let Some((number, first)) = segments.segment_at(at) else {
                        return Err(FindError::Corrupt {
                            file: id.clone(),
                            offset: at,
                            event: String::new(),
                            message: format!(
                                "no uploaded segment holds this byte (the file has {} bytes \
                                 in the store)",
                                segments.size()
                            ),
                        });
                    };
                    if cached.as_ref().is_none_or(|(n, _, _)| *n != number) {
                        let segment = archive.fetch_segment(segments, number).await?;
                        *cached = Some((number, first, segment));
                    }
                    let Some((_, first, segment)) = cached.as_ref() else {
                        break;
                    };
                    let from = usize::try_from(at - first).unwrap_or(usize::MAX);
                    let to = usize::try_from(end - first)
                        .unwrap_or(usize::MAX)
                        .min(segment.len());
                    let Some(part) = segment.get(from..to).filter(|p| !p.is_empty()) else {
                        return Err(FindError::Corrupt {
                            file: id.clone(),
                            offset: at,
                            event: String::new(),
                            message: "a segment ends before the bytes it should hold".to_owned(),
                        });
                    };
                    bytes.extend_from_slice(part);
                    at += part.len() as u64;
                }
                Ok(bytes)
            }
        }
    }

    /// The file's format description, read from its start: a framer ready for events
    /// anywhere in it.
    pub async fn format(&mut self, id: &str) -> Result<Framer, FindError> {
        // The magic and the FORMAT_DESCRIPTION's header, then the whole event.
        let head = self.read(0, 4 + 19).await?;
        let size = u32::from_le_bytes([head[13], head[14], head[15], head[16]]);
        let head = self.read(0, 4 + u64::from(size)).await?;
        let mut reader = EventReader::new(&head);
        match reader.next() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(FindError::corrupt(id, &e)),
            None => {}
        }
        if reader.format().is_none() {
            return Err(FindError::Corrupt {
                file: id.to_owned(),
                offset: 4,
                event: String::new(),
                message: "no format description at the start of the file".to_owned(),
            });
        }
        Ok(reader.framer().clone())
    }
}
