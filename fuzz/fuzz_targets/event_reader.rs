//! A whole binlog file: framing, CRC32, decoding, transactions, compressed payloads, and
//! row images walked with the columns of the TABLE_MAP before them.
#![no_main]

use binlogd_parser::events::row_image::{
    TableColumns, column_names, count_rows, decode_value, for_each_image,
};
use binlogd_parser::events::{Event, decompress_mariadb};
use binlogd_parser::{EventReader, TransactionTracker, decode_event};
use libfuzzer_sys::fuzz_target;

/// Decompression output is bounded by what the header declares; keep fuzz runs small.
const MAX_FUZZ_DECOMPRESS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut reader = EventReader::new(data);
    let mut tracker = TransactionTracker::new();
    let mut columns: Option<TableColumns> = None;
    while let Some(Ok(raw)) = reader.next() {
        let Some(format) = reader.format().cloned() else {
            break;
        };
        let Ok(event) = decode_event(&raw, &format) else {
            continue;
        };
        match &event {
            Event::TransactionPayload(payload)
                if payload.uncompressed_size <= MAX_FUZZ_DECOMPRESS =>
            {
                if let Ok(inner) = payload.decompress() {
                    let mut events = EventReader::payload(&inner, &format);
                    while let Some(Ok(inner_event)) = events.next() {
                        if let Some(inner_format) = events.format() {
                            let _ = decode_event(&inner_event, inner_format);
                        }
                    }
                }
            }
            Event::Query(query) if query.compressed && query.sql.len() < 64 => {
                let _ = decompress_mariadb(query.sql);
            }
            Event::TableMap(map) => {
                let _ = column_names(map);
                columns = TableColumns::from_table_map(map).ok();
            }
            Event::Rows(rows) if !rows.compressed || rows.rows.len() < 64 => {
                if let Some(columns) = &columns {
                    let counted = count_rows(raw.event_type(), rows, columns);
                    let walked = for_each_image(raw.event_type(), rows, columns, &mut |values| {
                        for (index, value) in values.iter().enumerate() {
                            if let Some(bytes) = value {
                                let _ = decode_value(columns, index, bytes);
                            }
                        }
                    });
                    assert_eq!(counted.is_ok(), walked.is_ok());
                }
            }
            _ => {}
        }
        if let Some(transaction) = tracker.push(&raw, &event) {
            assert!(transaction.start < transaction.end);
            assert!(transaction.end <= data.len() as u64);
        }
    }
    let _ = reader.finish();
});
