//! Hostile clients against the real binary on loopback (issue 16): stalled and idle
//! connections, the connection cap, load shedding, and a burst of mixed valid and
//! invalid requests; the process must stay alive, answer no 5xx but deliberate 503s, and
//! keep its peak memory within [`PEAK_RSS_BOUND_KIB`].
//!
//! Every wait here is bounded; each test takes a few seconds. Timeouts in the server are
//! set short through its environment (`HEADER_TIMEOUT_MS` and the rest).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::running::{Running, command};

/// The bound on the server's peak resident memory (`VmHWM`) over the mixed load of
/// [`mixed_valid_and_invalid_load_gets_no_5xx_and_bounded_memory`]: 8 clients at once,
/// each sending bodies of up to 1 MiB (2 MiB for the over-limit ones). Measured with the
/// debug binary on 2 cores: 11-12 MiB at rest, 31-36 MiB peak; before issue 16's fixes a
/// single 1 MiB request could add about 300 MB.
const PEAK_RSS_BOUND_KIB: u64 = 64 * 1024;

fn start(env: &[(&str, &str)]) -> (Running, tempfile::TempDir) {
    let (_, _, a) = support::digits_model();
    let (dir, uri) = support::store_with(&a);
    let mut c = command();
    c.env("MODEL_URI", uri).envs(env.iter().copied());
    (Running::start(c), dir)
}

/// An answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Read one `Content-Length` answer (every answer of this server has one).
fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = raw[end + 4..end + 4 + len].to_vec();
                return Ok(Answer { status, head, body });
            }
        }
        match s.read(&mut buf)? {
            0 => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("closed after {} bytes", raw.len()),
                ));
            }
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `POST /predict` of `body` (JSON) on a fresh connection that closes after it.
fn post_predict(addr: &str, body: &[u8]) -> Answer {
    let mut s = connect(addr);
    exchange(
        &mut s,
        "POST",
        "/predict",
        &[("Content-Type", "application/json")],
        body,
        true,
    )
    .unwrap()
}

/// Send one request on `s` (keep-alive unless `close`) and read its answer.
fn exchange(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> std::io::Result<Answer> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    // A server may answer (413, 415...) and close before it has read a large body: the
    // write then fails, and the answer is still worth reading.
    let written = s.write_all(&req);
    match read_answer(s) {
        Ok(a) => Ok(a),
        Err(e) => written.and(Err(e)),
    }
}

/// How a stalled connection ended, waiting at most until `deadline`.
fn wait_closed(s: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("unexpected read error: {e}"),
            // Whatever the server answers (it should not) is not a close yet.
            Ok(_) => {}
        }
    }
}

/// Raise this test process's own open-file limit: it holds a thousand sockets.
fn raise_open_file_limit(to: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_some_and(|c| c < to) {
        let target = maximum.map_or(to, |m| m.min(to));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum,
            },
        );
    }
}

/// A field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn valid_image() -> Vec<u8> {
    let (d, _, _) = support::digits_model();
    json!({ "image": d.rows[0] }).to_string().into_bytes()
}

#[test]
fn a_thousand_stalled_connections_do_not_starve_a_client_and_are_closed_by_the_header_timeout() {
    const STALLED: usize = 1000;
    // Long enough that opening them all and serving the client fits well inside it on a
    // busy 2-core machine (opening takes about 1 s there, and over 4 s while the same
    // cores build release images).
    let header_timeout = Duration::from_millis(10_000);
    raise_open_file_limit(4 * STALLED as u64);
    let (server, _dir) = start(&[("HEADER_TIMEOUT_MS", "10000"), ("IDLE_TIMEOUT_MS", "30000")]);
    let image = valid_image();

    // Half send nothing, half the start of a header; all of them then hold.
    let t0 = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            if i % 2 == 1 {
                s.write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
                    .unwrap();
            }
            s
        })
        .collect();
    let all_open = Instant::now();

    // A normal client is served at once, several times, while they hold.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        let a = post_predict(&server.addr, &image);
        assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
        slowest = slowest.max(asked.elapsed());
    }
    let served = Instant::now();
    assert!(
        slowest < Duration::from_secs(1),
        "a normal client waited {slowest:?} behind {STALLED} stalled connections"
    );
    // No stalled connection can have been closed before its own header timeout, so they
    // were all held while the client was served.
    assert!(
        served < t0 + header_timeout,
        "too slow to tell: the client was served {:?} after the first stalled connection",
        served - t0
    );

    // Then the server closes every one of them, at its header timeout.
    let deadline = all_open + header_timeout + Duration::from_secs(3);
    let mut first_close: Option<Instant> = None;
    let mut last_close = t0;
    for (i, s) in stalled.iter_mut().enumerate() {
        let closed = wait_closed(s, deadline).unwrap_or_else(|| {
            panic!(
                "stalled connection {i} still open {:?} after t0",
                t0.elapsed()
            )
        });
        first_close = Some(first_close.map_or(closed, |f| f.min(closed)));
        last_close = last_close.max(closed);
    }
    let first = first_close.unwrap() - t0;
    let last = last_close - t0;
    eprintln!(
        "stalled: {STALLED} opened in {:?}; client served in at most {slowest:?}; \
         closed by the server between {first:?} and {last:?} after the first",
        all_open - t0
    );
    assert!(
        first >= header_timeout - Duration::from_millis(50),
        "closed early: {first:?}"
    );
}

#[test]
fn a_header_trickled_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let (server, _dir) = start(&[("HEADER_TIMEOUT_MS", "500")]);
    let mut s = connect(&server.addr);
    let started = Instant::now();
    let line = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = None;
    for b in line.iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            closed = Some(started.elapsed());
            break;
        }
        if let Some(t) = wait_closed(&mut s, Instant::now() + Duration::from_millis(50)) {
            closed = Some(t - started);
            break;
        }
    }
    let closed = closed.expect("a trickled header was never cut off");
    assert!(
        closed >= Duration::from_millis(450) && closed < Duration::from_millis(2000),
        "cut off after {closed:?}"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout_not_the_header_one() {
    let (server, _dir) = start(&[("HEADER_TIMEOUT_MS", "300"), ("IDLE_TIMEOUT_MS", "1200")]);
    let mut s = connect(&server.addr);
    assert_eq!(
        exchange(&mut s, "GET", "/health", &[], b"", false)
            .unwrap()
            .status,
        200
    );
    // Idle for longer than the header timeout, shorter than the idle one: still served.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        exchange(&mut s, "GET", "/health", &[], b"", false)
            .unwrap()
            .status,
        200
    );
    // Then idle: closed at the idle timeout.
    let idle_from = Instant::now();
    let closed = wait_closed(&mut s, idle_from + Duration::from_secs(5))
        .expect("an idle keep-alive connection was not closed")
        - idle_from;
    assert!(
        closed >= Duration::from_millis(1100) && closed < Duration::from_millis(2500),
        "idle connection closed after {closed:?}"
    );

    // After a request, the next one's header gets the header timeout from its first byte.
    let mut s = connect(&server.addr);
    assert_eq!(
        exchange(&mut s, "GET", "/health", &[], b"", false)
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    let partial_from = Instant::now();
    let closed = wait_closed(&mut s, partial_from + Duration::from_secs(5))
        .expect("a half-sent header after a request was never cut off")
        - partial_from;
    assert!(
        closed >= Duration::from_millis(250) && closed < Duration::from_millis(1100),
        "half-sent header closed after {closed:?}"
    );
    eprintln!("idle: keep-alive closed after idle timeout; half header after {closed:?}");
}

#[test]
fn requests_the_http_layer_cannot_parse_get_our_json_error_body() {
    let (server, _dir) = start(&[]);
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let cases: [(&[u8], u16, &str); 3] = [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "bad_request",
        ),
        (big.as_bytes(), 431, "request_header_fields_too_large"),
    ];
    for (raw, status, code) in cases {
        let mut s = connect(&server.addr);
        let _ = s.write_all(raw);
        let a = read_answer(&mut s).unwrap();
        assert_eq!(a.status, status, "{a:?}");
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(a.json()["error"]["code"], code, "{a:?}");
    }
    // The connection after them is served as usual.
    let mut s = connect(&server.addr);
    assert_eq!(
        exchange(&mut s, "GET", "/health", &[], b"", true)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_connection_over_the_cap_gets_503_json_with_retry_after_and_is_closed() {
    let (server, _dir) = start(&[
        ("MAX_CONNECTIONS", "8"),
        ("HEADER_TIMEOUT_MS", "20000"),
        ("IDLE_TIMEOUT_MS", "20000"),
    ]);
    // Eight keep-alive connections, each proven accepted by an answer.
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect(&server.addr);
            assert_eq!(
                exchange(&mut s, "GET", "/health", &[], b"", false)
                    .unwrap()
                    .status,
                200
            );
            s
        })
        .collect();

    let mut extra = connect(&server.addr);
    let asked = Instant::now();
    let a = exchange(&mut extra, "GET", "/health", &[], b"", false).unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(a.header("retry-after").as_deref(), Some("1"), "{a:?}");
    assert_eq!(a.header("connection").as_deref(), Some("close"), "{a:?}");
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/json")
    );
    let v = a.json();
    assert_eq!(v["error"]["code"], "overloaded", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_CONNECTIONS 8"),
        "{v}"
    );
    assert!(wait_closed(&mut extra, Instant::now() + Duration::from_secs(3)).is_some());

    // The held ones are still served; once one leaves, a new connection is served.
    assert_eq!(
        exchange(&mut held[0], "GET", "/health", &[], b"", false)
            .unwrap()
            .status,
        200
    );
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect(&server.addr);
        let a = exchange(&mut s, "GET", "/health", &[], b"", true).unwrap();
        if a.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was never reused: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn requests_over_max_in_flight_are_shed_with_503_json_and_retry_after() {
    let (server, _dir) = start(&[("MAX_IN_FLIGHT", "2"), ("REQUEST_TIMEOUT_MS", "10000")]);
    let image = valid_image();
    let (first, rest) = image.split_at(10);
    // Two requests hold both slots: their bodies stall after 10 bytes.
    let mut holding: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(&server.addr);
            write!(
                s,
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                image.len()
            )
            .unwrap();
            s.write_all(first).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let asked = Instant::now();
    let a = post_predict(&server.addr, &image);
    assert_eq!(a.status, 503, "{a:?}");
    assert!(asked.elapsed() < Duration::from_secs(1), "shedding waited");
    assert_eq!(a.header("retry-after").as_deref(), Some("1"), "{a:?}");
    let v = a.json();
    assert_eq!(v["error"]["code"], "overloaded", "{v}");
    // Probes are never shed.
    let mut s = connect(&server.addr);
    assert_eq!(
        exchange(&mut s, "GET", "/health", &[], b"", true)
            .unwrap()
            .status,
        200
    );

    // The held requests complete normally, and free their slots.
    for s in &mut holding {
        s.write_all(rest).unwrap();
        let a = read_answer(s).unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = post_predict(&server.addr, &image);
    assert_eq!(a.status, 200, "{a:?}");
}

/// One request of the mixed load.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn case(name: &'static str, path: &str, content_type: &str, body: Vec<u8>) -> Case {
    Case {
        name,
        method: "POST",
        path: path.to_string(),
        headers: vec![("Content-Type", content_type.to_string())],
        body,
    }
}

/// A JSON array of `n` copies of `item`, inside `prefix` and `suffix`, about `size` bytes.
fn repeated(prefix: &str, item: &str, suffix: &str, size: usize) -> Vec<u8> {
    let n = (size - prefix.len() - suffix.len()) / (item.len() + 1);
    let mut out = String::with_capacity(size);
    out.push_str(prefix);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str(suffix);
    out.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// gzip of `prefix`, then `item` `n` times, then `suffix`, made without holding the whole.
fn gzip_bomb(prefix: &str, item: &str, n: usize, suffix: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(prefix.as_bytes()).unwrap();
    let chunk = item.repeat(4096);
    for _ in 0..n / 4096 {
        e.write_all(chunk.as_bytes()).unwrap();
    }
    e.write_all(suffix.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// The mixed load: valid requests of every protocol, and the hostile classes of issue 16.
fn mixed_cases() -> Vec<Case> {
    const MIB: usize = 1 << 20;
    let (d, _, _) = support::digits_model();
    let json = "application/json";
    let row: Vec<f64> = d.rows[1].clone();
    let batch: Vec<&Vec<f64>> = d.rows.iter().take(200).collect();
    let mut cases = vec![
        case("valid image", "/predict", json, valid_image()),
        case(
            "valid batch",
            "/predict",
            json,
            json!({ "instances": batch }).to_string().into_bytes(),
        ),
        case(
            "valid invocations",
            "/invocations",
            json,
            json!({ "instances": [row] }).to_string().into_bytes(),
        ),
        case(
            "valid v2",
            "/v2/models/digits/infer",
            json,
            json!({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": row}]})
                .to_string()
                .into_bytes(),
        ),
        case("1 MiB of empty rows", "/predict", json, repeated("{\"instances\":[", "[]", "]}", MIB)),
        case("1 MiB of one-zero rows", "/predict", json, repeated("{\"instances\":[", "[0]", "]}", MIB)),
        case(
            "1 MiB of empty rows, invocations",
            "/invocations",
            json,
            repeated("{\"instances\":[", "[]", "]}", MIB),
        ),
        case(
            "1 MiB of one-zero rows, invocations",
            "/invocations",
            json,
            repeated("{\"instances\":[", "[0]", "]}", MIB),
        ),
        case(
            "1 MiB split dataframe of empty rows",
            "/invocations",
            json,
            repeated("{\"dataframe_split\":{\"columns\":[\"pixel_0\"],\"data\":[", "[]", "]}}", MIB),
        ),
        case(
            "1 MiB CSV of one column",
            "/invocations",
            "text/csv",
            "pixel_0\n".bytes().chain("0\n".repeat(MIB / 2 - 8).bytes()).collect(),
        ),
        case(
            "1 MiB CSV of empty lines and commas",
            "/invocations",
            "text/csv",
            ",\n".repeat(MIB / 2).into_bytes(),
        ),
        case(
            "1 MiB of empty V2 data",
            "/v2/models/digits/infer",
            json,
            repeated(
                "{\"inputs\":[{\"name\":\"input-0\",\"shape\":[100000,64],\"datatype\":\"FP64\",\"data\":[",
                "[]",
                "]}]}",
                MIB,
            ),
        ),
        case(
            "V2 huge declared shape",
            "/v2/models/digits/infer",
            json,
            br#"{"inputs":[{"name":"input-0","shape":[1000000000000,64],"datatype":"FP32","data":[0]}]}"#
                .to_vec(),
        ),
        case(
            "V2 overflowing shape",
            "/v2/models/digits/infer",
            json,
            br#"{"inputs":[{"name":"input-0","shape":[4294967296,4294967296,4294967296],"datatype":"FP64","data":[]}]}"#
                .to_vec(),
        ),
        case(
            "V2 zero-width shape",
            "/v2/models/digits/infer",
            json,
            br#"{"inputs":[{"name":"input-0","shape":[18446744073709551615,0],"datatype":"FP64","data":[]}]}"#
                .to_vec(),
        ),
        case("garbage", "/predict", json, (0..MIB).map(|i| (i * 7919 % 251) as u8).collect()),
        case("deep nesting", "/predict", json, "[".repeat(MIB).into_bytes()),
        case("huge exponent", "/predict", json, b"{\"image\":[1e99999999999]}".to_vec()),
        case(
            "long string",
            "/predict",
            json,
            format!("{{\"image\":\"{}\"}}", "x".repeat(MIB - 20)).into_bytes(),
        ),
        case("over the body limit", "/predict", json, vec![b' '; 2 * MIB]),
    ];
    let mut columns = serde_json::Map::new();
    for name in &d.feature_names {
        columns.insert(name.clone(), Value::Array(vec![Value::from(0); 8000]));
    }
    cases.push(case(
        "1 MiB of columns, invocations inputs",
        "/invocations",
        json,
        json!({ "inputs": columns }).to_string().into_bytes(),
    ));
    let mut gz = case("gzip valid", "/predict", json, gzip(&valid_image()));
    gz.headers.push(("Content-Encoding", "gzip".into()));
    cases.push(gz);
    let mut bomb = case(
        "gzip bomb",
        "/predict",
        json,
        gzip_bomb("{\"instances\":[", "[0],", 16 * MIB, "[0]]}"),
    );
    bomb.headers.push(("Content-Encoding", "gzip".into()));
    cases.push(bomb);
    let mut bomb = case(
        "gzip bomb, invocations",
        "/invocations",
        json,
        gzip_bomb("", " ", 64 * MIB, "{}"),
    );
    bomb.headers.push(("Content-Encoding", "gzip".into()));
    cases.push(bomb);
    cases.push(case(
        "gzip without its header",
        "/predict",
        json,
        gzip(&valid_image()),
    ));
    let mut br = case("brotli claimed", "/predict", json, valid_image());
    br.headers.push(("Content-Encoding", "br".into()));
    cases.push(br);
    cases.push(Case {
        name: "not found",
        method: "GET",
        path: "/nothing/here".into(),
        headers: vec![],
        body: vec![],
    });
    cases
}

#[test]
fn mixed_valid_and_invalid_load_gets_no_5xx_and_bounded_memory() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 2;
    let budget = Duration::from_secs(12);
    let (mut server, _dir) = start(&[]);
    let pid = server.child.id();
    let baseline = proc_status_kib(pid, "VmRSS").unwrap();
    let cases = Arc::new(mixed_cases());

    // Watch the process while the load runs.
    let done = Arc::new(AtomicBool::new(false));
    let peak_seen = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, peak_seen) = (done.clone(), peak_seen.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let Some(rss) = proc_status_kib(pid, "VmRSS") else {
                    return false;
                };
                peak_seen.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        })
    };

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (cases, addr) = (cases.clone(), server.addr.clone());
            std::thread::spawn(move || {
                let mut seen: Vec<(String, u16, String, Duration)> = Vec::new();
                let mut reset = 0usize;
                for round in 0..ROUNDS {
                    for i in 0..cases.len() {
                        if started.elapsed() > budget {
                            return (seen, reset);
                        }
                        // Each client starts at another case, so the heavy ones overlap.
                        let k = &cases[(i + c * 3 + round) % cases.len()];
                        let mut s = connect(&addr);
                        let headers: Vec<(&str, &str)> =
                            k.headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
                        let asked = Instant::now();
                        match exchange(&mut s, k.method, &k.path, &headers, &k.body, true) {
                            Ok(a) => {
                                let code = a.json()["error"]["code"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string();
                                seen.push((k.name.to_string(), a.status, code, asked.elapsed()));
                            }
                            // Answered and closed before the whole body was sent.
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                                ) =>
                            {
                                reset += 1;
                            }
                            Err(e) => panic!("{}: {e}", k.name),
                        }
                    }
                }
                (seen, reset)
            })
        })
        .collect();
    let mut answers = Vec::new();
    let mut resets = 0;
    for c in clients {
        let (seen, reset) = c.join().unwrap();
        answers.extend(seen);
        resets += reset;
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap(), "the server died during the load");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );

    let bad: Vec<_> = answers
        .iter()
        .filter(|(_, status, code, _)| *status >= 500 && !(*status == 503 && code == "overloaded"))
        .collect();
    assert!(bad.is_empty(), "5xx answers: {bad:?}");
    for name in [
        "valid image",
        "valid batch",
        "valid invocations",
        "valid v2",
        "gzip valid",
    ] {
        assert!(
            answers.iter().any(|(n, s, _, _)| n == name && *s == 200),
            "{name} was never answered 200: {:?}",
            answers
                .iter()
                .filter(|(n, _, _, _)| n == name)
                .collect::<Vec<_>>()
        );
    }
    let mut slowest: Vec<(&str, Duration, u16)> = Vec::new();
    for (name, status, _, took) in &answers {
        match slowest.iter_mut().find(|(n, _, _)| n == name) {
            Some(e) if e.1 < *took => *e = (name, *took, *status),
            Some(_) => {}
            None => slowest.push((name, *took, *status)),
        }
    }
    slowest.sort_by_key(|e| std::cmp::Reverse(e.1));
    eprintln!("slowest answer of each case: {slowest:?}");
    let hwm = proc_status_kib(pid, "VmHWM").unwrap();
    let after = proc_status_kib(pid, "VmRSS").unwrap();
    eprintln!(
        "mixed load: {} answers ({} resets) from {CLIENTS} clients in {took:?}; RSS baseline \
         {baseline} KiB, peak (VmHWM) {hwm} KiB, sampled peak {} KiB, after {after} KiB",
        answers.len(),
        resets,
        peak_seen.load(Ordering::Relaxed)
    );
    assert!(
        hwm <= PEAK_RSS_BOUND_KIB,
        "peak RSS {hwm} KiB is over the bound of {PEAK_RSS_BOUND_KIB} KiB"
    );
    // Still answering normally afterwards.
    let a = post_predict(&server.addr, &valid_image());
    assert_eq!(a.status, 200);
}
