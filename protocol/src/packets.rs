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

/// What a response packet is, by its first byte and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Response {
    Ok,
    Err,
    Eof,
    Other,
}

pub(crate) fn classify(payload: &[u8]) -> Response {
    match payload.first() {
        Some(0x00) => Response::Ok,
        Some(0xff) => Response::Err,
        Some(0xfe) if payload.len() < 9 => Response::Eof,
        _ => Response::Other,
    }
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
