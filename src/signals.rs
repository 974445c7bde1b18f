//! SIGINT and SIGTERM, caught so that a command can stop cleanly: what Ctrl-C sends, and
//! what Kubernetes sends a pod's main process before it kills it (a deleted Job, a pod
//! moved off its node).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both signals, caught from the moment of [`Interrupts::catch`]: from then on they no
/// longer end the process, and [`Interrupts::recv`] hears of them.
#[derive(Debug)]
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    /// Catches SIGINT and SIGTERM.
    pub fn catch() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next one; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
