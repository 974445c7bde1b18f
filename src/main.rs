//! `binlogd`: the command line. Argument parsing and wiring live here; the work itself is
//! in the library crates (`binlogd-parser`, `binlogd-protocol`, `binlogd-storage`).

mod inspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Binlog server for MySQL and MariaDB: streams binlogs like a replica, indexes every
/// transaction, archives the files, and restores a database to a point in time.
#[derive(Debug, Parser)]
#[command(name = "binlogd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the events or transactions of a binlog file, like a reader-friendly
    /// mysqlbinlog (MySQL 5.0–9.x and MariaDB files).
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BINLOGD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, the context chain after colons: "inspect x.000001: read file: No such file".
            eprintln!("binlogd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
