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

/// A table's columns as its TABLE_MAP describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    columns: Vec<Column>,
}

/// One column: its real type (ENUM and SET unfolded from STRING), the metadata a value's
/// decoding needs (DECIMAL's precision and scale, fractional-second precision), and how
/// long its values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    real_type: u8,
    meta_hi: u8,
    meta_lo: u8,
    length: ValueLength,
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
        let mut columns = Vec::with_capacity(map.column_types().len());
        for &column_type in map.column_types() {
            let (mut real_type, mut meta_hi, mut meta_lo) = (column_type, 0, 0);
            let length = match column_type {
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
                TIMESTAMP2 | DATETIME2 | TIME2 => {
                    meta_lo = take(1)?[0];
                    let whole = match column_type {
                        TIMESTAMP2 => 4,
                        DATETIME2 => 5,
                        _ => 3,
                    };
                    ValueLength::Fixed(whole + fraction_bytes(meta_lo)?)
                }
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
                    (meta_hi, meta_lo) = (meta[0], meta[1]);
                    ValueLength::Fixed(decimal_bytes(meta[0], meta[1])?)
                }
                STRING | ENUM | SET => {
                    let meta = take(2)?;
                    let (real, length) = string_column(column_type, meta[0], meta[1])?;
                    real_type = real;
                    length
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
            };
            columns.push(Column {
                real_type,
                meta_hi,
                meta_lo,
                length,
            });
        }
        Ok(TableColumns { columns })
    }

    /// How many columns the table has.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the table has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
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
fn string_column(column_type: u8, first: u8, second: u8) -> Result<(u8, ValueLength), ErrorKind> {
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
            Ok((real_type, ValueLength::Fixed(max)))
        }
        _ => Ok((STRING, string_length(max))),
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
/// marks; when `values` is given, each column's value bytes go into it (`None`: absent
/// from the image, or NULL).
fn walk_image<'d>(
    data: &'d [u8],
    present: &[u8],
    columns: &TableColumns,
    mut values: Option<&mut Vec<Option<&'d [u8]>>>,
) -> Result<usize, ErrorKind> {
    let present_count = (0..columns.len()).filter(|&c| bit(present, c)).count();
    let nulls_len = present_count.div_ceil(8);
    let nulls = data.get(..nulls_len).ok_or(ErrorKind::LengthMismatch {
        field: "row image NULL bitmap",
        value: nulls_len as u64,
        available: data.len(),
    })?;
    if let Some(values) = values.as_deref_mut() {
        values.clear();
        values.resize(columns.len(), None);
    }
    let mut at = nulls_len;
    let mut index_in_image = 0;
    for (index, column) in columns.columns.iter().enumerate() {
        if !bit(present, index) {
            continue;
        }
        let is_null = bit(nulls, index_in_image);
        index_in_image += 1;
        if is_null {
            continue;
        }
        let rest = &data[at.min(data.len())..];
        let value = match column.length {
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
        if let Some(values) = values.as_deref_mut() {
            values[index] = Some(&rest[..value]);
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
    walk_rows(event_type, rows, columns, None)
}

/// What [`for_each_image`] calls with each row image: its values by column.
pub type ImageVisitor<'v> = dyn FnMut(&[Option<&[u8]>]) + 'v;

/// Calls `on_image` with each row image's values by column (`None`: absent from the
/// image, or NULL) — before and after image for an UPDATE — and returns how many rows
/// there are. Decode a value with [`decode_value`].
pub fn for_each_image(
    event_type: EventType,
    rows: &RowsHeader<'_>,
    columns: &TableColumns,
    on_image: &mut ImageVisitor<'_>,
) -> Result<u64, ErrorKind> {
    walk_rows(event_type, rows, columns, Some(on_image))
}

fn walk_rows(
    event_type: EventType,
    rows: &RowsHeader<'_>,
    columns: &TableColumns,
    mut on_image: Option<&mut ImageVisitor<'_>>,
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
    let mut values: Vec<Option<&[u8]>> = Vec::new();
    let mut count = 0u64;
    while !data.is_empty() {
        let wanted = on_image.is_some();
        let mut row = walk_image(data, bitmaps.before, columns, wanted.then_some(&mut values))?;
        if let Some(on_image) = on_image.as_deref_mut() {
            on_image(&values);
        }
        if let Some(after_present) = bitmaps.after {
            let after = &data[row..];
            row += walk_image(after, after_present, columns, wanted.then_some(&mut values))?;
            if let Some(on_image) = on_image.as_deref_mut() {
                on_image(&values);
            }
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

/// A column's value, decoded as far as comparing it with what a user typed needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// An integer column (TINYINT to BIGINT, YEAR, BIT, ENUM's index, SET's bitmap):
    /// its bytes read as signed and as unsigned, the table map not saying which.
    Integer {
        /// As a signed number.
        signed: i64,
        /// As an unsigned number.
        unsigned: u64,
    },
    /// FLOAT or DOUBLE.
    Float(f64),
    /// DECIMAL, as digits with the column's scale (`-12.50`).
    Decimal(String),
    /// DATE, DATETIME, TIMESTAMP (UTC) or TIME, as MySQL prints it
    /// (`2026-12-06 10:00:00.123`).
    Temporal(String),
    /// The bytes of a string or BLOB column.
    Bytes(&'a [u8]),
    /// A type compared by nothing here (JSON's binary form, GEOMETRY, VECTOR).
    Opaque,
}

/// Decodes `bytes`, the value of column `index` of `columns`.
pub fn decode_value<'a>(
    columns: &TableColumns,
    index: usize,
    bytes: &'a [u8],
) -> Option<Value<'a>> {
    let column = columns.columns.get(index)?;
    let le = |n: usize| -> Option<u64> {
        let b = bytes.get(..n)?;
        let mut full = [0u8; 8];
        full[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(full))
    };
    let be = |from: usize, n: usize| -> Option<u64> {
        bytes
            .get(from..from + n)
            .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    let integer = |n: usize| -> Option<Value<'a>> {
        let unsigned = le(n)?;
        let shift = 64 - 8 * n as u32;
        let signed = ((unsigned << shift) as i64) >> shift;
        Some(Value::Integer { signed, unsigned })
    };
    Some(match column.real_type {
        TINY => integer(1)?,
        SHORT => integer(2)?,
        INT24 => integer(3)?,
        LONG => integer(4)?,
        LONGLONG => integer(8)?,
        YEAR => {
            let year = le(1)?;
            let year = if year == 0 { 0 } else { 1900 + year };
            Value::Integer {
                signed: year as i64,
                unsigned: year,
            }
        }
        FLOAT => Value::Float(f64::from(f32::from_bits(le(4)? as u32))),
        DOUBLE => Value::Float(f64::from_bits(le(8)?)),
        ENUM | SET => {
            let n = match column.length {
                ValueLength::Fixed(n) => n,
                ValueLength::Prefixed(_) => return None,
            };
            let value = le(n)?;
            Value::Integer {
                signed: value as i64,
                unsigned: value,
            }
        }
        BIT => {
            let n = match column.length {
                ValueLength::Fixed(n) => n,
                ValueLength::Prefixed(_) => return None,
            };
            let value = be(0, n.min(8))?;
            Value::Integer {
                signed: value as i64,
                unsigned: value,
            }
        }
        NEWDECIMAL => Value::Decimal(decode_decimal(bytes, column.meta_hi, column.meta_lo)?),
        DATE | NEWDATE => {
            let v = le(3)?;
            Value::Temporal(format!("{:04}-{:02}-{:02}", v >> 9, (v >> 5) & 15, v & 31))
        }
        DATETIME2 => {
            let packed = be(0, 5)?.wrapping_sub(0x80_0000_0000);
            let ymdhms = packed;
            let ymd = ymdhms >> 17;
            let (year_month, day) = (ymd >> 5, ymd & 31);
            let hms = ymdhms & ((1 << 17) - 1);
            let text = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                year_month / 13,
                year_month % 13,
                day,
                hms >> 12,
                (hms >> 6) & 63,
                hms & 63
            );
            Value::Temporal(with_fraction(text, bytes, 5, column.meta_lo))
        }
        TIMESTAMP2 => {
            let seconds = be(0, 4)?;
            Value::Temporal(with_fraction(utc_text(seconds), bytes, 4, column.meta_lo))
        }
        TIMESTAMP => Value::Temporal(utc_text(le(4)?)),
        DATETIME => {
            let v = le(8)?;
            let (date, time) = (v / 1_000_000, v % 1_000_000);
            Value::Temporal(format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                date / 10_000,
                (date / 100) % 100,
                date % 100,
                time / 10_000,
                (time / 100) % 100,
                time % 100
            ))
        }
        TIME2 => {
            let packed = be(0, 3)? as i64 - 0x80_0000;
            let (sign, hms) = if packed < 0 {
                ("-", -packed)
            } else {
                ("", packed)
            };
            let text = format!(
                "{sign}{:02}:{:02}:{:02}",
                (hms >> 12) & 0x3ff,
                (hms >> 6) & 63,
                hms & 63
            );
            Value::Temporal(with_fraction(text, bytes, 3, column.meta_lo))
        }
        TIME => {
            let v = le(3)?;
            Value::Temporal(format!(
                "{:02}:{:02}:{:02}",
                v / 10_000,
                (v / 100) % 100,
                v % 100
            ))
        }
        VARCHAR | VAR_STRING | VARCHAR_COMPRESSED | STRING | BLOB | TINY_BLOB | MEDIUM_BLOB
        | LONG_BLOB => {
            let ValueLength::Prefixed(prefix) = column.length else {
                return None;
            };
            Value::Bytes(bytes.get(prefix..)?)
        }
        _ => Value::Opaque,
    })
}

/// `text` with the fractional seconds stored after `at` bytes, for precision `fsp`.
fn with_fraction(mut text: String, bytes: &[u8], at: usize, fsp: u8) -> String {
    if fsp == 0 {
        return text;
    }
    let n = usize::from(fsp).div_ceil(2);
    let Some(fraction) = bytes.get(at..at + n) else {
        return text;
    };
    let value = fraction
        .iter()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    // Stored as 2, 4 or 6 digits in 1, 2 or 3 bytes; shown with `fsp` digits.
    let digits = format!("{:0width$}", value, width = n * 2);
    text.push('.');
    text.push_str(&digits[..usize::from(fsp)]);
    text
}

/// `seconds` since 1970 as a UTC date and time (`2026-12-06 10:00:00`).
fn utc_text(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Days to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// A DECIMAL(precision, scale) in its binary form, as text with `scale` digits after
/// the point.
fn decode_decimal(bytes: &[u8], precision: u8, scale: u8) -> Option<String> {
    const PARTIAL: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let integer_digits = usize::from(precision.checked_sub(scale)?);
    let scale = usize::from(scale);
    let size = decimal_bytes(precision, scale as u8).ok()?;
    let mut raw = bytes.get(..size)?.to_vec();
    // The sign is the top bit, inverted; a negative number has every bit inverted.
    let negative = raw[0] & 0x80 == 0;
    raw[0] ^= 0x80;
    if negative {
        for b in &mut raw {
            *b = !*b;
        }
    }
    let mut at = 0;
    let mut read = |n: usize| -> u64 {
        let value = raw[at..at + n]
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        at += n;
        value
    };
    let mut integer = String::new();
    let leading = PARTIAL[integer_digits % 9];
    if leading > 0 {
        integer.push_str(&read(leading).to_string());
    }
    for _ in 0..integer_digits / 9 {
        integer.push_str(&format!("{:09}", read(4)));
    }
    let integer = integer.trim_start_matches('0');
    let mut fraction = String::new();
    for _ in 0..scale / 9 {
        fraction.push_str(&format!("{:09}", read(4)));
    }
    let trailing = scale % 9;
    if trailing > 0 {
        fraction.push_str(&format!(
            "{:0width$}",
            read(PARTIAL[trailing]),
            width = trailing
        ));
    }
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    text.push_str(if integer.is_empty() { "0" } else { integer });
    if scale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
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
            columns.columns.iter().map(|c| c.length).collect::<Vec<_>>(),
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
            (STRING, ValueLength::Prefixed(2))
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
    fn values_decode_as_mysql_prints_them() {
        // INT, DECIMAL(10,2), DATETIME(3), TIMESTAMP(0), DATE, TIME(0), VARCHAR(20), ENUM.
        const TYPES: [u8; 8] = [
            LONG, NEWDECIMAL, DATETIME2, TIMESTAMP2, DATE, TIME2, VARCHAR, STRING,
        ];
        let metadata = [10, 2, 3, 0, 0, 20, 0, ENUM, 1];
        let columns = TableColumns::from_table_map(&map(&TYPES, &metadata)).expect("columns");
        fn value<'b>(columns: &TableColumns, index: usize, bytes: &'b [u8]) -> Value<'b> {
            decode_value(columns, index, bytes).expect("value")
        }
        assert_eq!(
            value(&columns, 0, &(-7i32).to_le_bytes()),
            Value::Integer {
                signed: -7,
                unsigned: u64::from(u32::MAX - 6)
            }
        );
        // 1234.50, and its negative (every bit inverted).
        let positive = [0x80, 0x00, 0x04, 0xd2, 0x32];
        assert_eq!(
            value(&columns, 1, &positive),
            Value::Decimal("1234.50".into())
        );
        let negative = positive.map(|b| !b);
        assert_eq!(
            value(&columns, 1, &negative),
            Value::Decimal("-1234.50".into())
        );
        // 2026-12-06 10:00:00.123: ((2026*13+12)<<22 | 6<<17 | 10<<12) + 2^39, then 1230.
        let packed: u64 = ((2026 * 13 + 12) << 22 | 6 << 17 | 10 << 12) + (1 << 39);
        let mut datetime = packed.to_be_bytes()[3..].to_vec();
        datetime.extend_from_slice(&1230u16.to_be_bytes());
        assert_eq!(
            value(&columns, 2, &datetime),
            Value::Temporal("2026-12-06 10:00:00.123".into())
        );
        assert_eq!(
            value(&columns, 3, &1_733_479_200u32.to_be_bytes()),
            Value::Temporal("2024-12-06 10:00:00".into())
        );
        let date: u32 = 1990 << 9 | 1 << 5 | 6;
        assert_eq!(
            value(&columns, 4, &date.to_le_bytes()[..3]),
            Value::Temporal("1990-01-06".into())
        );
        let time: u32 = 0x80_0000 + (13 << 12 | 5 << 6 | 9);
        assert_eq!(
            value(&columns, 5, &time.to_be_bytes()[1..]),
            Value::Temporal("13:05:09".into())
        );
        assert_eq!(value(&columns, 6, b"\x02hi"), Value::Bytes(b"hi"));
        assert_eq!(
            value(&columns, 7, &[2]),
            Value::Integer {
                signed: 2,
                unsigned: 2
            }
        );
        assert_eq!(decode_value(&columns, 8, b"x"), None, "no such column");
        assert_eq!(decode_value(&columns, 1, &positive[..2]), None, "too short");
    }

    #[test]
    fn each_image_of_an_update_is_seen() {
        let columns = TableColumns::from_table_map(&map(&[LONG], &[])).expect("columns");
        // One row: 1 → 2.
        let images = [0, 1, 0, 0, 0, 0, 2, 0, 0, 0];
        let mut body = vec![1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 1, 0xff, 0xff];
        body.extend_from_slice(&images);
        let mut rows = RowsHeader::parse(&body, 10, true).expect("rows");
        rows.two_bitmaps = true;
        let mut seen = Vec::new();
        let count = for_each_image(EventType::UPDATE_ROWS, &rows, &columns, &mut |values| {
            seen.push(values[0].map(<[u8]>::to_vec));
        })
        .expect("walk");
        assert_eq!(count, 1);
        assert_eq!(seen, [Some(vec![1, 0, 0, 0]), Some(vec![2, 0, 0, 0])]);
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
