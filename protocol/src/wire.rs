//! Basic data types of the protocol: little-endian integers, length-encoded integers
//! and strings, NUL-terminated strings.
//! Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_data_types.html>.

use bytes::BufMut;

use crate::error::ProtocolError;

/// A cursor over a received payload that fails with a `Malformed` error, never panics.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8], what: &'static str) -> Self {
        Reader {
            rest: payload,
            what,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.rest.len() {
            return Err(ProtocolError::malformed(
                self.what,
                "shorter than its fields",
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn lenenc_int(&mut self) -> Result<Option<u64>, ProtocolError> {
        let first = self.u8()?;
        let width = match first {
            0..=0xfa => return Ok(Some(u64::from(first))),
            0xfb => return Ok(None), // NULL in a text row
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            0xff => return Err(ProtocolError::malformed(self.what, "0xff is not a length")),
        };
        let mut a = [0u8; 8];
        a[..width].copy_from_slice(self.take(width)?);
        Ok(Some(u64::from_le_bytes(a)))
    }

    pub(crate) fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.lenenc_int()? {
            None => Ok(None),
            Some(len) => {
                let len = usize::try_from(len)
                    .map_err(|_| ProtocolError::malformed(self.what, "length"))?;
                self.take(len).map(Some)
            }
        }
    }

    pub(crate) fn nul_terminated(&mut self) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::malformed(self.what, "unterminated string"))?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }
}

pub(crate) fn put_lenenc_int(buf: &mut Vec<u8>, value: u64) {
    match value {
        0..=0xfa => buf.put_u8(value as u8),
        0xfb..=0xffff => {
            buf.put_u8(0xfc);
            buf.put_u16_le(value as u16);
        }
        0x1_0000..=0xff_ffff => {
            buf.put_u8(0xfd);
            buf.put_uint_le(value, 3);
        }
        _ => {
            buf.put_u8(0xfe);
            buf.put_u64_le(value);
        }
    }
}

pub(crate) fn put_lenenc_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc_int(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_lenenc_int(&mut buf, v);
            assert_eq!(
                Reader::new(&buf, "t").lenenc_int().expect("read"),
                Some(v),
                "{v}"
            );
        }
        assert!(Reader::new(&[0xfe, 1], "t").lenenc_int().is_err());
        assert_eq!(Reader::new(&[0xfb], "t").lenenc_int().expect("null"), None);
    }
}
