//! Walking the row images of a ROWS event: where each row, and each value in it, begins.
//!
//! A row image carries no lengths of its own: each value is as long as its column's type
//! and TABLE_MAP metadata say. So the table's map is read into [`TableColumns`] (one
//! [`ValueLength`] per column) and a ROWS event's images are walked with it:
//!
//! ```text
//!   row image: NULL bitmap (one bit per column present in the image)
//!              then, for each present and non-NULL column, its value
//!   WRITE / DELETE: one image per row; UPDATE: a before image then an after image,
//!   each read with its own columns-present bitmap
//! ```
//!
//! Metadata per column type (MySQL's `Field::save_field_metadata`; `log_event_print_value`
//! in `sql/log_event.cc` prints values by the same rules): FLOAT, DOUBLE, BLOB, GEOMETRY,
//! JSON, VECTOR and the fractional-second types TIMESTAMP2, DATETIME2, TIME2 one byte;
//! VARCHAR, BIT, NEWDECIMAL, STRING (and ENUM and SET, which a TABLE_MAP shows as STRING
//! with the real type in the metadata) two; the others none. MariaDB's compressed
//! columns (`VARCHAR_COMPRESSED`, `BLOB_COMPRESSED`) are laid out as VARCHAR and BLOB.
//!
//! Values stay bytes here: counting rows (`binlogd find --min-rows`) needs only their
//! lengths.

use crate::EventType;
use crate::error::ErrorKind;
use crate::events::rows::{RowsHeader, TableMap};

/// How long one column's value is in a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueLength {
    /// Always this many bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes (1–4), then that many bytes.
    Prefixed(usize),
}

/// The value lengths of a table's columns, from its TABLE_MAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    lengths: Vec<ValueLength>,
}

// Column type codes (MySQL's `enum_field_types`, MariaDB's additions).
const DECIMAL: u8 = 0;
const TINY: u8 = 1;
const SHORT: u8 = 2;
const LONG: u8 = 3;
const FLOAT: u8 = 4;
const DOUBLE: u8 = 5;
const NULL: u8 = 6;
const TIMESTAMP: u8 = 7;
const LONGLONG: u8 = 8;
const INT24: u8 = 9;
const DATE: u8 = 10;
const TIME: u8 = 11;
const DATETIME: u8 = 12;
const YEAR: u8 = 13;
const NEWDATE: u8 = 14;
const VARCHAR: u8 = 15;
const BIT: u8 = 16;
const TIMESTAMP2: u8 = 17;
const DATETIME2: u8 = 18;
const TIME2: u8 = 19;
const VARCHAR_COMPRESSED: u8 = 140;
const BLOB_COMPRESSED: u8 = 141;
const VECTOR: u8 = 242;
const JSON: u8 = 245;
const NEWDECIMAL: u8 = 246;
const ENUM: u8 = 247;
const SET: u8 = 248;
const TINY_BLOB: u8 = 249;
const MEDIUM_BLOB: u8 = 250;
const LONG_BLOB: u8 = 251;
const BLOB: u8 = 252;
const VAR_STRING: u8 = 253;
const STRING: u8 = 254;
const GEOMETRY: u8 = 255;

impl TableColumns {
    /// Reads the column types and metadata of `map`.
    pub fn from_table_map(map: &TableMap<'_>) -> Result<TableColumns, ErrorKind> {
        let mut metadata = map.column_metadata();
        let mut take = |n: usize| -> Result<&[u8], ErrorKind> {
            if metadata.len() < n {
                return Err(ErrorKind::LengthMismatch {
                    field: "column metadata",
                    value: n as u64,
                    available: metadata.len(),
                });
            }
            let (now, rest) = metadata.split_at(n);
            metadata = rest;
            Ok(now)
        };
        let mut lengths = Vec::with_capacity(map.column_types().len());
        for &column_type in map.column_types() {
            lengths.push(match column_type {
                TINY | YEAR => ValueLength::Fixed(1),
                SHORT => ValueLength::Fixed(2),
                INT24 | DATE | TIME | NEWDATE => ValueLength::Fixed(3),
                LONG | TIMESTAMP => ValueLength::Fixed(4),
                LONGLONG | DATETIME => ValueLength::Fixed(8),
                NULL => ValueLength::Fixed(0),
                FLOAT => {
                    take(1)?;
                    ValueLength::Fixed(4)
                }
                DOUBLE => {
                    take(1)?;
                    ValueLength::Fixed(8)
                }
                TIMESTAMP2 => ValueLength::Fixed(4 + fraction_bytes(take(1)?[0])?),
                DATETIME2 => ValueLength::Fixed(5 + fraction_bytes(take(1)?[0])?),
                TIME2 => ValueLength::Fixed(3 + fraction_bytes(take(1)?[0])?),
                VARCHAR | VAR_STRING | VARCHAR_COMPRESSED => {
                    let meta = take(2)?;
                    string_length(u16::from_le_bytes([meta[0], meta[1]]).into())
                }
                BIT => {
                    let meta = take(2)?;
                    // Bits beyond whole bytes, then whole bytes.
                    let bytes = usize::from(meta[1]) + usize::from(meta[0] > 0);
                    ValueLength::Fixed(bytes)
                }
                NEWDECIMAL => {
                    let meta = take(2)?;
                    ValueLength::Fixed(decimal_bytes(meta[0], meta[1])?)
                }
                STRING | ENUM | SET => {
                    let meta = take(2)?;
                    string_column(column_type, meta[0], meta[1])?
                }
                BLOB | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | GEOMETRY | JSON | VECTOR
                | BLOB_COMPRESSED => {
                    let prefix = usize::from(take(1)?[0]);
                    if !(1..=4).contains(&prefix) {
                        return Err(ErrorKind::Invalid("length-prefix size of a BLOB column"));
                    }
                    ValueLength::Prefixed(prefix)
                }
                // DECIMAL before 5.0 and anything newer than we know: no way to tell
                // the value's length.
                DECIMAL | 20..=u8::MAX => {
                    return Err(ErrorKind::Invalid(
                        "a column type row images cannot be walked",
                    ));
                }
            });
        }
        Ok(TableColumns { lengths })
    }

    /// How many columns the table has.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the table has no columns.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}

/// Bytes of the fractional seconds of a TIMESTAMP2, DATETIME2 or TIME2 of precision `fsp`.
fn fraction_bytes(fsp: u8) -> Result<usize, ErrorKind> {
    if fsp > 6 {
        return Err(ErrorKind::Invalid("fractional-second precision above 6"));
    }
    Ok(usize::from(fsp).div_ceil(2))
}

/// A string column of at most `max` bytes: a 1-byte length below 256, else 2 bytes.
fn string_length(max: usize) -> ValueLength {
    ValueLength::Prefixed(if max < 256 { 1 } else { 2 })
}

/// A STRING column's metadata: the real type (STRING, ENUM or SET) in the first byte,
/// with bits 4–5 of the maximum length folded into it for long CHAR columns.
fn string_column(column_type: u8, first: u8, second: u8) -> Result<ValueLength, ErrorKind> {
    let (real_type, max) = if column_type != STRING {
        (column_type, usize::from(second))
    } else if first & 0x30 != 0x30 {
        (
            first | 0x30,
            usize::from(second) | (usize::from((first & 0x30) ^ 0x30) << 4),
        )
    } else {
        (first, usize::from(second))
    };
    match real_type {
        // The value is the index (ENUM) or bitmap (SET), `max` bytes long.
        ENUM | SET => {
            if max == 0 || max > 8 {
                return Err(ErrorKind::Invalid("ENUM or SET length"));
            }
            Ok(ValueLength::Fixed(max))
        }
        _ => Ok(string_length(max)),
    }
}

/// Bytes of a NEWDECIMAL of `precision` digits, `scale` of them after the point: nine
/// digits in four bytes, the rest of each part in as few bytes as hold them.
fn decimal_bytes(precision: u8, scale: u8) -> Result<usize, ErrorKind> {
    const PARTIAL: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    if scale > precision {
        return Err(ErrorKind::Invalid("DECIMAL scale above its precision"));
    }
    let (integer, fraction) = (usize::from(precision - scale), usize::from(scale));
    Ok(integer / 9 * 4 + PARTIAL[integer % 9] + fraction / 9 * 4 + PARTIAL[fraction % 9])
}

fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// The length of the row image at the start of `data`, holding the columns `present`
/// marks.
fn image_length(data: &[u8], present: &[u8], columns: &TableColumns) -> Result<usize, ErrorKind> {
    let present_count = (0..columns.len()).filter(|&c| bit(present, c)).count();
    let nulls_len = present_count.div_ceil(8);
    let nulls = data.get(..nulls_len).ok_or(ErrorKind::LengthMismatch {
        field: "row image NULL bitmap",
        value: nulls_len as u64,
        available: data.len(),
    })?;
    let mut at = nulls_len;
    let mut index_in_image = 0;
    for (column, length) in columns.lengths.iter().enumerate() {
        if !bit(present, column) {
            continue;
        }
        let is_null = bit(nulls, index_in_image);
        index_in_image += 1;
        if is_null {
            continue;
        }
        let rest = &data[at.min(data.len())..];
        let value = match *length {
            ValueLength::Fixed(n) => n,
            ValueLength::Prefixed(prefix) => {
                let Some(bytes) = rest.get(..prefix) else {
                    return Err(ErrorKind::LengthMismatch {
                        field: "row value length",
                        value: prefix as u64,
                        available: rest.len(),
                    });
                };
                let mut le = [0u8; 8];
                le[..prefix].copy_from_slice(bytes);
                let len = usize::try_from(u64::from_le_bytes(le))
                    .map_err(|_| ErrorKind::Invalid("row value length"))?;
                prefix
                    .checked_add(len)
                    .ok_or(ErrorKind::Invalid("row value length"))?
            }
        };
        if value > rest.len() {
            return Err(ErrorKind::LengthMismatch {
                field: "row value",
                value: value as u64,
                available: rest.len(),
            });
        }
        at += value;
    }
    Ok(at)
}

/// How many rows a ROWS event of type `event_type` changes (an UPDATE's before and
/// after image count as one row), walking its images with the table's `columns`.
pub fn count_rows(
    event_type: EventType,
    rows: &RowsHeader<'_>,
    columns: &TableColumns,
) -> Result<u64, ErrorKind> {
    if event_type == EventType::PARTIAL_UPDATE_ROWS {
        // JSON diffs in the after images are laid out differently; not walked.
        return Err(ErrorKind::Invalid(
            "PARTIAL_UPDATE_ROWS images are not walked",
        ));
    }
    let bitmaps = rows.column_bitmaps()?;
    if bitmaps.columns != columns.len() {
        return Err(ErrorKind::LengthMismatch {
            field: "ROWS column count (against its TABLE_MAP)",
            value: bitmaps.columns as u64,
            available: columns.len(),
        });
    }
    let images = rows.row_images()?;
    let mut data: &[u8] = &images;
    let mut count = 0u64;
    while !data.is_empty() {
        let mut row = image_length(data, bitmaps.before, columns)?;
        if let Some(after_present) = bitmaps.after {
            row += image_length(&data[row..], after_present, columns)?;
        }
        if row == 0 {
            // No column present: no server writes such a row, and it would never end.
            return Err(ErrorKind::Invalid("row images that hold no column"));
        }
        data = &data[row..];
        count += 1;
    }
    Ok(count)
}

/// The column names a TABLE_MAP's optional metadata carries (`binlog_row_metadata=FULL`),
/// if it does.
pub fn column_names<'a>(map: &TableMap<'a>) -> Option<Vec<&'a [u8]>> {
    // Type-length-value fields: type u8, length (packed integer), value.
    const COLUMN_NAME: u8 = 4;
    let mut rest = map.optional_metadata();
    while let Some((&field, after)) = rest.split_first() {
        let (len, used) = crate::le::read_packed_integer(after)?;
        let value = after.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
        rest = &after[used + value.len()..];
        if field != COLUMN_NAME {
            continue;
        }
        let mut names = Vec::with_capacity(map.column_types().len());
        let mut list = value;
        while !list.is_empty() {
            let (len, used) = crate::le::read_packed_integer(list)?;
            let name = list.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
            list = &list[used + name.len()..];
            names.push(name);
        }
        return (names.len() == map.column_types().len()).then_some(names);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TABLE_MAP of `types` with `metadata`, no column nullable, then `optional`
    /// metadata; the bytes are leaked (a test's few).
    fn map_with(types: &[u8], metadata: &[u8], optional: &[u8]) -> TableMap<'static> {
        let mut columns = types.to_vec();
        columns.push(u8::try_from(metadata.len()).expect("short"));
        columns.extend_from_slice(metadata);
        columns.extend(std::iter::repeat_n(0, types.len().div_ceil(8)));
        columns.extend_from_slice(optional);
        TableMap {
            table_id: 1,
            flags: 0,
            schema: b"db",
            table: b"t",
            column_count: types.len() as u32,
            columns: Vec::leak(columns),
        }
    }

    fn map(types: &[u8], metadata: &[u8]) -> TableMap<'static> {
        map_with(types, metadata, &[])
    }

    #[test]
    fn value_lengths_follow_the_types_and_metadata() {
        // INT, VARCHAR(300 bytes), BLOB (2-byte length), DATETIME(3), DECIMAL(10,2),
        // CHAR(10) as STRING, ENUM as STRING, BIT(10).
        const TYPES: [u8; 8] = [
            LONG, VARCHAR, BLOB, DATETIME2, NEWDECIMAL, STRING, STRING, BIT,
        ];
        let metadata = [44, 1, 2, 3, 10, 2, STRING, 10, ENUM, 1, 2, 1];
        let columns = TableColumns::from_table_map(&map(&TYPES, &metadata)).expect("columns");
        assert_eq!(
            columns.lengths,
            [
                ValueLength::Fixed(4),
                ValueLength::Prefixed(2),
                ValueLength::Prefixed(2),
                ValueLength::Fixed(7),
                ValueLength::Fixed(5),
                ValueLength::Prefixed(1),
                ValueLength::Fixed(1),
                ValueLength::Fixed(2),
            ]
        );
        // Metadata shorter than the types need.
        assert!(TableColumns::from_table_map(&map(&TYPES, &metadata[..5])).is_err());
        assert!(TableColumns::from_table_map(&map(&[DECIMAL], &[])).is_err());
    }

    #[test]
    fn long_char_columns_fold_length_bits_into_the_type_byte() {
        // CHAR(255) in utf8mb4: 1020 bytes, shown as 0xce 0xfc.
        assert_eq!(
            string_column(STRING, 0xce, 0xfc).expect("char"),
            ValueLength::Prefixed(2)
        );
        assert_eq!(decimal_bytes(65, 30).expect("decimal"), 30);
        assert!(decimal_bytes(2, 3).is_err());
    }

    /// A ROWS v2 body (no extra data) for `columns` columns, all present.
    fn rows_body(columns: u8, two_bitmaps: bool, images: &[u8]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 0, 0, 1, 0, 2, 0, columns, 0xff];
        if two_bitmaps {
            body.push(0xff);
        }
        body.extend_from_slice(images);
        body
    }

    #[test]
    fn rows_are_counted_through_nulls_and_update_pairs() {
        let columns =
            TableColumns::from_table_map(&map(&[LONG, VARCHAR], &[20, 0])).expect("columns");
        // Row 1: (7, "ab"); row 2: (8, NULL).
        let images = [0, 7, 0, 0, 0, 2, b'a', b'b', 0b10, 8, 0, 0, 0];
        let body = rows_body(2, false, &images);
        let mut rows = RowsHeader::parse(&body, 10, true).expect("rows");
        assert_eq!(
            count_rows(EventType::WRITE_ROWS, &rows, &columns).expect("count"),
            2
        );
        // An UPDATE: each row a before and an after image.
        let mut pairs = images.to_vec();
        pairs.extend_from_slice(&images);
        let body = rows_body(2, true, &pairs);
        rows = RowsHeader::parse(&body, 10, true).expect("rows");
        rows.two_bitmaps = true;
        assert_eq!(
            count_rows(EventType::UPDATE_ROWS, &rows, &columns).expect("count"),
            2
        );
        // Images of no column would repeat for ever: an error.
        let body = [1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0x00, 0xaa];
        rows = RowsHeader::parse(&body, 10, true).expect("rows");
        assert!(count_rows(EventType::WRITE_ROWS, &rows, &columns).is_err());
        // A value running past the event is an error, not a guess.
        let body = rows_body(2, false, &images[..7]);
        rows = RowsHeader::parse(&body, 10, true).expect("rows");
        assert!(count_rows(EventType::WRITE_ROWS, &rows, &columns).is_err());
    }

    #[test]
    fn column_names_come_from_full_row_metadata() {
        // SIGNEDNESS (1), then COLUMN_NAME (4): "id", "k".
        let optional = [1, 1, 0, 4, 5, 2, b'i', b'd', 1, b'k'];
        let table = map_with(&[LONG, LONG], &[], &optional);
        let names = column_names(&table).expect("names");
        assert_eq!(names, [&b"id"[..], &b"k"[..]]);
        let table = map_with(&[LONG, LONG], &[], &optional[..3]);
        assert_eq!(column_names(&table), None);
    }
}
