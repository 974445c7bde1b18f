//! Generic response packets: OK, ERR, EOF, and text result sets.
//! Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_response_packets.html>.

use crate::error::{ProtocolError, ServerError};
use crate::wire::Reader;

/// Parses an ERR packet (`0xff`, code u16, `#` + 5-char SQLSTATE, message).
pub(crate) fn parse_err(payload: &[u8]) -> Result<ServerError, ProtocolError> {
    let mut r = Reader::new(payload, "ERR");
    if r.u8()? != 0xff {
        return Err(ProtocolError::malformed("ERR", "does not start with 0xff"));
    }
    let code = r.u16()?;
    let state = if r.rest.first() == Some(&b'#') {
        r.take(1)?;
        String::from_utf8_lossy(r.take(5)?).into_owned()
    } else {
        "HY000".to_owned()
    };
    Ok(ServerError {
        code,
        state,
        message: String::from_utf8_lossy(r.rest).into_owned(),
    })
}

/// A server's reply in the command phase, read from its first byte and length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// OK: the command succeeded and returns no rows.
    Ok,
    /// ERR, parsed.
    Err(ServerError),
    /// EOF: the end of column definitions or rows.
    Eof,
    /// Anything else: a result set's column count, a column definition or a row.
    Data(&'a [u8]),
}

/// Reads a command-phase packet as a [`Reply`].
pub(crate) fn parse_reply(payload: &[u8]) -> Result<Reply<'_>, ProtocolError> {
    Ok(match payload.first() {
        Some(0x00) => Reply::Ok,
        Some(0xff) => Reply::Err(parse_err(payload)?),
        Some(0xfe) if payload.len() < 9 => Reply::Eof,
        _ => Reply::Data(payload),
    })
}

/// A text result row: one value per column, `None` for SQL NULL.
pub type Row = Vec<Option<String>>;

/// Parses one text-protocol row with `columns` values.
pub(crate) fn parse_text_row(payload: &[u8], columns: usize) -> Result<Row, ProtocolError> {
    let mut r = Reader::new(payload, "result row");
    (0..columns)
        .map(|_| {
            Ok(r.lenenc_bytes()?
                .map(|b| String::from_utf8_lossy(b).into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_told_by_its_first_byte_and_an_err_is_parsed() {
        assert_eq!(parse_reply(&[0x00, 0, 0, 2, 0]).expect("ok"), Reply::Ok);
        assert_eq!(parse_reply(&[0xfe, 0, 0, 2, 0]).expect("eof"), Reply::Eof);
        // 0xfe opening a long packet is a row whose first value is long, not EOF.
        let row = [0xfe, 1, 0, 0, 0, 0, 0, 0, 0, b'x'];
        assert_eq!(parse_reply(&row).expect("row"), Reply::Data(&row));
        let err = b"\xff\x15\x04#28000Access denied";
        let Reply::Err(e) = parse_reply(err).expect("err") else {
            panic!("not an ERR");
        };
        assert_eq!((e.code, e.state.as_str()), (1045, "28000"));
        assert_eq!(e.message, "Access denied");
        assert!(parse_reply(&[0xff, 0x15]).is_err(), "a truncated ERR");
        assert_eq!(parse_reply(&[1]).expect("count"), Reply::Data(&[1]));
    }
}
