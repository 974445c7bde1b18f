//! A TCP proxy on loopback that tests use to break connections on purpose.
//!
//! Put it between the code under test and a server; then [`TcpProxy::cut_all`] severs every
//! open connection at once, and [`TcpProxy::cut_after`] arms a cut of the next connection's
//! server-to-client direction after exactly N bytes — in the middle of a packet or an event,
//! where reconnection logic is most easily wrong. New connections are accepted again right
//! after a cut, like a network that drops and comes back. [`TcpProxy::stall_all`] is the
//! nastier failure: the open connections stop carrying bytes but stay open, as when a host
//! vanishes without closing its sockets, so the server's writes to them block.
//! [`TcpProxy::recorded`] returns what clients sent, connection by connection: what a real
//! replica says to its source, for the fixtures that record it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Every connection still open, by number.
    open: Mutex<Vec<OpenConnection>>,
    /// Bytes the next connection may send to its client before it is cut (0: no cut).
    cut_after: AtomicU64,
    accepted: AtomicU64,
    cuts: AtomicU64,
    /// Where new connections go.
    target_port: AtomicU16,
    /// Every byte each connection's client sent, by connection number.
    sent_by_clients: Mutex<Vec<Vec<u8>>>,
}

/// Both sockets of a proxied connection, and whether it is stalled.
#[derive(Debug)]
struct OpenConnection {
    number: u64,
    client: TcpStream,
    server: TcpStream,
    stalled: Arc<AtomicBool>,
}

impl OpenConnection {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
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
        for connection in self.shared.lock_open().drain(..) {
            connection.cut();
        }
        self.shared.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops every open connection carrying bytes, in both directions, without closing
    /// it: neither end hears anything again, and the server's writes block once the
    /// socket buffers are full. New connections are not affected.
    pub fn stall_all(&self) {
        for connection in self.shared.lock_open().iter() {
            connection.stalled.store(true, Ordering::SeqCst);
        }
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

    /// The bytes each client has sent so far, one entry per connection in the order they
    /// were accepted.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.shared
            .sent_by_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

impl Shared {
    fn lock_open(&self) -> std::sync::MutexGuard<'_, Vec<OpenConnection>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_open(&self, number: u64) -> bool {
        self.lock_open().iter().any(|c| c.number == number)
    }

    /// Forgets a connection whose pumps ended, closing its sockets for good.
    fn forget(&self, number: u64) {
        self.lock_open().retain(|c| c.number != number);
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
        let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared
            .sent_by_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Vec::new());
        let limit = shared.cut_after.swap(0, Ordering::SeqCst);
        let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let stalled = Arc::new(AtomicBool::new(false));
        shared.lock_open().push(OpenConnection {
            number,
            client: client3,
            server: server3,
            stalled: Arc::clone(&stalled),
        });
        let upstream = Pump {
            shared: Arc::clone(shared),
            number,
            stalled: Arc::clone(&stalled),
            records: true,
        };
        let downstream = Pump {
            shared: Arc::clone(shared),
            number,
            stalled,
            records: false,
        };
        std::thread::spawn(move || upstream.run(client, server2, None));
        std::thread::spawn(move || downstream.run(server, client2, (limit > 0).then_some(limit)));
    }
}

/// One direction of a connection.
struct Pump {
    shared: Arc<Shared>,
    number: u64,
    stalled: Arc<AtomicBool>,
    /// Whether this direction is the client's, whose bytes are kept.
    records: bool,
}

impl Pump {
    /// Copies `from` to `to` until either side closes, or until `limit` bytes went
    /// through; then closes both. While stalled it neither reads nor writes.
    fn run(self, mut from: TcpStream, mut to: TcpStream, limit: Option<u64>) {
        let mut buffer = [0u8; 16 * 1024];
        let mut left = limit.unwrap_or(u64::MAX);
        while left > 0 {
            while self.stalled.load(Ordering::SeqCst) {
                if self.shared.stopping.load(Ordering::SeqCst) || !self.shared.is_open(self.number)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let want = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            match from.read(&mut buffer[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if self.stalled.load(Ordering::SeqCst) {
                        // Stalled while this read waited: these bytes are lost on the way.
                        continue;
                    }
                    if self.records {
                        let mut sent = self
                            .shared
                            .sent_by_clients
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if let Some(bytes) = usize::try_from(self.number)
                            .ok()
                            .and_then(|i| sent.get_mut(i))
                        {
                            bytes.extend_from_slice(&buffer[..n]);
                        }
                    }
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    left -= n as u64;
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
        // Without this the list would keep the sockets open: a server writing to a
        // connection that was cut would see its writes pile up instead of failing.
        self.shared.forget(self.number);
    }
}
