//! Event framing: cutting a byte stream into events and checking their checksums.
//!
//! A binlog file is the magic `\xfe b i n` followed by events, each a 19-byte common
//! header ([`crate::header`]), a body, and (when the format description says so) a CRC32
//! over header and body. The first event is a FORMAT_DESCRIPTION that says which
//! checksum the following events carry; a relay log holds a second one, the source's.
//!
//! [`Framer`] is the state this needs and nothing else: it knows the current format
//! description and cuts one event at a time from whatever bytes it is given, so the
//! same code serves a whole file in memory ([`EventReader`]), a tailing reader and the
//! replication stream (one event per packet). Bytes that end inside an event give
//! [`Frame::Incomplete`] with the number of bytes still needed — an expected outcome for
//! the live file, never an error and never a panic.

use crate::EventType;
use crate::error::{ErrorKind, ParseError};
use crate::format_description::{ChecksumAlgorithm, FormatDescription};
use crate::header::{EventHeader, FLAG_BINLOG_IN_USE, HEADER_LEN, parse_event_header};

/// The 4 bytes every binlog and relay log file starts with.
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Largest event accepted: a 1 GiB row (the servers' `max_allowed_packet` limit) plus
/// room for its event's own fields. Anything larger is a corrupt length, not an event.
pub const MAX_EVENT_SIZE: u32 = (1 << 30) + (1 << 20);

/// One framed event: its place, its header and its bytes, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// Byte offset of the event in its file or stream.
    pub offset: u64,
    /// The common header.
    pub header: EventHeader,
    /// The whole event: header, body and checksum.
    pub bytes: &'a [u8],
    checksum_len: u8,
}

impl<'a> RawEvent<'a> {
    /// The event body: what follows the header, without the checksum.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - usize::from(self.checksum_len)]
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.header.event_type
    }

    /// Offset just past the event.
    pub fn end_offset(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// The CRC32 stored at the end of the event, if the event carries one.
    pub fn stored_checksum(&self) -> Option<u32> {
        let tail = self.bytes.len().checked_sub(4)?;
        (self.checksum_len == 4).then(|| crate::le::read_u32(&self.bytes[tail..]))
    }

    /// An event over `bytes` without a checksum, for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(offset: u64, header: EventHeader, bytes: &'a [u8]) -> Self {
        RawEvent {
            offset,
            header,
            bytes,
            checksum_len: 0,
        }
    }

    /// Whether the header marks the event as made up by its sender (not from a file).
    pub fn is_artificial(&self) -> bool {
        self.header.flags & crate::header::FLAG_ARTIFICIAL != 0
    }
}

/// What [`Framer::next_event`] found at the front of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole event.
    Event(RawEvent<'a>),
    /// The input ends inside an event; at least `needed` more bytes are needed.
    Incomplete {
        /// How many more bytes the event needs at least.
        needed: usize,
    },
}

/// Cuts events out of bytes, tracking the format description that governs them.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    format: Option<FormatDescription>,
    skip_checksum_verification: bool,
    encrypted: bool,
    /// Cloned for each event: `Hasher::new` detects CPU features on every call, which
    /// cost 3% of indexing time.
    crc: crc32fast::Hasher,
    /// The checksum of events that arrive before any format description: a replication
    /// stream opens with an artificial ROTATE that carries the checksum the client and
    /// server agreed on (`@master_binlog_checksum`).
    checksum_before_format: Option<ChecksumAlgorithm>,
}

impl Framer {
    /// A framer that has seen no format description yet: the first event it is given
    /// must be one.
    pub fn new() -> Self {
        Framer::default()
    }

    /// A framer that continues a file whose format description is already known, for
    /// reading from the middle of a file.
    pub fn with_format(format: FormatDescription) -> Self {
        Framer {
            format: Some(format),
            ..Framer::default()
        }
    }

    /// A framer for a replication stream whose checksum was negotiated as `checksum`:
    /// events before the first format description (the stream's artificial ROTATE) are
    /// read with it.
    pub fn for_stream(checksum: ChecksumAlgorithm) -> Self {
        Framer {
            checksum_before_format: Some(checksum),
            ..Framer::default()
        }
    }

    /// Skips CRC32 verification (the checksum is still stripped from the body). For
    /// callers that verified the bytes already, e.g. when re-reading their own archive.
    pub fn skip_checksum_verification(mut self, skip: bool) -> Self {
        self.skip_checksum_verification = skip;
        self
    }

    /// The format description in force, once one has been seen.
    pub fn format(&self) -> Option<&FormatDescription> {
        self.format.as_ref()
    }

    /// Frames the event at the front of `input`, which sits at `offset` in its file.
    ///
    /// A FORMAT_DESCRIPTION event replaces the format in force before it is returned.
    pub fn next_event<'a>(
        &mut self,
        input: &'a [u8],
        offset: u64,
    ) -> Result<Frame<'a>, ParseError> {
        if input.len() < HEADER_LEN {
            return Ok(Frame::Incomplete {
                needed: HEADER_LEN - input.len(),
            });
        }
        let header = match parse_event_header(input) {
            Ok((_, header)) => header,
            // Unreachable with 19 bytes at hand, but never panic on input.
            Err(_) => {
                return Err(ParseError::new(
                    offset,
                    None,
                    ErrorKind::Invalid("event header"),
                ));
            }
        };
        let event_type = header.event_type;
        let fail = |kind| ParseError::new(offset, Some(event_type), kind);
        if self.encrypted {
            return Err(fail(ErrorKind::Encrypted));
        }
        let is_format_description = event_type == EventType::FORMAT_DESCRIPTION;
        let checksum = match (&self.format, is_format_description) {
            (_, true) => None, // decided by the event itself, below
            (Some(format), false) => Some(format.checksum),
            (None, false) => match self.checksum_before_format {
                Some(checksum) => Some(checksum),
                None => return Err(fail(ErrorKind::MissingFormatDescription)),
            },
        };
        check_event_size(&header, checksum.map_or(0, ChecksumAlgorithm::len)).map_err(fail)?;
        let size = header.event_size as usize;
        if input.len() < size {
            return Ok(Frame::Incomplete {
                needed: size - input.len(),
            });
        }
        let bytes = &input[..size];
        let checksum = match checksum {
            Some(checksum) => checksum,
            None => {
                let format = FormatDescription::parse(&bytes[HEADER_LEN..]).map_err(fail)?;
                let checksum = format.checksum;
                self.format = Some(format);
                checksum
            }
        };
        let event = RawEvent {
            offset,
            header,
            bytes,
            checksum_len: checksum.len() as u8,
        };
        if let (Some(stored), false) = (event.stored_checksum(), self.skip_checksum_verification) {
            let computed = event_crc32(&event, self.crc.clone());
            if stored != computed {
                return Err(fail(ErrorKind::ChecksumMismatch { stored, computed }));
            }
        }
        if event_type == EventType::MARIADB_START_ENCRYPTION
            && header.flags & crate::header::FLAG_IGNORABLE == 0
        {
            // Every later event is encrypted: say so at the next one instead of
            // misreading ciphertext as headers. (Flagged ignorable, as a server sends it
            // with the decrypted events of a dump, it starts nothing.)
            self.encrypted = true;
        }
        Ok(Frame::Event(event))
    }
}

impl Framer {
    /// Starts checking an event too large to hold whole, from its first bytes (at least
    /// the header), which sit at `offset`. Feed the rest with
    /// [`PiecewiseEvent::update`] and call [`PiecewiseEvent::finish`] at its end: the
    /// same size and checksum checks as [`Framer::next_event`], without the event ever
    /// being in memory at once. Used for events a replication stream sends in 16 MiB
    /// packets and for reading such events from a file.
    pub fn begin_piecewise(
        &mut self,
        first: &[u8],
        offset: u64,
    ) -> Result<PiecewiseEvent, ParseError> {
        let header = match parse_event_header(first) {
            Ok((_, header)) => header,
            Err(_) => {
                return Err(ParseError::new(
                    offset,
                    None,
                    ErrorKind::Truncated {
                        needed: HEADER_LEN.saturating_sub(first.len()),
                    },
                ));
            }
        };
        let fail = |kind| ParseError::new(offset, Some(header.event_type), kind);
        if self.encrypted {
            return Err(fail(ErrorKind::Encrypted));
        }
        // Only a format description changes the format, and it is small.
        if header.event_type == EventType::FORMAT_DESCRIPTION {
            return Err(fail(ErrorKind::Invalid("FORMAT_DESCRIPTION event size")));
        }
        let checksum = match (&self.format, self.checksum_before_format) {
            (Some(format), _) => format.checksum,
            (None, Some(checksum)) => checksum,
            (None, None) => return Err(fail(ErrorKind::MissingFormatDescription)),
        };
        check_event_size(&header, checksum.len()).map_err(fail)?;
        let verify = checksum == ChecksumAlgorithm::Crc32 && !self.skip_checksum_verification;
        let mut event = PiecewiseEvent {
            offset,
            header,
            remaining: u64::from(header.event_size),
            crc: verify.then(|| self.crc.clone()),
            tail: [0; 4],
            tail_len: 0,
        };
        event.update(first)?;
        Ok(event)
    }
}

/// The header's size must hold the header and checksum, and stay below any real event.
fn check_event_size(header: &EventHeader, checksum_len: usize) -> Result<(), ErrorKind> {
    let minimum = (HEADER_LEN + checksum_len) as u32;
    if header.event_size < minimum {
        return Err(ErrorKind::EventTooShort {
            size: header.event_size,
            minimum,
        });
    }
    if header.event_size > MAX_EVENT_SIZE {
        return Err(ErrorKind::EventTooLarge {
            size: header.event_size,
            maximum: MAX_EVENT_SIZE,
        });
    }
    Ok(())
}

/// An event being checked piece by piece: see [`Framer::begin_piecewise`].
#[derive(Debug, Clone)]
pub struct PiecewiseEvent {
    offset: u64,
    header: EventHeader,
    remaining: u64,
    crc: Option<crc32fast::Hasher>,
    /// The last bytes seen, held back from the CRC: the final 4 are the stored checksum.
    tail: [u8; 4],
    tail_len: usize,
}

impl PiecewiseEvent {
    /// The event's header.
    pub fn header(&self) -> &EventHeader {
        &self.header
    }

    /// The event's offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the event still lacks.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Feeds the next bytes of the event.
    pub fn update(&mut self, piece: &[u8]) -> Result<(), ParseError> {
        if piece.len() as u64 > self.remaining {
            return Err(ParseError::new(
                self.offset,
                Some(self.header.event_type),
                ErrorKind::LengthMismatch {
                    field: "event size",
                    value: u64::from(self.header.event_size),
                    available: (u64::from(self.header.event_size) - self.remaining) as usize
                        + piece.len(),
                },
            ));
        }
        self.remaining -= piece.len() as u64;
        let Some(crc) = self.crc.as_mut() else {
            return Ok(());
        };
        // Hash everything but the newest 4 bytes, which may be the stored checksum.
        if piece.len() >= 4 {
            crc.update(&self.tail[..self.tail_len]);
            let (body, tail) = piece.split_at(piece.len() - 4);
            crc.update(body);
            self.tail.copy_from_slice(tail);
            self.tail_len = 4;
        } else {
            let mut joined = [0u8; 8];
            joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joined[self.tail_len..self.tail_len + piece.len()].copy_from_slice(piece);
            let len = self.tail_len + piece.len();
            let keep = len.min(4);
            crc.update(&joined[..len - keep]);
            self.tail[..keep].copy_from_slice(&joined[len - keep..len]);
            self.tail_len = keep;
        }
        Ok(())
    }

    /// Checks that the whole event arrived and that its checksum matches.
    pub fn finish(self) -> Result<(), ParseError> {
        let fail = |kind| ParseError::new(self.offset, Some(self.header.event_type), kind);
        if self.remaining > 0 {
            return Err(fail(ErrorKind::Truncated {
                needed: usize::try_from(self.remaining).unwrap_or(usize::MAX),
            }));
        }
        if let Some(crc) = self.crc {
            let stored = u32::from_le_bytes(self.tail);
            let computed = crc.finalize();
            if stored != computed {
                return Err(fail(ErrorKind::ChecksumMismatch { stored, computed }));
            }
        }
        Ok(())
    }
}

/// The CRC32 an event's stored checksum must equal.
///
/// A FORMAT_DESCRIPTION event is checksummed as if its `BINLOG_IN_USE` flag were clear:
/// servers set the flag in the open file and clear it on close, in place, without
/// recomputing the checksum either time.
fn event_crc32(event: &RawEvent<'_>, mut hasher: crc32fast::Hasher) -> u32 {
    let covered = &event.bytes[..event.bytes.len() - 4];
    let flags_at = HEADER_LEN - 2;
    if event.header.event_type != EventType::FORMAT_DESCRIPTION
        || event.header.flags & FLAG_BINLOG_IN_USE == 0
    {
        hasher.update(covered);
        return hasher.finalize();
    }
    hasher.update(&covered[..flags_at]);
    hasher.update(&[covered[flags_at] & !(FLAG_BINLOG_IN_USE as u8)]);
    hasher.update(&covered[flags_at + 1..]);
    hasher.finalize()
}

/// Where and why an [`EventReader`] stopped short of the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomplete {
    /// Offset of the event that is not complete (where reading must resume).
    pub offset: u64,
    /// How many more bytes it needs at least.
    pub needed: usize,
}

/// Iterates over the events of a binlog file held in memory.
///
/// Yields every whole event. Stops at the first error (after yielding it) or where the
/// input ends; if it ends inside an event, [`EventReader::incomplete`] says where and how
/// much is missing — for a live file that is where to resume, for a closed file
/// [`EventReader::finish`] turns it into a `Truncated` error.
#[derive(Debug, Clone)]
pub struct EventReader<'a> {
    input: &'a [u8],
    position: usize,
    base_offset: u64,
    framer: Framer,
    expect_magic: bool,
    incomplete: Option<Incomplete>,
    done: bool,
}

impl<'a> EventReader<'a> {
    /// Reads a whole file: the magic, then events from offset 4.
    pub fn new(file: &'a [u8]) -> Self {
        EventReader {
            input: file,
            position: 0,
            base_offset: 0,
            framer: Framer::new(),
            expect_magic: true,
            incomplete: None,
            done: false,
        }
    }

    /// Reads events from `bytes`, which start at `offset` of a file whose format is
    /// known (a checkpoint segment, the tail of a growing file).
    pub fn continue_at(bytes: &'a [u8], offset: u64, framer: Framer) -> Self {
        EventReader {
            input: bytes,
            position: 0,
            base_offset: offset,
            framer,
            expect_magic: false,
            incomplete: None,
            done: false,
        }
    }

    /// Reads the inner events of a decompressed TRANSACTION_PAYLOAD (see
    /// `TransactionPayload::decompress`): whole events without checksums and without
    /// positions, under the format of the file that holds the payload.
    pub fn payload(inner: &'a [u8], format: &FormatDescription) -> Self {
        EventReader::continue_at(inner, 0, Framer::with_format(format.without_checksum()))
    }

    /// Offset of the next event to read (just past the last whole event read).
    pub fn offset(&self) -> u64 {
        self.base_offset + self.position as u64
    }

    /// The framer, with the format description in force.
    pub fn framer(&self) -> &Framer {
        &self.framer
    }

    /// The format description in force, once the reader has read one.
    pub fn format(&self) -> Option<&FormatDescription> {
        self.framer.format()
    }

    /// Where the input ended inside an event, once iteration has reached the end.
    pub fn incomplete(&self) -> Option<Incomplete> {
        self.incomplete
    }

    /// For a closed file: reads to the end and fails if it ends inside an event.
    pub fn finish(mut self) -> Result<(), ParseError> {
        for event in self.by_ref() {
            event?;
        }
        match self.incomplete {
            None => Ok(()),
            Some(Incomplete { offset, needed }) => Err(ParseError::new(
                offset,
                None,
                ErrorKind::Truncated { needed },
            )),
        }
    }
}

impl<'a> Iterator for EventReader<'a> {
    type Item = Result<RawEvent<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.expect_magic {
            let head = &self.input[..self.input.len().min(BINLOG_MAGIC.len())];
            if head != &BINLOG_MAGIC[..head.len()] {
                self.done = true;
                return Some(Err(ParseError::new(0, None, ErrorKind::BadMagic)));
            }
            if head.len() < BINLOG_MAGIC.len() {
                self.done = true;
                self.incomplete = Some(Incomplete {
                    offset: 0,
                    needed: BINLOG_MAGIC.len() - head.len(),
                });
                return None;
            }
            self.expect_magic = false;
            self.position = BINLOG_MAGIC.len();
        }
        let rest = &self.input[self.position..];
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.offset();
        match self.framer.next_event(rest, offset) {
            Ok(Frame::Event(event)) => {
                self.position += event.bytes.len();
                Some(Ok(event))
            }
            Ok(Frame::Incomplete { needed }) => {
                self.done = true;
                self.incomplete = Some(Incomplete { offset, needed });
                None
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

impl std::iter::FusedIterator for EventReader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ROWS event of `size` bytes with a valid CRC32.
    fn event(size: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; size];
        bytes[4] = EventType::WRITE_ROWS.0;
        bytes[9..13].copy_from_slice(&(size as u32).to_le_bytes());
        for (i, b) in bytes[HEADER_LEN..size - 4].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let crc = crc32fast::hash(&bytes[..size - 4]);
        bytes[size - 4..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn check_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), ParseError> {
        let mut framer = Framer::for_stream(ChecksumAlgorithm::Crc32);
        let mut at = cuts[0];
        let mut event = framer.begin_piecewise(&bytes[..at], 100)?;
        for &cut in &cuts[1..] {
            event.update(&bytes[at..cut])?;
            at = cut;
        }
        event.update(&bytes[at..])?;
        event.finish()
    }

    #[test]
    fn an_event_checked_in_pieces_agrees_with_framing_it_whole() {
        let bytes = event(1000);
        let mut framer = Framer::for_stream(ChecksumAlgorithm::Crc32);
        assert!(matches!(
            framer.next_event(&bytes, 100),
            Ok(Frame::Event(_))
        ));
        // Cuts that split the stored checksum, leave 1-3 byte pieces, or none.
        for cuts in [
            &[19][..],
            &[19, 500, 997],
            &[20, 998, 999],
            &[500, 501, 502, 996],
        ] {
            check_in_pieces(&bytes, cuts).expect("valid");
        }
        let mut corrupt = bytes.clone();
        corrupt[600] ^= 1;
        let err = check_in_pieces(&corrupt, &[19, 700]).expect_err("corrupt");
        assert!(
            matches!(err.kind, ErrorKind::ChecksumMismatch { .. }),
            "{err}"
        );
        assert_eq!(err.offset, 100);

        let mut framer = Framer::for_stream(ChecksumAlgorithm::Crc32);
        let mut event = framer.begin_piecewise(&bytes[..19], 0).expect("header");
        assert!(matches!(
            event.clone().finish().map_err(|e| e.kind),
            Err(ErrorKind::Truncated { needed: 981 })
        ));
        event.update(&bytes[19..]).expect("rest");
        assert!(event.update(&[0]).is_err(), "a byte past the event's size");
    }
}
