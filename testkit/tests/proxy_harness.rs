//! Self-test of the cutting proxy, with a real MariaDB behind it.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use binlogd_testkit::{MariaDb, TcpProxy};

/// Reads what the server sends first (its greeting) through the proxy.
fn greeting(port: u16) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

#[test]
fn forwards_cuts_and_recovers() {
    let db = MariaDb::start_default().expect("start");
    let proxy = TcpProxy::start(db.port()).expect("proxy");

    // Forwarding: the server's greeting (protocol version 10, then its version string).
    let body = greeting(proxy.port()).expect("greeting through the proxy");
    assert_eq!(body[0], 10);
    assert!(String::from_utf8_lossy(&body).contains("MariaDB"));

    // A cut after 7 bytes: the client sees the stream end in the middle of the greeting.
    proxy.cut_after(7);
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert_eq!(received.len(), 7, "exactly the armed number of bytes");

    // cut_all severs an open connection; the next one works again.
    let mut open = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
    // Shorter than the server's own connect_timeout (10 s), which would close it too.
    open.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut header = [0u8; 4];
    open.read_exact(&mut header).expect("greeting starts");
    proxy.cut_all();
    // Without the cut the server would wait for our handshake answer and this read would
    // time out; with it the stream ends.
    let mut rest = Vec::new();
    let ended = open.read_to_end(&mut rest);
    assert!(
        ended.is_ok(),
        "closed by the cut, not just quiet: {ended:?}"
    );
    assert!(greeting(proxy.port()).is_ok(), "accepts again after a cut");
    assert_eq!(proxy.accepted(), 4);
}
