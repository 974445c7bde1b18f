//! `binlogd-operator`: the operator's binary. `run` runs the controllers against the
//! cluster it is in (or the kubeconfig's); `crds` writes the CustomResourceDefinitions to
//! `deploy/crds/` (or checks them with `--check`).

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
    /// Run the controllers: BinlogServer → StatefulSet running `binlogd stream`;
    /// PointInTimeRestore → Job running `binlogd restore --datadir`. Logs go to stderr
    /// (level from BINLOGD_LOG, default info).
    Run {
        /// The binlogd image restore Jobs copy the binary from (and BinlogServers run when
        /// they name none).
        #[arg(long, env = "BINLOGD_IMAGE", default_value = binlogd_operator::workloads::DEFAULT_IMAGE)]
        binlogd_image: String,
        /// The name Events are reported under (the operator's Deployment).
        #[arg(long, default_value = "binlogd-operator")]
        reporter: String,
    },
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
        Command::Run {
            binlogd_image,
            reporter,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("BINLOGD_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(async {
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the Kubernetes API (in-cluster or kubeconfig)")?;
                let recorder = kube::runtime::events::Recorder::new(
                    client.clone(),
                    kube::runtime::events::Reporter {
                        controller: reporter,
                        instance: std::env::var("POD_NAME").ok(),
                    },
                );
                let ctx = std::sync::Arc::new(binlogd_operator::controller::Context {
                    client,
                    recorder,
                    binlogd_image,
                });
                tracing::info!("binlogd-operator running");
                binlogd_operator::controller::run(ctx).await;
                anyhow::Ok(ExitCode::SUCCESS)
            })
        }
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
