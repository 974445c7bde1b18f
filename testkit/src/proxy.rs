//! A TCP proxy on loopback that tests use to break connections on purpose.
//!
//! Put it between the code under test and a server; then [`TcpProxy::cut_all`] severs every
//! open connection at once, and [`TcpProxy::cut_after`] arms a cut of the next connection's
//! server-to-client direction after exactly N bytes — in the middle of a packet or an event,
//! where reconnection logic is most easily wrong. New connections are accepted again right
//! after a cut, like a network that drops and comes back.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// A running proxy. Dropping it closes every connection and stops it.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    /// Both sockets of every connection still open.
    open: Mutex<Vec<TcpStream>>,
    /// Bytes the next connection may send to its client before it is cut (0: no cut).
    cut_after: AtomicU64,
    accepted: AtomicU64,
    cuts: AtomicU64,
    /// Where new connections go.
    target_port: AtomicU16,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the proxy")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        shared.target_port.store(target_port, Ordering::SeqCst);
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || accept_loop(&listener, &accept_shared));
        Ok(TcpProxy {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// The port clients connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Severs every open connection now (both directions).
    pub fn cut_all(&self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.shared.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Cuts the next connection accepted once it has carried `bytes` bytes from the server
    /// to the client.
    pub fn cut_after(&self, bytes: u64) {
        self.shared.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Sends new connections to `127.0.0.1:target_port` from now on, and cuts the open
    /// ones: what clients of a virtual IP see when it moves to another server.
    pub fn retarget(&self, target_port: u16) {
        self.shared.target_port.store(target_port, Ordering::SeqCst);
        self.cut_all();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut_all();
        // Wake the accept loop with a connection of our own.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let target_port = shared.target_port.load(Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let limit = shared.cut_after.swap(0, Ordering::SeqCst);
        let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        {
            let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
            for s in [&client, &server] {
                if let Ok(clone) = s.try_clone() {
                    open.push(clone);
                }
            }
        }
        std::thread::spawn(move || pump(client, server2, None));
        std::thread::spawn(move || pump(server, client2, (limit > 0).then_some(limit)));
    }
}

/// Copies `from` to `to` until either side closes, or until `limit` bytes went through;
/// then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<u64>) {
    let mut buffer = [0u8; 16 * 1024];
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        match from.read(&mut buffer[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
