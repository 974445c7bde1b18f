//! MySQL GTID sets from text and from the binary encoding; what parses must round-trip.
#![no_main]

use binlogd_parser::MysqlGtidSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(set) = text.parse::<MysqlGtidSet>()
    {
        let again: MysqlGtidSet = set.to_string().parse().expect("canonical text parses");
        assert_eq!(again, set);
        assert_eq!(
            MysqlGtidSet::decode(&set.encode()).expect("own encoding decodes"),
            set
        );
    }
    if let Ok(set) = MysqlGtidSet::decode(data) {
        assert_eq!(
            MysqlGtidSet::decode(&set.encode()).expect("re-encoding decodes"),
            set
        );
    }
});
