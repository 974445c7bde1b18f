//! MySQL GTIDs: `source_uuid:transaction_number`.
//!
//! Reference: <https://dev.mysql.com/doc/refman/8.4/en/replication-gtids-concepts.html>.

use std::fmt;

/// A server UUID as the binlog stores it: 16 bytes, printed in the 8-4-4-4-12 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One MySQL GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MysqlGtid {
    /// The originating server's UUID.
    pub uuid: Uuid,
    /// Transaction number, from 1.
    pub gno: u64,
}

impl fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.gno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_canonical_form() {
        let uuid = Uuid([
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ]);
        let gtid = MysqlGtid { uuid, gno: 23 };
        assert_eq!(gtid.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
    }
}
