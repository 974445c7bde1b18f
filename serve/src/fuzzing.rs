//! Entry point for the `serve_client` fuzz target in `fuzz/`, shared with the test that
//! replays its corpus on stable (`serve/tests/fuzz_corpus.rs`): what anyone who can reach
//! `binlogd serve`'s port may send, read as the server reads it. Must not panic, hang or
//! allocate without bound. Not an API: hidden from the docs.

use binlogd_parser::{Flavour, MariadbGtidPos, MysqlGtidSet};
use binlogd_protocol::server::{ClientHello, Command, parse_client_hello};

use crate::queries::{SessionVariables, SourceFacts, answer};

fn facts(flavour: Flavour) -> SourceFacts {
    SourceFacts {
        flavour,
        server_id: 1,
        server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
        version: "11.8.0".into(),
        binlog_checksum: "CRC32",
        gtid_domain_id: 0,
        has_gtids: true,
        binary_logs: vec![("binlog.000001".into(), 1000)],
        executed_gtids: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into()),
    }
}

/// `serve_client`: the first byte picks a login packet (even) or a command packet (odd,
/// of a MariaDB archive's session, or a MySQL one's when bit 1 is set); the rest is the
/// packet's payload. Commands are answered as a logged-in session answers them: a query
/// (then its variables read back), a dump request's file name and GTID state or set.
pub fn client_packet(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        if let Ok(ClientHello::Response(hello)) = parse_client_hello(payload) {
            // What the session takes from it.
            let _ = (
                hello.user.len(),
                hello.auth_response.len(),
                hello.auth_plugin,
            );
        }
        return;
    }
    let flavour = if selector & 2 == 0 {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    };
    let facts = facts(flavour);
    let mut session = SessionVariables::default();
    match Command::parse(payload) {
        Ok(Command::Query(query)) => {
            let _ = answer(query, &facts, &mut session, 1_765_000_000);
            let _ = answer("SELECT @slave_connect_state", &facts, &mut session, 0);
            if let Some(Some(state)) = session.get("slave_connect_state")
                && let Ok(pos) = state.parse::<MariadbGtidPos>()
            {
                let again: MariadbGtidPos = pos.to_string().parse().expect("canonical text parses");
                assert_eq!(again, pos);
            }
        }
        Ok(Command::BinlogDump(dump)) => {
            let _ = String::from_utf8_lossy(dump.file);
        }
        Ok(Command::BinlogDumpGtid(dump)) => {
            if let Ok(set) = MysqlGtidSet::decode(dump.gtid_set) {
                assert_eq!(
                    MysqlGtidSet::decode(&set.encode()).expect("re-encoding decodes"),
                    set
                );
            }
        }
        Ok(_) | Err(_) => {}
    }
}
