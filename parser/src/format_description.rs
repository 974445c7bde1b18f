//! The FORMAT_DESCRIPTION event: how to read every event after it.
//!
//! ```text
//! body offset  size  field
//!           0     2  binlog_version            always 4 since MySQL 5.0
//!           2    50  server_version            NUL-padded, e.g. "8.0.40" or "10.11.19-MariaDB-log"
//!          52     4  create_timestamp
//!          56     1  common_header_length      19 for v4
//!          57     n  post_header_lengths[n]    one byte per event type, type 1 first
//!      57 + n     1  checksum_algorithm        only from MySQL 5.6.1 / MariaDB 5.3 on
//!      58 + n     4  checksum                  present even when the algorithm is NONE
//! ```
//! Reference: MySQL `Format_description_event`
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Format__description__event.html>),
//! MariaDB <https://mariadb.com/kb/en/format_description_event/>.

use crate::error::ErrorKind;
use crate::header::HEADER_LEN;
use crate::le::{read_u16, read_u32};

/// Length of the server version field.
const SERVER_VERSION_LEN: usize = 50;
/// binlog_version + server_version + create_timestamp + common_header_length.
const FIXED_LEN: usize = 2 + SERVER_VERSION_LEN + 4 + 1;

/// Which server family wrote a binlog: `mysql` or `mariadb` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Oracle MySQL (and Percona Server).
    MySql,
    /// MariaDB.
    MariaDb,
}

/// The checksum written after every event (`binlog_checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// No checksum (`binlog_checksum=NONE`, or a server older than checksums).
    None,
    /// A CRC32 (ISO-HDLC, as zlib's `crc32`) over the whole event before it.
    Crc32,
}

impl ChecksumAlgorithm {
    /// Bytes the checksum takes at the end of each event.
    pub fn len(self) -> usize {
        match self {
            ChecksumAlgorithm::None => 0,
            ChecksumAlgorithm::Crc32 => 4,
        }
    }

    /// Whether events carry no checksum.
    pub fn is_empty(self) -> bool {
        self == ChecksumAlgorithm::None
    }
}

/// A decoded FORMAT_DESCRIPTION event.
///
/// Owned, unlike other events: it is the context that outlives the events it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    /// Binlog format version (4).
    pub binlog_version: u16,
    /// The server version string, e.g. `8.0.40` or `10.11.19-MariaDB-log`.
    pub server_version: String,
    /// Numeric (major, minor, patch) parsed from the front of `server_version`.
    pub version: (u8, u8, u8),
    /// Server family, from the version string.
    pub flavour: Flavour,
    /// Seconds since the epoch when the file was created (0 except in the first file
    /// after startup on old servers).
    pub create_timestamp: u32,
    /// Common header length (19).
    pub header_len: u8,
    /// Post-header length of each event type, indexed by `type_code - 1`.
    pub post_header_lengths: Vec<u8>,
    /// The checksum of every event after this one (and of this one).
    pub checksum: ChecksumAlgorithm,
}

impl FormatDescription {
    /// Decodes the body of a FORMAT_DESCRIPTION event, `body` being everything after the
    /// common header, including the trailing algorithm byte and checksum when present.
    pub(crate) fn parse(body: &[u8]) -> Result<FormatDescription, ErrorKind> {
        if body.len() < FIXED_LEN {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: FIXED_LEN,
            });
        }
        let binlog_version = read_u16(&body[0..2]);
        if binlog_version != 4 {
            return Err(ErrorKind::UnsupportedBinlogVersion(binlog_version));
        }
        let raw_version = &body[2..2 + SERVER_VERSION_LEN];
        let version_end = raw_version
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SERVER_VERSION_LEN);
        let server_version = String::from_utf8_lossy(&raw_version[..version_end]).into_owned();
        let create_timestamp = read_u32(&body[52..56]);
        let header_len = body[56];
        if usize::from(header_len) != HEADER_LEN {
            return Err(ErrorKind::Invalid(
                "common header length (only 19-byte v4 headers exist)",
            ));
        }
        let version = split_version(&server_version);
        let flavour = if server_version.contains("MariaDB") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        };
        // Servers that know checksums append the algorithm byte and a 4-byte checksum.
        let has_checksum_field = match flavour {
            Flavour::MariaDb => version >= (5, 3, 0),
            Flavour::MySql => version >= (5, 6, 1),
        };
        let (post_header_lengths, checksum) = if has_checksum_field {
            let tail = body
                .len()
                .checked_sub(5)
                .filter(|&t| t >= FIXED_LEN)
                .ok_or(ErrorKind::BodyTooShort {
                    len: body.len(),
                    minimum: FIXED_LEN + 5,
                })?;
            let checksum = match body[tail] {
                0 | 0xff => ChecksumAlgorithm::None,
                1 => ChecksumAlgorithm::Crc32,
                _ => return Err(ErrorKind::Invalid("checksum algorithm")),
            };
            (body[FIXED_LEN..tail].to_vec(), checksum)
        } else {
            (body[FIXED_LEN..].to_vec(), ChecksumAlgorithm::None)
        };
        Ok(FormatDescription {
            binlog_version,
            server_version,
            version,
            flavour,
            create_timestamp,
            header_len,
            post_header_lengths,
            checksum,
        })
    }

    /// A stand-in for the start of a replication stream, before the server's
    /// FORMAT_DESCRIPTION arrives: the artificial ROTATE and heartbeats that come first
    /// have fixed layouts and decode under it; nothing else should.
    pub fn stream_preamble(checksum: ChecksumAlgorithm) -> FormatDescription {
        FormatDescription {
            binlog_version: 4,
            server_version: String::new(),
            version: (0, 0, 0),
            flavour: Flavour::MySql,
            create_timestamp: 0,
            header_len: HEADER_LEN as u8,
            post_header_lengths: Vec::new(),
            checksum,
        }
    }

    /// The same format for events that carry no checksum: the inner events of a
    /// TRANSACTION_PAYLOAD.
    pub fn without_checksum(&self) -> FormatDescription {
        FormatDescription {
            checksum: ChecksumAlgorithm::None,
            ..self.clone()
        }
    }

    /// The post-header length this file declares for an event type, if it declares one.
    pub fn post_header_len(&self, type_code: u8) -> Option<usize> {
        let index = usize::from(type_code).checked_sub(1)?;
        self.post_header_lengths
            .get(index)
            .map(|&len| usize::from(len))
    }
}

/// "10.11.19-MariaDB-log" → (10, 11, 19); missing parts are 0.
fn split_version(version: &str) -> (u8, u8, u8) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u8>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_versions() {
        assert_eq!(
            split_version("10.11.19-MariaDB-0+deb12u1-log"),
            (10, 11, 19)
        );
        assert_eq!(split_version("8.0.40"), (8, 0, 40));
        assert_eq!(split_version("5.1.23-rc-debug-log"), (5, 1, 23));
        assert_eq!(split_version(""), (0, 0, 0));
    }
}
