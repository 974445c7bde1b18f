//! `binlogd-operator`: the operator's binary. `crds` writes the CustomResourceDefinitions
//! to `deploy/crds/` (or checks them with `--check`).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "binlogd-operator",
    version,
    about = "The binlogd Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the CustomResourceDefinitions (BinlogServer, PointInTimeRestore) as YAML files,
    /// one per resource, for `kubectl apply -f`.
    Crds {
        /// The folder to write them to.
        #[arg(long, default_value = "deploy/crds")]
        out: PathBuf,
        /// Write nothing; fail if the files there differ from what would be written.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Crds { out, check } => {
            let files = binlogd_operator::manifests::crd_files().context("rendering the CRDs")?;
            let mut stale = Vec::new();
            for (name, text) in files {
                let path = out.join(&name);
                if check {
                    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                        stale.push(path.display().to_string());
                    }
                } else {
                    std::fs::create_dir_all(&out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
            }
            if !stale.is_empty() {
                bail!(
                    "stale: {} (run `binlogd-operator crds --out {}`)",
                    stale.join(", "),
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
