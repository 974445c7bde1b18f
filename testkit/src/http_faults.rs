//! An HTTP proxy on loopback that makes an S3-compatible server misbehave on purpose:
//! some requests get `503 Slow Down` without reaching the server, some responses are held
//! back before they are passed on.
//!
//! One request per connection: the proxy reads a request's head, decides its fate, and
//! either answers 503 itself or forwards the request with `Connection: close` and copies
//! the server's answer back (after a pause, for a slowed one). Bodies stream through in
//! both directions untouched, so `Expect: 100-continue`, chunked bodies and signed
//! payloads all pass as they are.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// Which requests to spoil: every `fail_one_in`-th gets a 503, every `slow_one_in`-th
/// response waits `slow_by` (0 turns a fault off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer one request in this many with 503 Slow Down.
    pub fail_one_in: u64,
    /// Hold back one response in this many.
    pub slow_one_in: u64,
    /// For how long.
    pub slow_by: Duration,
}

/// A running proxy; dropping it stops accepting (open exchanges finish on their own).
#[derive(Debug)]
pub struct HttpFaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Requests seen, by what they ask of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// ListObjectsV2 pages.
    pub list: u64,
    /// Object reads (GET, HEAD).
    pub get: u64,
    /// Object writes (PUT, POST: multipart and batch deletes).
    pub put: u64,
    /// Object deletions.
    pub delete: u64,
}

impl RequestCounts {
    /// Every request.
    pub fn total(&self) -> u64 {
        self.list + self.get + self.put + self.delete
    }

    /// Requests since `earlier`.
    pub fn since(&self, earlier: RequestCounts) -> RequestCounts {
        RequestCounts {
            list: self.list - earlier.list,
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            delete: self.delete - earlier.delete,
        }
    }
}

impl std::fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests ({} LIST, {} GET, {} PUT, {} DELETE)",
            self.total(),
            self.list,
            self.get,
            self.put,
            self.delete
        )
    }
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    counts: Mutex<RequestCounts>,
    faults: Mutex<Faults>,
    target_port: u16,
    requests: AtomicU64,
    failed: AtomicU64,
    slowed: AtomicU64,
}

impl HttpFaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target_port`.
    pub fn start(target_port: u16, faults: Faults) -> Result<HttpFaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            target_port,
            ..Shared::default()
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::spawn(move || {
            while !accept_shared.stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&accept_shared);
                        std::thread::spawn(move || {
                            let _ = exchange(client, &shared);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(HttpFaultProxy {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// The port clients use instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the faults from the next request on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Requests seen.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests seen so far, by kind.
    pub fn counts(&self) -> RequestCounts {
        *self.shared.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests answered with 503.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Responses held back.
    pub fn slowed(&self) -> u64 {
        self.shared.slowed.load(Ordering::SeqCst)
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><Resource>/</Resource>\
<RequestId>binlogd-fault-proxy</RequestId></Error>";

fn exchange(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The request head, and whatever of the body came with it.
    let mut buffered = Vec::new();
    let head_end = loop {
        if let Some(at) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buffered.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffered[..head_end]).into_owned();
    let number = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    {
        let mut counts = shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        let request_line = head.lines().next().unwrap_or_default();
        let method = request_line.split(' ').next().unwrap_or_default();
        match method {
            "GET" if request_line.contains("list-type=2") => counts.list += 1,
            "GET" | "HEAD" => counts.get += 1,
            "DELETE" => counts.delete += 1,
            _ => counts.put += 1,
        }
    }
    let faults = *shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    if faults.fail_one_in > 0 && number.is_multiple_of(faults.fail_one_in) {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        let is_head = head.starts_with("HEAD ");
        let response = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             x-amz-request-id: binlogd-fault-proxy\r\nConnection: close\r\n\r\n{}",
            SLOW_DOWN.len(),
            if is_head { "" } else { SLOW_DOWN }
        );
        client.write_all(response.as_bytes())?;
        client.flush()?;
        // Let the client finish sending its body before the socket goes, so that it
        // reads the 503 rather than a reset.
        let _ = client.shutdown(Shutdown::Write);
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut sink = [0u8; 65536];
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        return Ok(());
    }
    let slow = faults.slow_one_in > 0 && number.is_multiple_of(faults.slow_one_in);
    let mut server = TcpStream::connect(("127.0.0.1", shared.target_port))?;
    // One request per connection: the server closes after answering.
    let mut rewritten = String::new();
    for line in head.trim_end_matches("\r\n\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    server.write_all(rewritten.as_bytes())?;
    server.write_all(&buffered[head_end..])?;
    // The rest of the body, as the client sends it.
    let mut upload_from = client.try_clone()?;
    let mut upload_to = server.try_clone()?;
    let uploader = std::thread::spawn(move || {
        let _ = std::io::copy(&mut upload_from, &mut upload_to);
    });
    if slow {
        shared.slowed.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(faults.slow_by);
    }
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = uploader.join();
    Ok(())
}
