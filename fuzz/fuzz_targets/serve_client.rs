//! What anyone who can reach `binlogd serve`'s port may send: a login packet, or a command
//! (COM_QUERY text answered by a session, COM_BINLOG_DUMP and COM_BINLOG_DUMP_GTID bodies
//! with their GTID states and sets). See `binlogd_serve::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| binlogd_serve::fuzzing::client_packet(data));
