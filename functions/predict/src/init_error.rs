//! Telling the Lambda Runtime API why the function could not start.
//!
//! Under Lambda a start-up failure (a missing or bad model, a bad setting) must be posted
//! to `POST http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error` before the
//! process exits: Lambda then answers the pending invocation with that error instead of a
//! bare "Runtime exited" and records the reason. `lambda_runtime` 1.x posts to this
//! endpoint only for its own SnapStart hooks (privately), and our model is loaded before
//! any async runtime exists, so this is a plain blocking HTTP/1.1 request with a deadline.
//!
//! This module only reports; deciding to exit is the binary's business.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The Runtime API's path for init errors, after the optional path prefix of
/// `AWS_LAMBDA_RUNTIME_API` (`cargo lambda watch` gives `127.0.0.1:9000/<function>`).
const PATH: &str = "2018-06-01/runtime/init/error";

/// How long a report may take in all (connect, send, read the status).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The body Lambda expects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    error_message: &'a str,
    error_type: &'a str,
}

/// Post `{"errorMessage": message, "errorType": error_type}` to the init-error endpoint of
/// the Runtime API at `api` (the value of `AWS_LAMBDA_RUNTIME_API`: `host:port`, maybe
/// followed by a path prefix), with `error_type` also in the
/// `Lambda-Runtime-Function-Error-Type` header. Gives up after `timeout` in all.
///
/// Returns the HTTP status the Runtime API answered (Lambda answers 202).
///
/// # Errors
/// The address does not resolve, the connection or an exchange fails or times out, or
/// the answer is not HTTP.
pub fn report_init_error(
    api: &str,
    error_type: &str,
    message: &str,
    timeout: Duration,
) -> io::Result<u16> {
    let started = Instant::now();
    let api = api.trim().trim_start_matches("http://");
    let (authority, prefix) = api.split_once('/').unwrap_or((api, ""));
    let prefix = prefix.trim_matches('/');
    let path = if prefix.is_empty() {
        format!("/{PATH}")
    } else {
        format!("/{prefix}/{PATH}")
    };
    // A header value must be visible ASCII; the types we send are, but keep it safe.
    let error_type: String = error_type
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let body = serde_json::to_vec(&Report {
        error_message: message,
        error_type: &error_type,
    })
    .map_err(io::Error::other)?;

    let addr = authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{authority} resolves to no address"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: predict/{}\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let left = timeout.saturating_sub(started.elapsed());
    crate::health_check::http_status(&mut stream, &request, left)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the answer is not HTTP"))
}
