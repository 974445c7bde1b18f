//! Reading an archived binlog file event by event, in bounded memory.
//!
//! Events are read in chunks of a few MiB; an event larger than a chunk is checked piece
//! by piece ([`binlogd_parser::PiecewiseEvent`]) and reported by its header alone, so a
//! file holding a 1 GB row event is read with a few MiB of memory.

use crate::error::StorageError;
use binlogd_parser::{
    BINLOG_MAGIC, ErrorKind, Event, EventHeader, Frame, Framer, HEADER_LEN, ParseError, RawEvent,
    decode_event,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read at a time; events up to this size are decoded whole.
const CHUNK: usize = 8 << 20;

/// An event met while scanning.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// An event read whole and decoded.
    Event(RawEvent<'a>, Event<'a>),
    /// An event larger than a chunk: checked, but known by its header only.
    Unread {
        /// Its offset.
        offset: u64,
        /// Its header.
        header: EventHeader,
    },
}

/// How a scan ended.
#[derive(Debug)]
pub enum ScanEnd {
    /// At the end of the file, on an event boundary.
    Clean,
    /// The file ends inside the event at `offset`.
    Incomplete {
        /// Where the unfinished event starts.
        offset: u64,
    },
    /// The event at the error's offset is corrupt.
    Corrupt(ParseError),
}

/// Reads the events of the file at `path` from `from` (0 for the whole file, magic
/// included; otherwise an event boundary, with `framer` knowing the file's format), and
/// hands each to `visit`.
pub fn scan_file(
    path: &Path,
    from: u64,
    mut framer: Framer,
    mut visit: impl FnMut(Scanned<'_>),
) -> Result<ScanEnd, StorageError> {
    let mut file = File::open(path).map_err(StorageError::io("opening", path))?;
    let mut offset = from;
    if from == 0 {
        let mut magic = [0u8; 4];
        let got = read_full(&mut file, &mut magic, path)?;
        if got < 4 {
            return Ok(ScanEnd::Incomplete { offset: 0 });
        }
        if magic != BINLOG_MAGIC {
            return Ok(ScanEnd::Corrupt(bad_magic()));
        }
        offset = 4;
    } else {
        file.seek(SeekFrom::Start(from))
            .map_err(StorageError::io("seeking in", path))?;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut at = 0; // where in `buf` the event at `offset` starts
    let mut eof = false;
    loop {
        // Have at least a header at hand, or know the file ends.
        if buf.len() - at < HEADER_LEN && !eof {
            eof = refill(&mut file, &mut buf, &mut at, HEADER_LEN, path)?;
        }
        let available = buf.len() - at;
        if available == 0 {
            return Ok(ScanEnd::Clean);
        }
        if available < HEADER_LEN {
            return Ok(ScanEnd::Incomplete { offset });
        }
        let size = u32::from_le_bytes([buf[at + 9], buf[at + 10], buf[at + 11], buf[at + 12]]);
        let size = size as usize;
        if size > CHUNK {
            let in_buf = available.min(size);
            let mut event = match framer.begin_piecewise(&buf[at..at + in_buf], offset) {
                Ok(event) => event,
                Err(e) => return Ok(ScanEnd::Corrupt(e)),
            };
            at += in_buf;
            // The rest straight from the file, a chunk at a time.
            let mut scratch = vec![0u8; CHUNK.min(size)];
            while event.remaining() > 0 {
                let want = usize::try_from(event.remaining())
                    .unwrap_or(usize::MAX)
                    .min(scratch.len());
                let got = read_full(&mut file, &mut scratch[..want], path)?;
                if got == 0 {
                    return Ok(ScanEnd::Incomplete { offset });
                }
                if let Err(e) = event.update(&scratch[..got]) {
                    return Ok(ScanEnd::Corrupt(e));
                }
            }
            let header = *event.header();
            if let Err(e) = event.finish() {
                return Ok(ScanEnd::Corrupt(e));
            }
            visit(Scanned::Unread { offset, header });
            offset += size as u64;
            continue;
        }
        if available < size && !eof {
            eof = refill(&mut file, &mut buf, &mut at, size, path)?;
        }
        match framer.next_event(&buf[at..], offset) {
            Ok(Frame::Event(raw)) => {
                let Some(format) = framer.format() else {
                    return Ok(ScanEnd::Corrupt(missing_format(offset)));
                };
                match decode_event(&raw, format) {
                    Ok(event) => visit(Scanned::Event(raw, event)),
                    Err(e) => return Ok(ScanEnd::Corrupt(e)),
                }
                at += raw.bytes.len();
                offset += raw.bytes.len() as u64;
            }
            Ok(Frame::Incomplete { .. }) => return Ok(ScanEnd::Incomplete { offset }),
            Err(e) => return Ok(ScanEnd::Corrupt(e)),
        }
    }
}

/// Moves the unread bytes to the front of `buf` and reads until `buf` holds `want`
/// unread bytes or a chunk, whichever is more. Returns whether the file ended.
fn refill(
    file: &mut File,
    buf: &mut Vec<u8>,
    at: &mut usize,
    want: usize,
    path: &Path,
) -> Result<bool, StorageError> {
    buf.drain(..*at);
    *at = 0;
    let target = want.max(CHUNK);
    while buf.len() < target {
        let old = buf.len();
        buf.resize(target, 0);
        let got = file
            .read(&mut buf[old..])
            .map_err(StorageError::io("reading", path));
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        };
        buf.truncate(old + got);
        if got == 0 {
            return Ok(true);
        }
        if buf.len() >= want {
            break;
        }
    }
    Ok(false)
}

fn read_full(file: &mut File, out: &mut [u8], path: &Path) -> Result<usize, StorageError> {
    let mut filled = 0;
    while filled < out.len() {
        match file.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StorageError::io("reading", path)(e)),
        }
    }
    Ok(filled)
}

fn bad_magic() -> ParseError {
    ParseError {
        offset: 0,
        event_type: None,
        kind: ErrorKind::BadMagic,
    }
}

fn missing_format(offset: u64) -> ParseError {
    ParseError {
        offset,
        event_type: None,
        kind: ErrorKind::MissingFormatDescription,
    }
}
