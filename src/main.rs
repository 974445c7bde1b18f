//! `binlogd`: the command line. Parsing arguments and wiring crates together happens here;
//! the work itself lives in the library crates.

use clap::Parser;

/// Binlog server for MySQL and MariaDB.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
