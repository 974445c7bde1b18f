//! Sending a dump: from the start `start` chose to the end of the archive, and on to
//! whatever a stream writing the same archive adds — the live tail.
//!
//! For each file: the artificial ROTATE naming it, its FORMAT_DESCRIPTION (prepared by
//! [`events::format_description_for_dump`]), then its events exactly as archived, the
//! file's own closing ROTATE included; then the next file, across epochs after a
//! failover. A GTID dump skips each transaction the replica already has — whole byte
//! ranges the index names, never read — and everything it sends is added to what the
//! replica has, so a new primary's files that repeat the old one's transactions are not
//! sent twice. MariaDB's ANNOTATE_ROWS events go only to replicas that ask for them.
//!
//! Of a file still being written, only what the index covers is sent: bytes the stream
//! has made durable, whole transactions. At the end the sender waits (polling the index),
//! sends HEARTBEATs at the replica's period, and notices a replica that hung up; a
//! non-blocking dump (`mysqlbinlog` without `--stop-never`) ends with EOF instead.
//!
//! Memory: a file is read a few MiB at a time (more only for an event larger than that).

use std::time::{Duration, Instant};

use binlogd_parser::header::parse_event_header;
use binlogd_parser::{
    ChecksumAlgorithm, Event, EventType, Frame, Framer, Gtid, HEADER_LEN, decode_event,
};
use binlogd_protocol::packet::PacketCodec;
use binlogd_protocol::server::replies;
use binlogd_storage::{GtidState, TransactionEntry};
use futures_util::{SinkExt, StreamExt};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::archive::{ArchiveSource, ServedFile};
use crate::error::ServeError;
use crate::events;
use crate::reading::{
    DataFile, IndexView, check_event_boundary, corrupt, format_description_ready, read_ends,
    read_format_description,
};
use crate::start::Start;

/// Bytes of events gathered before they are written to the socket.
const WRITE_BATCH: usize = 64 << 10;
/// How much of a file is read at a time.
const CHUNK: u64 = 1 << 20;
/// How often an object archive is listed again while a dump waits for its next file.
const REMOTE_RELIST: Duration = Duration::from_secs(1);
/// How often the end of the archive is looked at again while waiting for more.
const POLL: Duration = Duration::from_millis(50);

/// What the replica asked for, beyond where to start.
#[derive(Debug, Clone)]
pub(crate) struct DumpOptions {
    /// End at the end of the archive instead of waiting (`BINLOG_DUMP_NON_BLOCK`).
    pub non_blocking: bool,
    /// Send MariaDB's ANNOTATE_ROWS events (`BINLOG_SEND_ANNOTATE_ROWS_EVENT`).
    pub annotate_rows: bool,
    /// Heartbeat period (`@master_heartbeat_period`), none when 0.
    pub heartbeat: Option<Duration>,
    /// The checksum the replica was told the source uses (`@master_binlog_checksum`).
    pub checksum: ChecksumAlgorithm,
    /// Whether this is a GTID dump: skip what the replica has.
    pub by_gtid: bool,
    /// How long a replica may read nothing while there is data for it.
    pub write_timeout: Duration,
}

/// How a dump ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DumpEnd {
    /// The replica hung up.
    ReplicaLeft,
    /// A non-blocking dump reached the end.
    Finished,
    /// `binlogd serve` is shutting down.
    Shutdown,
}

/// Progress a dump reports: where it is and what it sent.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The file being sent.
    pub file: String,
    /// The offset reached in it.
    pub position: u64,
    /// Event bytes sent.
    pub bytes_sent: u64,
    /// When the last event sent was written on the source (seconds since the epoch).
    pub last_event_timestamp: u32,
    /// Whether the replica has been sent everything the archive holds.
    pub caught_up: bool,
}

/// One dump in progress.
pub(crate) struct Dump<'a, S> {
    pub conn: &'a mut Framed<S, PacketCodec>,
    pub archive: &'a ArchiveSource,
    pub options: DumpOptions,
    pub shutdown: watch::Receiver<bool>,
    pub progress: watch::Sender<Progress>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Dump<'_, S> {
    /// Sends from `start` in `files` until the replica leaves, the archive ends (for a
    /// non-blocking dump) or the server shuts down.
    pub async fn run(
        mut self,
        mut files: Vec<ServedFile>,
        start: Start,
    ) -> Result<DumpEnd, ServeError> {
        let mut current = start.file;
        let mut position = start.position;
        let mut replica_has = start.replica_has.clone();
        let mut checksum = self.options.checksum;
        let mut last_sent = Instant::now();
        loop {
            let file = files[current].clone();
            // A file the stream has only just begun may not hold its first event yet.
            while !format_description_ready(&file).await {
                if let Some(end) = self.wait(&file, position, checksum, &mut last_sent).await? {
                    return Ok(end);
                }
            }
            self.send(events::rotate(
                file.server_id,
                &file.name,
                position,
                checksum,
            ))
            .await?;
            let mut data = DataFile::open(&file).await?;
            let (format_event, format) = read_format_description(&mut data, &file).await?;
            checksum = format.checksum;
            // GTID events are read to note what the replica has been sent.
            let mut reading = Reading {
                data,
                crc32: format.checksum == ChecksumAlgorithm::Crc32,
                gtids: Framer::with_format(format).skip_checksum_verification(true),
            };
            let mut format_event = format_event;
            let format_end = 4 + format_event.len() as u64;
            // As MariaDB's sender: a dump that starts inside a file zeroes `log_pos` and
            // `created`; one that starts by GTIDs zeroes `created` in its first file, as
            // the replica may already hold temporary tables from it.
            let first_file = current == start.file;
            events::format_description_for_dump(
                &mut format_event,
                checksum,
                position > 4,
                first_file && self.options.by_gtid && !replica_has.is_empty(),
            );
            self.send(format_event).await?;
            // The whole index only where the sender needs transactions: to skip what a
            // GTID replica has (unless the file starts past all of it), or to find event
            // boundaries inside the file; otherwise its ends say how far to send.
            let ends = read_ends(&file).await?;
            let skipping = self.options.by_gtid
                && !ends
                    .gtids_before
                    .as_ref()
                    .is_some_and(|before| before.includes_all(&replica_has));
            let mut index = IndexView::for_file(&file, skipping || position > 4, ends);
            index = index.refresh(&file, &mut reading.data).await?;
            if position <= 4 {
                position = format_end;
            } else {
                // Transaction boundaries are event boundaries: walk from the last before.
                let walk_from = index
                    .transactions()
                    .iter()
                    .map(|t| t.end)
                    .take_while(|&end| end <= position)
                    .last()
                    .unwrap_or(format_end)
                    .max(format_end);
                check_event_boundary(&mut reading.data, &file, walk_from, position).await?;
            }
            self.flush().await?;
            loop {
                index = index.refresh(&file, &mut reading.data).await?;
                let (end, closed) = self.archive.servable(&file, index.end());
                if position < end {
                    position = self
                        .send_range(
                            &mut reading,
                            &file,
                            position,
                            end,
                            index.transactions(),
                            &mut replica_has,
                        )
                        .await?;
                    self.flush().await?;
                    last_sent = Instant::now();
                    continue;
                }
                if closed {
                    break;
                }
                if let Some(end) = self.wait(&file, position, checksum, &mut last_sent).await? {
                    return Ok(end);
                }
            }
            // The next file: in this epoch, or the next epoch's first after a failover.
            // An object store is listed again once a second at most.
            let relist = if self.archive.is_remote() {
                REMOTE_RELIST
            } else {
                Duration::ZERO
            };
            let mut listed_at: Option<Instant> = None;
            loop {
                if listed_at.is_some_and(|at| at.elapsed() < relist) {
                    if let Some(end) = self.wait(&file, position, checksum, &mut last_sent).await? {
                        return Ok(end);
                    }
                    continue;
                }
                listed_at = Some(Instant::now());
                match self.archive.list().await {
                    Ok(listing) => files = listing.files,
                    // A store that fails for a moment delays the next file; the replica
                    // waits (heartbeats go on) rather than take an error for good.
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "listing the archive failed; trying again");
                        if let Some(end) =
                            self.wait(&file, position, checksum, &mut last_sent).await?
                        {
                            return Ok(end);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                let Some(at) = files.iter().position(|f| f.is(&file)) else {
                    return Err(ServeError::Config(format!(
                        "{} left the archive (retention?) while a replica was reading it",
                        file.id()
                    )));
                };
                if at + 1 < files.len() && format_description_ready(&files[at + 1]).await {
                    current = at + 1;
                    position = 4;
                    break;
                }
                if let Some(end) = self.wait(&file, position, checksum, &mut last_sent).await? {
                    return Ok(end);
                }
            }
        }
    }

    /// Queues one event (sent when the buffer fills or at the next flush).
    async fn send(&mut self, event: Vec<u8>) -> Result<(), ServeError> {
        self.send_event(&event).await
    }

    /// Frames an event straight into the connection's write buffer (no copy of it as a
    /// message first), and writes the buffer out once it holds [`WRITE_BATCH`].
    async fn send_event(&mut self, event: &[u8]) -> Result<(), ServeError> {
        // The codec (a sequence number) is copied out and back: the connection lends its
        // codec and its buffer one at a time.
        let mut codec = self.conn.codec().clone();
        codec.encode_prefixed(0, event, self.conn.write_buffer_mut());
        *self.conn.codec_mut() = codec;
        if self.conn.write_buffer().len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a message, waiting while the socket is full — but not for ever: a replica
    /// that reads nothing for `write_timeout` is dropped, as a server's
    /// `net_write_timeout` drops it.
    async fn feed(&mut self, message: Vec<u8>) -> Result<(), ServeError> {
        match tokio::time::timeout(self.options.write_timeout, self.conn.feed(message)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ServeError::ReplicaStalled(self.options.write_timeout)),
        }
    }

    /// Sends what is queued, with the same limit as [`Dump::feed`].
    async fn flush(&mut self) -> Result<(), ServeError> {
        match tokio::time::timeout(
            self.options.write_timeout,
            SinkExt::<Vec<u8>>::flush(self.conn),
        )
        .await
        {
            Ok(result) => Ok(result?),
            Err(_) => Err(ServeError::ReplicaStalled(self.options.write_timeout)),
        }
    }

    /// Sends the events of `file` in `[from, end)`, skipping what the replica has;
    /// returns `end`.
    async fn send_range(
        &mut self,
        reading: &mut Reading,
        file: &ServedFile,
        from: u64,
        end: u64,
        transactions: &[TransactionEntry],
        replica_has: &mut GtidState,
    ) -> Result<u64, ServeError> {
        let mut position = from;
        let mut next_transaction = transactions.partition_point(|t| t.end <= position);
        let mut buffer: Vec<u8> = Vec::new();
        let mut buffer_start = position;
        let mut sent_bytes = 0u64;
        let mut last_timestamp = 0u32;
        while position < end {
            // A whole transaction the replica has: skip its bytes unread.
            if self.options.by_gtid
                && let Some(transaction) = transactions.get(next_transaction)
                && transaction.start == position
                && transaction.gtid.is_some_and(|g| replica_has.includes(&g))
            {
                position = transaction.end;
                next_transaction += 1;
                continue;
            }
            let offset_in_buffer = position.checked_sub(buffer_start).map(|o| o as usize);
            let header = match offset_in_buffer {
                Some(at) if at + HEADER_LEN <= buffer.len() => Some(at),
                _ => None,
            };
            let Some(at) = header else {
                reading
                    .data
                    .read_into(file, position, (end - position).min(CHUNK), &mut buffer)
                    .await?;
                buffer_start = position;
                continue;
            };
            let Ok((_, header)) = parse_event_header(&buffer[at..]) else {
                return Err(corrupt(file, position, "unreadable event header"));
            };
            let size = u64::from(header.event_size);
            if size < HEADER_LEN as u64 || position + size > end {
                return Err(corrupt(
                    file,
                    position,
                    "event size runs past the end of what the index covers",
                ));
            }
            if at + size as usize > buffer.len() {
                let len = size.max((end - position).min(CHUNK));
                reading
                    .data
                    .read_into(file, position, len, &mut buffer)
                    .await?;
                buffer_start = position;
                continue;
            }
            let event = &buffer[at..at + size as usize];
            if reading.crc32 {
                check_crc32(event).map_err(|what| corrupt(file, position, &what))?;
            }
            let annotate = header.event_type == EventType::MARIADB_ANNOTATE_ROWS;
            if !annotate || self.options.annotate_rows {
                self.send_event(event).await?;
                sent_bytes += size;
                last_timestamp = header.timestamp;
            }
            position += size;
            if self.options.by_gtid
                && let Some(gtid) = gtid_of(
                    &mut reading.gtids,
                    header.event_type,
                    event,
                    position - size,
                )
            {
                replica_has.add(gtid);
            }
            while transactions
                .get(next_transaction)
                .is_some_and(|t| t.end <= position)
            {
                next_transaction += 1;
            }
        }
        self.progress.send_modify(|p| {
            p.file = file.name.clone();
            p.position = position;
            p.caught_up = false;
            p.bytes_sent += sent_bytes;
            if last_timestamp > 0 {
                p.last_event_timestamp = last_timestamp;
            }
        });
        Ok(position)
    }

    /// Waits a little at the end of what there is to send: sends a heartbeat when one is
    /// due, and says how the dump ends if it must.
    async fn wait(
        &mut self,
        file: &ServedFile,
        position: u64,
        checksum: ChecksumAlgorithm,
        last_sent: &mut Instant,
    ) -> Result<Option<DumpEnd>, ServeError> {
        self.progress.send_modify(|p| {
            p.file = file.name.clone();
            p.position = position;
            p.caught_up = true;
        });
        if self.options.non_blocking {
            self.feed(replies::eof()).await?;
            self.flush().await?;
            return Ok(Some(DumpEnd::Finished));
        }
        tokio::select! {
            // A replica sends nothing during a dump: anything, or the end, means it left.
            _ = self.conn.next() => return Ok(Some(DumpEnd::ReplicaLeft)),
            _ = self.shutdown.changed() => return Ok(Some(DumpEnd::Shutdown)),
            () = tokio::time::sleep(POLL) => {}
        }
        if let Some(period) = self.options.heartbeat
            && last_sent.elapsed() >= period
        {
            self.send(events::heartbeat(
                file.server_id,
                &file.name,
                position,
                checksum,
            ))
            .await?;
            self.flush().await?;
            *last_sent = Instant::now();
        }
        Ok(None)
    }
}

/// Checks the CRC32 that ends `event` (a whole event, header included).
fn check_crc32(event: &[u8]) -> Result<(), String> {
    let Some((body, stored)) = event.split_last_chunk::<4>() else {
        return Err("event too short for its checksum".to_owned());
    };
    let stored = u32::from_le_bytes(*stored);
    let computed = crc32fast::hash(body);
    if stored == computed {
        Ok(())
    } else {
        Err(format!(
            "{} event: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
            EventType(event[4])
        ))
    }
}

/// The GTID a GTID event names (`None` for any other event, and for MySQL's anonymous
/// ones).
fn gtid_of(reader: &mut Framer, event_type: EventType, event: &[u8], offset: u64) -> Option<Gtid> {
    if !matches!(
        event_type,
        EventType::MARIADB_GTID | EventType::GTID | EventType::GTID_TAGGED
    ) {
        return None;
    }
    let Ok(Frame::Event(raw)) = reader.next_event(event, offset) else {
        return None;
    };
    let format = reader.format()?;
    match decode_event(&raw, format).ok()? {
        Event::MariadbGtid(gtid) => Some(Gtid::Mariadb(gtid.gtid)),
        Event::MysqlGtid(gtid) => gtid.gtid.map(Gtid::Mysql),
        _ => None,
    }
}

/// The file being sent: its bytes, and a reader of its GTID events.
struct Reading {
    data: DataFile,
    /// Whether the file's events end in a CRC32, checked before each is sent: damage in
    /// the archive stops the dump with an error naming where, instead of reaching a
    /// replica (a restore's server would apply everything before it, then stop on
    /// a vaguer complaint of its own).
    crc32: bool,
    /// Decodes the GTID events (their checksums checked already).
    gtids: Framer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_whose_crc32_does_not_match_is_named() {
        // A 19-byte XID-sized header and body, then its CRC32.
        let mut event = vec![0u8; 27];
        event[4] = EventType::XID.0;
        let crc = crc32fast::hash(&event);
        event.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(check_crc32(&event), Ok(()));
        event[20] ^= 1;
        let err = check_crc32(&event).expect_err("damaged");
        assert!(err.starts_with("XID event: checksum mismatch"), "{err}");
        assert!(check_crc32(&[1, 2]).is_err());
    }
}
