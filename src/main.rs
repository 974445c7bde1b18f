//! `binlogd`: the command line. Argument parsing and wiring live here; the work itself is
//! in the library crates (`binlogd-parser`, `binlogd-protocol`, `binlogd-storage`,
//! `binlogd-replica`, `binlogd-serve`, `binlogd-find`, `binlogd-restore`).

mod archive;
mod find;
mod flags;
mod inspect;
mod inspect_output;
mod list;
mod metrics;
mod purge;
mod report;
mod restore;
mod restore_args;
mod restore_replay;
mod restore_report;
mod search;
mod secrets;
mod serve;
mod signals;
mod source;
mod stream;
mod timeline;
mod timeline_svg;
mod upload;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Binlog server for MySQL and MariaDB: streams binlogs like a replica, indexes every
/// transaction, archives the files, and restores a database to a point in time.
#[derive(Debug, Parser)]
#[command(name = "binlogd", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: text for people, json for log collectors. The level comes
    /// from BINLOGD_LOG (e.g. debug, or binlogd=debug,info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: LogFormat,
    /// Refuse password and key files that every user of the machine may read, instead of
    /// warning about them.
    #[arg(long, global = true)]
    strict_permissions: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the events or transactions of a binlog file, like a reader-friendly
    /// mysqlbinlog (MySQL 5.0–9.x and MariaDB files).
    Inspect(inspect::InspectArgs),
    /// Follow a MySQL or MariaDB server like a replica and archive its binlogs byte for
    /// byte, indexed, surviving disconnects and crashes.
    Stream(Box<stream::StreamArgs>),
    /// List the files of an archive (local or S3): state, size, transactions, GTIDs and
    /// commit times.
    List(list::ListArgs),
    /// Re-read an archive (local or S3) and check it: every segment and event CRC32, files
    /// whole and of their recorded size, GTID states continuing file to file. Exits 1 on
    /// any problem.
    Verify(verify::VerifyArgs),
    /// Find what a replay needs: from a start GTID state (a backup's) to a GTID, a time, a
    /// position or the latest transaction, the archived files and the byte ranges of them
    /// to apply, and the exact stop point. Reads only the indexes it must.
    Search(search::SearchArgs),
    /// Find the transactions that match a table, a kind of change (drop, truncate, delete,
    /// ...), a statement's text, a number of rows, a time or GTIDs, across the whole
    /// archive (local or S3); each with the `binlogd restore --before-gtid` command line
    /// that undoes it.
    Find(find::FindArgs),
    /// Show how far the archive takes a database from a GTID state: the last recoverable
    /// time and GTID state, continuous stretches, gaps, and server changes (failovers) with
    /// any transactions they dropped.
    Timeline(timeline::TimelineArgs),
    /// Delete archived files a retention policy lets go: whole sealed files from the oldest
    /// end, older than --retention and all held by the backup of --keep-after-gtid; never
    /// the newest file, never a gap. On an S3 archive a running stream does this itself.
    Purge(purge::PurgeArgs),
    /// Restore a MariaDB or MySQL server to a point in time: the archived binlogs from its GTID
    /// state (or a backup's) to a time, a GTID, just before a GTID, a position or the
    /// latest, staged as relay logs and replayed by the server's own parallel applier,
    /// stopping exactly at the target. Into a server running here (--target), or into a
    /// restored datadir that binlogd starts a private server on (--datadir). --dry-run
    /// prints the plan.
    Restore(Box<restore::RestoreArgs>),
    /// Upload what the spool of a stopped `binlogd stream` holds to its S3 archive, and exit
    /// once all of it is there: after a crash, or when the source is gone for good.
    Upload(upload::UploadArgs),
    /// Serve the archive to MySQL and MariaDB replicas (and mysqlbinlog
    /// --read-from-remote-server) as their source: by file and position or by GTIDs, over
    /// TLS, from the oldest file to the live tail a running `binlogd stream` writes.
    Serve(serve::ServeArgs),
    /// Write the users-file lines that let an account log in to `binlogd serve`: the
    /// password is read from the terminal (not echoed) or standard input, never the
    /// command line.
    ServeUser(serve::ServeUserArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    secrets::init(cli.strict_permissions);
    let filter = tracing_subscriber::EnvFilter::try_from_env("BINLOGD_LOG")
        // The AWS SDK says at info level where it found credentials, on every start.
        .unwrap_or_else(|_| "info,aws_config=warn".into());
    // Colours only on a terminal: a log file or collector would get escape codes.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Stream(args) => stream::run(*args),
        Command::List(args) => list::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Search(args) => search::run(&args),
        Command::Find(args) => find::run(&args),
        Command::Timeline(args) => timeline::run(&args),
        Command::Purge(args) => purge::run(&args),
        Command::Restore(args) => restore::run(&args),
        Command::Upload(args) => upload::upload_spool(&args),
        Command::Serve(args) => serve::run(&args),
        Command::ServeUser(args) => serve::run_serve_user(&args),
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
