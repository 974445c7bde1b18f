//! MariaDB GTID positions from text; what parses must round-trip.
#![no_main]

use binlogd_parser::MariadbGtidPos;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(pos) = text.parse::<MariadbGtidPos>()
    {
        let again: MariadbGtidPos = pos.to_string().parse().expect("canonical text parses");
        assert_eq!(again, pos);
    }
});
