//! Compressed events: MySQL TRANSACTION_PAYLOAD and MariaDB's `log_bin_compress` events.
//!
//! TRANSACTION_PAYLOAD (MySQL 8.0.20+, `binlog_transaction_compression`;
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Transaction__payload__event.html>):
//! a header of fields, each `type, length, value` as packed integers, ended by type 0;
//! then the compressed events of the whole transaction after its GTID event. Field types:
//! 1 payload size, 2 compression type (0 zstd, 255 none), 3 uncompressed size. The inner
//! events are ordinary events with `log_pos` 0 and no checksum.
//!
//! MariaDB QUERY_COMPRESSED and *_ROWS_COMPRESSED (`log_bin_compress`): the compressed
//! part starts with one byte `0x80 | n`, then the uncompressed length in `n` big-endian
//! bytes, then a zlib stream (MariaDB `binlog_buf_compress` in `sql/log_event.cc`).
//!
//! Decompressed output is capped: a length field alone never makes us allocate; the
//! buffer grows with what the decompressor really produces, up to the declared size.

use std::io::Read;

use crate::error::ErrorKind;
use crate::framing::MAX_EVENT_SIZE;
use crate::le::read_packed_integer;

/// Largest decompressed transaction accepted (MySQL's limit on a transaction payload is
/// `max_allowed_packet`-bound events; 4 GiB covers every real one).
pub const MAX_UNCOMPRESSED_PAYLOAD: u64 = 4 << 30;

/// How a TRANSACTION_PAYLOAD is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadCompression {
    /// Zstandard.
    Zstd,
    /// Not compressed.
    None,
}

/// A MySQL TRANSACTION_PAYLOAD event: a whole transaction's events, compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionPayload<'a> {
    /// Compression of `payload`.
    pub compression: PayloadCompression,
    /// Size of the inner events once decompressed.
    pub uncompressed_size: u64,
    /// The compressed bytes.
    pub payload: &'a [u8],
}

impl<'a> TransactionPayload<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, ErrorKind> {
        let mut rest = body;
        let mut next = |field: &'static str| -> Result<u64, ErrorKind> {
            let (value, used) = read_packed_integer(rest).ok_or(ErrorKind::Invalid(field))?;
            rest = &rest[used..];
            Ok(value)
        };
        let (mut compression, mut uncompressed_size, mut payload_size) = (None, None, None);
        loop {
            let field_type = next("payload header field type")?;
            if field_type == 0 {
                break;
            }
            let length = next("payload header field length")?;
            let value = next("payload header field value")?;
            if length == 0 || length > 9 {
                return Err(ErrorKind::Invalid("payload header field length"));
            }
            match field_type {
                1 => payload_size = Some(value),
                2 => compression = Some(value),
                3 => uncompressed_size = Some(value),
                // Fields added by later servers: their value was read, skip them.
                _ => {}
            }
        }
        let compression = match compression {
            Some(0) => PayloadCompression::Zstd,
            Some(255) => PayloadCompression::None,
            _ => return Err(ErrorKind::Invalid("payload compression type")),
        };
        let uncompressed_size =
            uncompressed_size.ok_or(ErrorKind::Invalid("payload without uncompressed size"))?;
        if uncompressed_size > MAX_UNCOMPRESSED_PAYLOAD {
            return Err(ErrorKind::Invalid("payload uncompressed size beyond 4 GiB"));
        }
        let payload_size = payload_size.unwrap_or(rest.len() as u64);
        if payload_size != rest.len() as u64 {
            return Err(ErrorKind::LengthMismatch {
                field: "payload size",
                value: payload_size,
                available: rest.len(),
            });
        }
        Ok(TransactionPayload {
            compression,
            uncompressed_size,
            payload: rest,
        })
    }

    /// The inner events' bytes (a sequence of events without checksums), decompressed.
    pub fn decompress(&self) -> Result<Vec<u8>, ErrorKind> {
        let out = match self.compression {
            PayloadCompression::None => self.payload.to_vec(),
            PayloadCompression::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(self.payload)
                    .map_err(|e| ErrorKind::Decompression(e.to_string()))?;
                read_capped(decoder, self.uncompressed_size)?
            }
        };
        if out.len() as u64 != self.uncompressed_size {
            return Err(ErrorKind::Decompression(format!(
                "{} bytes decompressed, the header says {}",
                out.len(),
                self.uncompressed_size
            )));
        }
        Ok(out)
    }
}

/// Decompresses the `log_bin_compress` part of a MariaDB compressed event.
pub fn decompress_mariadb(compressed: &[u8]) -> Result<Vec<u8>, ErrorKind> {
    let (&head, rest) = compressed
        .split_first()
        .ok_or(ErrorKind::Invalid("empty compressed event"))?;
    let len_bytes = usize::from(head & 0x07);
    if head & 0x80 == 0 || len_bytes == 0 || len_bytes > 4 || rest.len() < len_bytes {
        return Err(ErrorKind::Invalid("compressed event header"));
    }
    let declared = rest[..len_bytes]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if declared > u64::from(MAX_EVENT_SIZE) {
        return Err(ErrorKind::Invalid(
            "compressed event length beyond the largest event",
        ));
    }
    let out = read_capped(flate2::read::ZlibDecoder::new(&rest[len_bytes..]), declared)?;
    if out.len() as u64 != declared {
        return Err(ErrorKind::Decompression(format!(
            "{} bytes decompressed, the header says {declared}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads at most `limit + 1` bytes, so output beyond the declared size is detected
/// without being held.
fn read_capped(reader: impl Read, limit: u64) -> Result<Vec<u8>, ErrorKind> {
    let mut out = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ErrorKind::Decompression(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_event(inner: &[u8]) -> Vec<u8> {
        let compressed = zstd::bulk::compress(inner, 3).expect("compress");
        let mut body = vec![2, 1, 0, 3];
        body.extend_from_slice(&[1, inner.len() as u8]);
        body.extend_from_slice(&[1, 1, compressed.len() as u8, 0]);
        body.extend_from_slice(&compressed);
        body
    }

    #[test]
    fn zstd_payload_round_trip() {
        let inner = b"pretend these are events".repeat(3);
        let body = payload_event(&inner);
        let payload = TransactionPayload::parse(&body).expect("parse");
        assert_eq!(payload.compression, PayloadCompression::Zstd);
        assert_eq!(payload.decompress().expect("decompress"), inner);
    }

    #[test]
    fn lying_sizes_are_errors() {
        let inner = b"x".repeat(50);
        let mut body = payload_event(&inner);
        body[5] = 49; // uncompressed size one short
        let payload = TransactionPayload::parse(&body).expect("parse");
        assert!(matches!(
            payload.decompress(),
            Err(ErrorKind::Decompression(_))
        ));
        let mut body = payload_event(&inner);
        body[8] += 1; // payload size one more than present
        assert!(matches!(
            TransactionPayload::parse(&body),
            Err(ErrorKind::LengthMismatch { .. })
        ));
        assert!(
            TransactionPayload::parse(&[2, 1, 7, 0]).is_err(),
            "unknown compression"
        );
        assert!(TransactionPayload::parse(&[]).is_err());
    }

    #[test]
    fn mariadb_zlib_round_trip_and_errors() {
        use std::io::Write;
        let text = b"INSERT INTO t VALUES ('a long statement, long enough')".repeat(4);
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&text).expect("write");
        let zlib = encoder.finish().expect("finish");
        let mut compressed = vec![0x82, (text.len() >> 8) as u8, text.len() as u8];
        compressed.extend_from_slice(&zlib);
        assert_eq!(decompress_mariadb(&compressed).expect("decompress"), text);
        compressed[2] ^= 1;
        assert!(
            decompress_mariadb(&compressed).is_err(),
            "wrong declared length"
        );
        assert!(
            decompress_mariadb(&[0x02, 0, 1]).is_err(),
            "flag bit missing"
        );
        assert!(
            decompress_mariadb(&[0x84, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "too large"
        );
    }
}
