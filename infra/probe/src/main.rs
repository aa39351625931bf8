//! `probe`: a tiny HTTP/1.1 client for images that have no shell and no curl.
//!
//! ```text
//! probe [--post JSON] [--expect CODE|2xx|any] [--timeout SECS] URL
//! probe --connect-only [--timeout SECS] URL
//! ```
//!
//! Sends one request (`GET`, or `POST` with a JSON body), prints the response body on
//! stdout and exits 0 when the status matches `--expect` (default `2xx`), 1 when it does not,
//! and 2 on a usage or network error. `--connect-only` just opens a TCP connection to the
//! URL's host and port (a health check that leaves no trace in the server's logs). Plain `http://` only: it talks to services on the same
//! host or the same container network, never to the internet.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

struct Args {
    url: String,
    post: Option<String>,
    expect: String,
    timeout: Duration,
    connect_only: bool,
}

const USAGE: &str = "usage: probe [--post JSON] [--expect CODE|2xx|any] [--timeout SECS] URL\n       probe --connect-only [--timeout SECS] URL";

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut url = None;
    let mut post = None;
    let mut expect = "2xx".to_string();
    let mut timeout = Duration::from_secs(5);
    let mut connect_only = false;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--post" => post = Some(value("--post")?),
            "--expect" => expect = value("--expect")?,
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --timeout {v:?}"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("bad --timeout {v:?}"));
                }
                timeout = Duration::from_secs_f64(secs);
            }
            "--connect-only" => connect_only = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown flag {s}")),
            s if url.is_none() => url = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    let url = url.ok_or("missing URL")?;
    Ok(Args {
        url,
        post,
        expect,
        timeout,
        connect_only,
    })
}

/// Split `http://host[:port][/path]` into (host, port, path).
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // `[::1]` has colons but no port; `[::1]:9` and `host:9` have one.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => {
            let port = p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?;
            (h, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

fn status_matches(expect: &str, status: u16) -> bool {
    match expect {
        "any" => true,
        "2xx" => (200..300).contains(&status),
        code => code.parse::<u16>() == Ok(status),
    }
}

/// Undo `Transfer-Encoding: chunked` (extensions and trailers ignored).
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or("truncated chunked body")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A connected stream to the URL's host and port, with read and write timeouts set.
fn connect(args: &Args, host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: cannot resolve: {e}"))?
        .collect();
    let mut last_err = format!("{host}: no addresses");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, args.timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("{addr}: {e}"),
        }
    }
    let stream = stream.ok_or(last_err)?;
    stream
        .set_read_timeout(Some(args.timeout))
        .and_then(|()| stream.set_write_timeout(Some(args.timeout)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// One request; returns (status, body).
fn request(args: &Args) -> Result<(u16, Vec<u8>), String> {
    let (host, port, path) = split_url(&args.url)?;
    let mut stream = connect(args, &host, port)?;

    let (method, body) = match &args.post {
        Some(b) => ("POST", b.as_str()),
        None => ("GET", ""),
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: probe\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if args.post.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("{}: write: {e}", args.url))?;

    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{}: read: {e}", args.url))?;
    let head_end = find(&raw, b"\r\n\r\n").ok_or(format!("{}: no HTTP response", args.url))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("{}: bad status line {status_line:?}", args.url))?;
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("probe: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.connect_only {
        return match split_url(&args.url).and_then(|(h, p, _)| connect(&args, &h, p)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("probe: {e}");
                ExitCode::from(2)
            }
        };
    }
    match request(&args) {
        Ok((status, body)) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout must not turn a healthy answer into a failure.
            let _ = out.write_all(&body).and_then(|()| out.flush());
            if status_matches(&args.expect, status) {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "probe: {}: HTTP {status}, expected {}",
                    args.url, args.expect
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://predict:8000/predict").ok(),
            Some(("predict".into(), 8000, "/predict".into()))
        );
        assert_eq!(
            split_url("http://s3").ok(),
            Some(("s3".into(), 80, "/".into()))
        );
        assert_eq!(
            split_url("http://[::1]:9/x").ok(),
            Some(("[::1]".into(), 9, "/x".into()))
        );
        assert_eq!(
            split_url("http://[::1]/").ok(),
            Some(("[::1]".into(), 80, "/".into()))
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http://:80/").is_err());
    }

    #[test]
    fn matches_status() {
        assert!(status_matches("2xx", 204));
        assert!(!status_matches("2xx", 403));
        assert!(status_matches("403", 403));
        assert!(status_matches("any", 500));
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").ok(),
            Some(b"abcde".to_vec())
        );
        assert!(dechunk(b"5\r\nab").is_err());
    }

    #[test]
    fn parses_args() {
        let a = parse_args(
            ["--post", "{}", "--expect", "any", "http://h/"]
                .into_iter()
                .map(String::from),
        );
        assert!(a.is_ok_and(|a| a.post.as_deref() == Some("{}") && a.expect == "any"));
        assert!(parse_args(std::iter::empty()).is_err());
    }
}
