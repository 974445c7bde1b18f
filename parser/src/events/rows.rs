//! TABLE_MAP and the ROWS events, as far as an archiver needs them: which table, which
//! column types, how many columns. Row images stay undecoded bytes.
//!
//! TABLE_MAP (<https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Table__map__event.html>):
//! ```text
//!   post-header: table_id (6 bytes; 4 when the post-header is 6 bytes long), flags u16
//!   body: schema_len u8, schema, 0x00, table_len u8, table, 0x00,
//!         column_count (packed integer), column_types [column_count], metadata ...
//! ```
//! ROWS v1/v2 (<https://dev.mysql.com/doc/dev/mysql-server/latest/classbinary__log_1_1Rows__event.html>):
//! ```text
//!   post-header: table_id (6 or 4 bytes), flags u16, [v2: extra_len u16 incl. itself, extra]
//!   body: column_count (packed integer), column bitmaps, row images
//! ```

use crate::error::ErrorKind;
use crate::le::{read_packed_integer, read_u16, read_u32};

/// A TABLE_MAP event: maps a table id to a table for the ROWS events after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMap<'a> {
    /// Table id the ROWS events refer to.
    pub table_id: u64,
    /// Table-map flags.
    pub flags: u16,
    /// Schema name.
    pub schema: &'a [u8],
    /// Table name.
    pub table: &'a [u8],
    /// How many columns the table has.
    pub(crate) column_count: u32,
    /// The column types (one byte per column), then the metadata's length and bytes, the
    /// NULL bitmap and optional metadata, their lengths checked when parsed: one slice,
    /// not four, to keep every [`crate::Event`] small.
    pub(crate) columns: &'a [u8],
}

/// The header of a ROWS event (write, update or delete, any version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsHeader<'a> {
    /// The table, as mapped by the preceding TABLE_MAP.
    pub table_id: u64,
    /// Rows flags (bit 0: end of statement).
    pub flags: u16,
    /// v2 extra data (empty for v1).
    pub extra_data: &'a [u8],
    /// Everything after the post-header: column count, bitmaps, row images.
    pub rows: &'a [u8],
    /// Whether the event carries two column bitmaps (before and after image: UPDATE).
    pub two_bitmaps: bool,
    /// Whether the row images are MariaDB-compressed (`*_ROWS_COMPRESSED` events).
    pub compressed: bool,
}

/// The column count and columns-present bitmaps of a ROWS event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnBitmaps<'a> {
    /// Columns of the table.
    pub columns: usize,
    /// Which columns each (before) image holds.
    pub before: &'a [u8],
    /// Which columns each after image holds (UPDATE only).
    pub after: Option<&'a [u8]>,
    /// Where the row images start in [`RowsHeader::rows`].
    images_at: usize,
}

/// ROWS flag: the last ROWS event of its statement.
pub const STMT_END_F: u16 = 0x0001;

fn split_table_id(body: &[u8], post_header_len: usize) -> Result<(u64, u16, &[u8]), ErrorKind> {
    let id_len = if post_header_len == 6 { 4 } else { 6 };
    if body.len() < id_len + 2 {
        return Err(ErrorKind::BodyTooShort {
            len: body.len(),
            minimum: id_len + 2,
        });
    }
    let mut id = [0u8; 8];
    id[..id_len].copy_from_slice(&body[..id_len]);
    let flags = read_u16(&body[id_len..]);
    Ok((u64::from_le_bytes(id), flags, &body[id_len + 2..]))
}

fn length_prefixed_name<'a>(
    input: &'a [u8],
    field: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ErrorKind> {
    let (&len, rest) = input
        .split_first()
        .ok_or(ErrorKind::BodyTooShort { len: 0, minimum: 1 })?;
    let len = usize::from(len);
    // Name, then a NUL terminator.
    if len + 1 > rest.len() {
        return Err(ErrorKind::LengthMismatch {
            field,
            value: len as u64 + 1,
            available: rest.len(),
        });
    }
    Ok((&rest[..len], &rest[len + 1..]))
}

impl<'a> TableMap<'a> {
    pub(crate) fn parse(body: &'a [u8], post_header_len: usize) -> Result<Self, ErrorKind> {
        let (table_id, flags, rest) = split_table_id(body, post_header_len)?;
        // Post-headers longer than we know hold fields we skip.
        let rest = rest
            .get(post_header_len.saturating_sub(8)..)
            .unwrap_or_default();
        let (schema, rest) = length_prefixed_name(rest, "schema name length")?;
        let (table, rest) = length_prefixed_name(rest, "table name length")?;
        let (columns, used) =
            read_packed_integer(rest).ok_or(ErrorKind::Invalid("column count"))?;
        let rest = &rest[used..];
        if columns > rest.len() as u64 {
            return Err(ErrorKind::LengthMismatch {
                field: "column count",
                value: columns,
                available: rest.len(),
            });
        }
        let column_count =
            u32::try_from(columns).map_err(|_| ErrorKind::Invalid("column count"))?;
        let (column_types, after_types) = rest.split_at(columns as usize);
        // Servers since 5.1 follow with the metadata and the NULL bitmap; tolerate their
        // absence (nothing after the types) as the old format.
        if !after_types.is_empty() {
            let (metadata_len, used) =
                read_packed_integer(after_types).ok_or(ErrorKind::Invalid("metadata length"))?;
            let available = after_types.len() - used;
            let bitmap_len = column_types.len().div_ceil(8);
            if metadata_len.saturating_add(bitmap_len as u64) > available as u64 {
                return Err(ErrorKind::LengthMismatch {
                    field: "metadata length",
                    value: metadata_len.saturating_add(bitmap_len as u64),
                    available,
                });
            }
        }
        Ok(TableMap {
            table_id,
            flags,
            schema,
            table,
            column_count,
            columns: rest,
        })
    }

    /// One MySQL type code per column.
    pub fn column_types(&self) -> &'a [u8] {
        &self.columns[..self.column_count as usize]
    }

    /// The metadata, the NULL bitmap and the optional metadata (all empty in the old
    /// format without them).
    fn parts(&self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        let after_types = &self.columns[self.column_count as usize..];
        let empty = &after_types[..0];
        let Some((metadata_len, used)) = read_packed_integer(after_types) else {
            return (empty, empty, empty);
        };
        let rest = &after_types[used..];
        let metadata_len = usize::try_from(metadata_len)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        let (metadata, rest) = rest.split_at(metadata_len);
        let nulls_len = (self.column_count as usize).div_ceil(8).min(rest.len());
        let (nulls, optional) = rest.split_at(nulls_len);
        (metadata, nulls, optional)
    }

    /// The columns' metadata, concatenated (0, 1 or 2 bytes per column by type: lengths,
    /// precision, fractional seconds); the row_image module walks values with it.
    pub fn column_metadata(&self) -> &'a [u8] {
        self.parts().0
    }

    /// One bit per column: whether it can be NULL.
    pub fn null_bitmap(&self) -> &'a [u8] {
        self.parts().1
    }

    /// Optional metadata (MySQL 8.0.1+, MariaDB 10.5+): type-length-value fields, among
    /// them the column names with `binlog_row_metadata=FULL`.
    pub fn optional_metadata(&self) -> &'a [u8] {
        self.parts().2
    }
}

impl<'a> RowsHeader<'a> {
    pub(crate) fn parse(
        body: &'a [u8],
        post_header_len: usize,
        version2: bool,
    ) -> Result<Self, ErrorKind> {
        let (table_id, flags, rest) = split_table_id(body, post_header_len)?;
        if !version2 {
            return Ok(RowsHeader {
                table_id,
                flags,
                extra_data: &[],
                rows: rest,
                two_bitmaps: false,
                compressed: false,
            });
        }
        if rest.len() < 2 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: body.len() - rest.len() + 2,
            });
        }
        let extra_len = usize::from(read_u16(rest));
        if extra_len < 2 || extra_len > rest.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "extra data length",
                value: extra_len as u64,
                available: rest.len(),
            });
        }
        Ok(RowsHeader {
            table_id,
            flags,
            extra_data: &rest[2..extra_len],
            rows: &rest[extra_len..],
            two_bitmaps: false,
            compressed: false,
        })
    }

    /// The column count and the columns-present bitmaps: the before image's (or the
    /// only one's) and, for an UPDATE, the after image's.
    pub fn column_bitmaps(&self) -> Result<ColumnBitmaps<'a>, ErrorKind> {
        let (columns, used) =
            read_packed_integer(self.rows).ok_or(ErrorKind::Invalid("column count"))?;
        let bitmap_len =
            usize::try_from(columns.div_ceil(8)).map_err(|_| ErrorKind::Invalid("column count"))?;
        let bitmaps = if self.two_bitmaps { 2 } else { 1 };
        let skip = bitmap_len
            .checked_mul(bitmaps)
            .and_then(|b| b.checked_add(used))
            .ok_or(ErrorKind::Invalid("column count"))?;
        if skip > self.rows.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "column bitmaps",
                value: skip as u64,
                available: self.rows.len(),
            });
        }
        let before = &self.rows[used..used + bitmap_len];
        Ok(ColumnBitmaps {
            columns: columns as usize,
            before,
            after: self
                .two_bitmaps
                .then(|| &self.rows[used + bitmap_len..skip]),
            images_at: skip,
        })
    }

    /// The row images, after the column count and column bitmaps; decompressed when
    /// the server compressed them (MariaDB compresses only this part of the event).
    pub fn row_images(&self) -> Result<std::borrow::Cow<'a, [u8]>, ErrorKind> {
        let images = &self.rows[self.column_bitmaps()?.images_at..];
        if self.compressed {
            crate::events::compressed::decompress_mariadb(images).map(std::borrow::Cow::Owned)
        } else {
            Ok(std::borrow::Cow::Borrowed(images))
        }
    }
}

/// An XA_PREPARE event (MySQL): the end of the prepared part of an XA transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XaPrepare<'a> {
    /// Whether this is `XA COMMIT ... ONE PHASE`.
    pub one_phase: bool,
    /// XID format id.
    pub format_id: u32,
    /// Global transaction id part of the XID.
    pub gtrid: &'a [u8],
    /// Branch qualifier part of the XID.
    pub bqual: &'a [u8],
}

impl<'a> XaPrepare<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, ErrorKind> {
        if body.len() < 13 {
            return Err(ErrorKind::BodyTooShort {
                len: body.len(),
                minimum: 13,
            });
        }
        let one_phase = body[0] != 0;
        let format_id = read_u32(&body[1..5]);
        let gtrid_len = read_u32(&body[5..9]) as usize;
        let bqual_len = read_u32(&body[9..13]) as usize;
        let data = &body[13..];
        // An XID holds at most 128 bytes in all.
        if gtrid_len > 64 || bqual_len > 64 || gtrid_len + bqual_len > data.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "XID length",
                value: (gtrid_len + bqual_len) as u64,
                available: data.len(),
            });
        }
        Ok(XaPrepare {
            one_phase,
            format_id,
            gtrid: &data[..gtrid_len],
            bqual: &data[gtrid_len..gtrid_len + bqual_len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_map_names_and_types() {
        let mut body = vec![0x2a, 0, 0, 0, 0, 0, 1, 0];
        body.extend_from_slice(&[4, b's', b'h', b'o', b'p', 0, 1, b't', 0, 3, 3, 15, 252]);
        let map = TableMap::parse(&body, 8).expect("parse");
        assert_eq!(
            (map.table_id, map.schema, map.table),
            (42, &b"shop"[..], &b"t"[..])
        );
        assert_eq!(map.column_types(), [3, 15, 252]);
        assert!(map.column_metadata().is_empty() && map.null_bitmap().is_empty());
        // Metadata (VARCHAR(20): 2 bytes; BLOB: 1 byte), the NULL bitmap, then optional
        // metadata.
        let mut with_metadata = body.clone();
        with_metadata.extend_from_slice(&[3, 20, 0, 2, 0b110, 1, 1, 0]);
        let map = TableMap::parse(&with_metadata, 8).expect("parse");
        assert_eq!(map.column_metadata(), [20, 0, 2]);
        assert_eq!(map.null_bitmap(), [0b110]);
        assert_eq!(map.optional_metadata(), [1, 1, 0]);
        with_metadata[17] = 9; // metadata longer than the event
        assert!(TableMap::parse(&with_metadata, 8).is_err());
        body[14] = 9; // column count beyond the body
        assert!(TableMap::parse(&body, 8).is_err());
    }

    #[test]
    fn rows_v2_extra_data_is_bounded() {
        let body = [7, 0, 0, 0, 0, 0, 1, 0, 4, 0, 0xaa, 0xbb, 2, 0xff];
        let rows = RowsHeader::parse(&body, 10, true).expect("parse");
        assert_eq!((rows.table_id, rows.flags), (7, STMT_END_F));
        assert_eq!(rows.extra_data, [0xaa, 0xbb]);
        assert_eq!(rows.rows, [2, 0xff]);
        let lying = [7, 0, 0, 0, 0, 0, 1, 0, 0xff, 0];
        assert!(RowsHeader::parse(&lying, 10, true).is_err());
        // Pre-GA 5.1 rows events have 4-byte table ids (post-header of 6).
        let old = [9, 0, 0, 0, 1, 0, 1];
        assert_eq!(
            RowsHeader::parse(&old, 6, false).expect("parse").table_id,
            9
        );
    }
}
