//! `predict --check`: a health check of a running server with a plain socket, for
//! container health checks without a shell; and the one-shot HTTP/1.1 status read it and
//! the Lambda init-error report share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `GET http://127.0.0.1:{port}/health` with a plain socket (no shell, no client library):
/// true when the answer is 200 within `timeout`.
pub fn check_health(port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: predict-check\r\n\r\n"
    );
    let left = timeout.saturating_sub(started.elapsed());
    matches!(http_status(&mut s, req.as_bytes(), left), Ok(Some(200)))
}

/// Send a whole HTTP/1.1 `request` on `stream` and read the status code of the answer,
/// each step within `timeout`: `Ok(None)` when the answer does not start with a status
/// line. The rest of the answer is not read.
pub(crate) fn http_status(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Option<u16>> {
    let timeout = timeout.max(Duration::from_millis(1));
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    // "HTTP/1.1 200 OK": the first 12 bytes are all we need.
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let line = &buf[..n];
    if line.len() < 12 || !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return Ok(None);
    }
    Ok(std::str::from_utf8(&line[9..12])
        .ok()
        .and_then(|c| c.parse().ok()))
}
