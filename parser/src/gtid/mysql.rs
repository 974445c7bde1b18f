//! MySQL GTIDs: `source_uuid[:tag]:transaction_number`.
//!
//! Reference: <https://dev.mysql.com/doc/refman/8.4/en/replication-gtids-concepts.html>.
//! Tags (MySQL 8.3+) are 1–32 characters, letters, digits and `_`, not starting with a
//! digit, compared case-insensitively (the server stores them lowercase).

use std::fmt;
use std::str::FromStr;

use super::mariadb::ParseGtidError;

/// A server UUID as the binlog stores it: 16 bytes, printed in the 8-4-4-4-12 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Uuid {
    type Err = ParseGtidError;

    /// Accepts the 8-4-4-4-12 form (and 32 hex digits without dashes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || ParseGtidError {
            text: text.to_owned(),
            reason: "not a UUID",
        };
        let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
        let dashes_ok = text.len() == 32
            || (text.len() == 36 && [8, 13, 18, 23].iter().all(|&i| text.as_bytes()[i] == b'-'));
        if hex.len() != 32 || !dashes_ok {
            return Err(fail());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(fail);
            bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Uuid(bytes))
    }
}

/// Longest tag MySQL accepts.
pub const MAX_TAG_LEN: usize = 32;

/// A GTID tag, stored inline and lowercase. The empty tag is "untagged".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tag {
    len: u8,
    bytes: [u8; MAX_TAG_LEN],
}

impl Tag {
    /// The untagged tag.
    pub const NONE: Tag = Tag {
        len: 0,
        bytes: [0; MAX_TAG_LEN],
    };

    /// Validates and lowercases a tag; the empty string is [`Tag::NONE`].
    pub fn new(text: &str) -> Result<Tag, ParseGtidError> {
        let fail = |reason| ParseGtidError {
            text: text.to_owned(),
            reason,
        };
        if text.len() > MAX_TAG_LEN {
            return Err(fail("tag longer than 32 characters"));
        }
        let valid = text
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if !valid {
            return Err(fail(
                "a tag has letters, digits and '_' and does not start with a digit",
            ));
        }
        let mut tag = Tag::NONE;
        for (i, b) in text.bytes().enumerate() {
            tag.bytes[i] = b.to_ascii_lowercase();
        }
        tag.len = text.len() as u8;
        Ok(tag)
    }

    /// The tag text (lowercase); empty when untagged.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Whether this is the untagged tag.
    pub fn is_none(&self) -> bool {
        self.len == 0
    }
}

impl PartialOrd for Tag {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tag {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:?})", self.as_str())
    }
}

/// One MySQL GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MysqlGtid {
    /// The originating server's UUID.
    pub uuid: Uuid,
    /// The tag ([`Tag::NONE`] for untagged GTIDs).
    pub tag: Tag,
    /// Transaction number, from 1.
    pub gno: u64,
}

impl fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag.is_none() {
            write!(f, "{}:{}", self.uuid, self.gno)
        } else {
            write!(f, "{}:{}:{}", self.uuid, self.tag, self.gno)
        }
    }
}

impl FromStr for MysqlGtid {
    type Err = ParseGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseGtidError {
            text: text.to_owned(),
            reason,
        };
        let parts: Vec<&str> = text.trim().split(':').collect();
        let (uuid, tag, gno) = match parts.as_slice() {
            [uuid, gno] => (uuid, "", gno),
            [uuid, tag, gno] => (uuid, *tag, gno),
            _ => return Err(fail("expected uuid[:tag]:number")),
        };
        let gno: u64 = gno
            .parse()
            .map_err(|_| fail("transaction number is not a number"))?;
        if gno == 0 || gno >= i64::MAX as u64 {
            return Err(fail("transaction number must be between 1 and 2^63-2"));
        }
        Ok(MysqlGtid {
            uuid: uuid.parse()?,
            tag: Tag::new(tag)?,
            gno,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_the_canonical_form() {
        let uuid = Uuid([
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ]);
        let gtid = MysqlGtid {
            uuid,
            tag: Tag::NONE,
            gno: 23,
        };
        assert_eq!(gtid.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
        assert_eq!(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:23".parse::<MysqlGtid>(),
            Ok(gtid)
        );
        let tagged: MysqlGtid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:Batch_1:5"
            .parse()
            .expect("tagged");
        assert_eq!(tagged.tag.as_str(), "batch_1");
        assert_eq!(
            tagged.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:batch_1:5"
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa942956:1",
            "3e11fa47x71ca-11e1-9e33-c80aa9429562:1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:0",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1tag:1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:t-g:1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1",
        ] {
            assert!(bad.parse::<MysqlGtid>().is_err(), "{bad}");
        }
    }
}
