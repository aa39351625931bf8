//! The plain HTTP server on `HOST:PORT`: our own accept loop on hyper's HTTP/1
//! connections, serving `app(state)` with the connection-level limits that `axum::serve`
//! does not expose, and graceful shutdown on SIGTERM or Ctrl-C.
//!
//! The limits ([`ServerLimits`], from `Config`):
//! - **Header timeout** (`HEADER_TIMEOUT_MS`): a connection's first request must have
//!   its whole header within this time of the connection's start; every later one
//!   within this time of its first byte. Trickling a byte at a time does not extend it.
//! - **Idle timeout** (`IDLE_TIMEOUT_MS`): a keep-alive connection that starts no new
//!   request for this long is closed; so is one whose client stops reading an answer.
//! - **Connection cap** (`MAX_CONNECTIONS`): one more connection is accepted, answered
//!   `503` with `Retry-After: 1`, `Connection: close` and the JSON error body, and closed,
//!   by a task of its own (at most [`REJECT_TASKS`] at once, each bounded by
//!   [`REJECT_TIME`]; beyond that it is closed without an answer): a slow peer never
//!   blocks the accept loop.
//! - **Header size**: at most [`MAX_HEADER_BYTES`] (hyper answers 431 beyond), and a
//!   read buffer of at most [`MAX_BUF_BYTES`] a connection, so a connection costs a
//!   bounded amount of memory however its client behaves.
//! - **hyper's own answers** to requests it cannot parse (400, 431...) get our JSON
//!   error body like every other error (see [`Watched`]).
//! - **Accept errors** (`EMFILE` and the like) are logged and retried after
//!   [`ACCEPT_BACKOFF`]; they never stop the server. At start-up the soft open-file
//!   limit is raised toward the hard one when `MAX_CONNECTIONS` needs more.
//!
//! Why a watchdog of our own rather than hyper's `header_read_timeout` alone: hyper
//! 1.x starts that timer whenever it waits for a request head, which includes the wait
//! for the next request on a keep-alive connection (`State::idle` re-arms it), so the
//! idle wait and the header would share one bound. Each connection task here tracks the
//! connection's phase (first request, idle, reading a head, serving a request) from its
//! reads and its requests, and drops the connection at the phase's deadline. hyper gets no
//! timer at all: its header timeout would register a timer for every request.
//!
//! Not here: the cap on requests in flight (`crate::limits`, a router layer, so it also
//! applies under Lambda) and the body size and body-read timeout (`crate::body`).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Config;
use crate::error::StartupError;

/// At most this many connections over the cap are being answered 503 at once; beyond
/// it, a connection over the cap is closed without an answer.
pub const REJECT_TASKS: usize = 64;
/// How long answering a connection over the cap may take (writing the 503, then reading
/// what the client sent, so that closing does not reset the connection before the
/// client has read the answer).
pub const REJECT_TIME: Duration = Duration::from_secs(1);
/// The most bytes of a request read (and thrown away) from a connection over the cap.
const REJECT_DRAIN: usize = 64 * 1024;
/// The pause after an accept error that is not about one connection (e.g. `EMFILE`).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The largest request header (request line and fields); hyper answers 431 beyond.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest read buffer of one connection (hyper's default is about 400 KiB).
pub const MAX_BUF_BYTES: usize = 64 * 1024;
/// The largest accepted timeout setting: one day. Longer is surely a mistake, and it
/// keeps every deadline far from `Instant`'s range.
const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// The largest accepted `MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 1 << 20;
/// Open files the process needs besides its connections: the listener, stdio, the
/// connections being refused, the model store's and S3's.
const OTHER_FILES: u64 = REJECT_TASKS as u64 + 64;

/// The connection-level limits of the plain server; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `HEADER_TIMEOUT_MS`.
    pub header_timeout: Duration,
    /// `IDLE_TIMEOUT_MS`.
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl ServerLimits {
    /// The limits `config` sets, checked: 0 is refused, as are absurdly large values;
    /// each message names its variable.
    pub fn from_config(config: &Config) -> Result<Self, StartupError> {
        let timeout = |name: &str, ms: u64| {
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                Err(StartupError::Config(format!(
                    "{name} must be between 1 and {MAX_TIMEOUT_MS} (milliseconds), not {ms}"
                )))
            } else {
                Ok(Duration::from_millis(ms))
            }
        };
        let header_timeout = timeout("HEADER_TIMEOUT_MS", config.header_timeout_ms)?;
        let idle_timeout = timeout("IDLE_TIMEOUT_MS", config.idle_timeout_ms)?;
        let max_connections = config.max_connections;
        if max_connections == 0 || max_connections > MAX_CONNECTIONS {
            return Err(StartupError::Config(format!(
                "MAX_CONNECTIONS must be between 1 and {MAX_CONNECTIONS}, not {max_connections}"
            )));
        }
        Ok(Self {
            header_timeout,
            idle_timeout,
            max_connections,
        })
    }
}

/// Serve `router` (the app) on `listener` within `limits` until SIGTERM or Ctrl-C;
/// requests in flight complete before this returns (each connection still within its
/// timeouts).
pub(crate) async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
) -> io::Result<()> {
    let max = limits.max_connections;
    raise_open_file_limit(
        u64::try_from(max)
            .unwrap_or(u64::MAX)
            .saturating_add(OTHER_FILES),
    );
    let mut http = http1::Builder::new();
    // No hyper timer: its header timeout would arm a timer for every request (the
    // watchdog below bounds heads and idle connections instead).
    http.max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUF_BYTES);
    let refusal = Bytes::from(refusal(max));
    let slots = Arc::new(Semaphore::new(max));
    let refusing = Arc::new(Semaphore::new(REJECT_TASKS));
    let (stop, stopped) = watch::channel(());
    let mut refused = Refused::default();

    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, backoff_ms = ACCEPT_BACKOFF.as_millis(), "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
            let conn = serve_connection(
                stream,
                router.clone(),
                http.clone(),
                limits,
                stopped.clone(),
                slot,
            );
            tokio::spawn(conn);
        } else {
            refused.note(max);
            if let Ok(task) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(refuse(stream, refusal.clone(), task));
            }
        }
    }
    // Stop accepting, close idle connections, let the others finish their request.
    drop(listener);
    drop(stop);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _every_connection_closed = slots.acquire_many(all).await;
    Ok(())
}

/// Counts refused connections and logs them at most once a second.
#[derive(Default)]
struct Refused {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refused {
    fn note(&mut self, max: usize) {
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                max_connections = max,
                refused = self.since_log,
                "at MAX_CONNECTIONS: refusing connections with 503"
            );
            self.since_log = 0;
            self.last_log = Some(now);
        }
    }
}

/// Errors of `accept` that concern one connection only (it went away before it was
/// accepted): retry at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The whole answer to a connection over the cap.
fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": {
            "code": "overloaded",
            "message": format!(
                "the server has too many open connections (MAX_CONNECTIONS {max}); retry shortly"
            ),
        }
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answer a connection over the cap and close it, within [`REJECT_TIME`].
async fn refuse(mut stream: TcpStream, answer: Bytes, _task: OwnedSemaphorePermit) {
    let answered = tokio::time::timeout(REJECT_TIME, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Read what the client sends until it closes: closing with unread bytes would
        // reset the connection, and the reset can destroy the answer before it is read.
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REJECT_DRAIN {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = answered {
        tracing::debug!(error = %e, "refusing a connection");
    }
}

/// Serve one accepted connection until the client or hyper closes it, a phase's
/// deadline passes (the connection is dropped: closed), or the server stops (hyper
/// finishes the request in progress, if any, then closes; the deadlines still apply).
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    http: http1::Builder,
    limits: ServerLimits,
    mut stopped: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
    let per_request = Arc::clone(&activity);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let request = per_request.begin();
        let router = router.clone();
        async move {
            let res = router.oneshot(req).await?;
            // The request ends when hyper is done with its answer's body.
            Ok::<_, Infallible>(res.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &request;
                    frame
                }))
            }))
        }
    });
    let mut conn = std::pin::pin!(http.serve_connection(io, service));
    let mut stopping = false;
    loop {
        // The watchdog is never woken by the connection's own reads and requests (that
        // would cost a wake-up of this task per request): it wakes at the phase's deadline
        // or one header timeout from now, whichever comes first, and looks at the phase
        // then. A head that starts while the connection is idle or busy is so still cut
        // off exactly at its own deadline: the next wake is at most one header timeout
        // away and re-arms at that deadline.
        let now = Instant::now();
        let check = now + limits.header_timeout;
        let wake = activity.deadline(&limits).map_or(check, |d| d.min(check));
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection closed on an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("connection closed: header or idle timeout");
                    return;
                }
            }
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first request's header, since the connection started.
    First { since: Instant },
    /// Between requests, since the last one ended: no byte of a next one yet.
    Idle { since: Instant },
    /// Reading a later request's header, since its first byte.
    Head { since: Instant },
    /// Serving requests (hyper has their header); the request timeout and the
    /// in-flight cap bound them, not the connection.
    Busy { requests: usize },
}

/// A connection's phase, updated by its reads ([`Watched`]) and its requests; read by
/// its watchdog when it wakes.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::First {
                since: Instant::now(),
            }),
        }
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = f(*phase);
    }

    /// Bytes arrived: between requests, they start the next request's header.
    fn on_read(&self) {
        self.set(|p| match p {
            Phase::Idle { .. } => Phase::Head {
                since: Instant::now(),
            },
            p => p,
        });
    }

    /// hyper has a request's header: the connection is busy until the guard drops.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.set(|p| match p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests.saturating_add(1),
            },
            _ => Phase::Busy { requests: 1 },
        });
        RequestGuard(Arc::clone(self))
    }

    fn end(&self) {
        self.set(|p| match p {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            Phase::Busy { .. } => Phase::Idle {
                since: Instant::now(),
            },
            p => p,
        });
    }

    /// Whether hyper is reading a request head (no answer of ours is due).
    fn reading_head(&self) -> bool {
        let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(phase, Phase::First { .. } | Phase::Head { .. })
    }

    /// When the connection must be closed if its phase has not changed by then.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Phase::First { since } | Phase::Head { since } => {
                since.checked_add(limits.header_timeout)
            }
            Phase::Idle { since } => since.checked_add(limits.idle_timeout),
            Phase::Busy { .. } => None,
        }
    }
}

/// Marks a request in progress on its connection; dropped with the answer's body (or
/// with the request, if the connection goes away first).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The connection's stream, telling its [`Activity`] when bytes arrive, and giving
/// hyper's own error answers our JSON body.
///
/// hyper answers a request it cannot parse (a bad request line, a header over
/// [`MAX_HEADER_BYTES`], an unsupported version) itself, before our router sees it, with
/// an empty body. Such an answer is recognised exactly: it is written while a request
/// head is being read (no answer of ours is due), it is a 4xx or 5xx head with
/// `content-length: 0` (every error of ours has a JSON body). It is replaced, whole, by
/// the same status with our JSON error body and `connection: close` (hyper closes the
/// connection after it anyway).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Our answer in place of hyper's, and how much of it is written.
    replacing: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            replacing: None,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none()
            && let Some(ours) = json_error_answer(buf)
            && this.activity.reading_head()
        {
            this.replacing = Some((ours, 0));
        }
        let Some((ours, written)) = &mut this.replacing else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < ours.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &ours[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        this.replacing = None;
        // hyper's answer counts as written, whole.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.replacing.is_some() || first.is_some_and(|b| json_error_answer(b).is_some()) {
            // An error answer of hyper's is a head alone; it goes through `poll_write`.
            return self.poll_write(cx, first.map_or(&[][..], |b| &b[..]));
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Our answer in place of `head` when `head` is a whole HTTP/1.1 error head with an
/// empty body, as hyper writes for requests it cannot parse; `None` for anything else.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    if !matches!(rest.first(), Some(b'4' | b'5')) || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let empty = text.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !empty {
        return None;
    }
    let status = axum::http::StatusCode::from_bytes(rest.get(..3)?).ok()?;
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = match status.as_u16() {
        400 => "the request is not valid HTTP/1.1".to_string(),
        431 => format!("the request header is larger than the limit of {MAX_HEADER_BYTES} bytes"),
        _ => reason.to_string(),
    };
    let code: String = reason
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    Some(
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            body.len()
        )
        .into_bytes(),
    )
}

/// Raise the soft open-file limit to `needed` (at most the hard limit) when it is
/// lower, and say so; warn when the hard limit itself is lower.
#[cfg(unix)]
fn raise_open_file_limit(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let Some(soft) = current.filter(|&soft| soft < needed) else {
        return;
    };
    let target = maximum.map_or(needed, |hard| hard.min(needed));
    if target > soft {
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum,
            },
        ) {
            Ok(()) => tracing::info!(from = soft, to = target, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|n| n < needed) {
        tracing::warn!(
            open_file_limit = now,
            needed,
            "the open-file limit is below what MAX_CONNECTIONS needs: connections beyond it \
             wait in the backlog; raise the hard limit (ulimit -Hn, the container's nofile \
             ulimit, systemd's LimitNOFILE) or lower MAX_CONNECTIONS"
        );
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit(_needed: u64) {}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let which = tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    };
    tracing::info!(
        signal = which,
        "shutting down; finishing requests in flight"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        use clap::Parser;
        let mut args = vec!["predict".to_string()];
        for (k, v) in vars {
            args.push(format!("--{k}={v}"));
        }
        Config::try_parse_from(args).expect("config")
    }

    #[test]
    fn zero_or_absurd_limits_are_refused_naming_the_variable() {
        let ok = ServerLimits::from_config(&config(&[])).expect("defaults");
        assert_eq!(ok.header_timeout, Duration::from_secs(5));
        assert_eq!(ok.idle_timeout, Duration::from_secs(30));
        assert_eq!(ok.max_connections, 4096);
        for (flag, var) in [
            ("header-timeout-ms", "HEADER_TIMEOUT_MS"),
            ("idle-timeout-ms", "IDLE_TIMEOUT_MS"),
            ("max-connections", "MAX_CONNECTIONS"),
        ] {
            for bad in ["0", "100000000000"] {
                let e = ServerLimits::from_config(&config(&[(flag, bad)]))
                    .expect_err("refused")
                    .to_string();
                assert!(e.contains(var) && e.contains(bad), "{flag}={bad}: {e}");
            }
        }
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_our_json_body() {
        let raw = String::from_utf8(refusal(7)).expect("text");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["error"]["code"], "overloaded");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("MAX_CONNECTIONS 7"))
        );
    }

    #[test]
    fn only_hypers_own_empty_error_heads_are_replaced_by_our_json() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
            content-length: 0\r\ndate: Tue, 01 Dec 2026 01:07:02 GMT\r\n\r\n";
        let ours =
            String::from_utf8(json_error_answer(hyper_431).expect("replaced")).expect("text");
        let (head, body) = ours.split_once("\r\n\r\n").expect("head");
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["error"]["code"], "request_header_fields_too_large");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("16384"))
        );
        let bad = json_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .expect("replaced");
        assert!(String::from_utf8_lossy(&bad).contains(r#""code":"bad_request""#));
        // Not an empty error head: left alone.
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"error\":{}}",
            b"",
        ] {
            assert!(
                json_error_answer(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    /// `now` is between `before` and `after`, shifted by `by`.
    fn within(d: Option<Instant>, before: Instant, after: Instant, by: Duration) -> bool {
        d.is_some_and(|d| d >= before + by && d <= after + by)
    }

    #[test]
    fn phases_give_the_deadlines_of_the_module_documentation() {
        let limits = ServerLimits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1,
        };
        let tick = || std::thread::sleep(Duration::from_millis(2));
        let before = Instant::now();
        let a = Arc::new(Activity::new());
        let after = Instant::now();
        // First request: from the connection's start, bytes or not.
        let first = a.deadline(&limits);
        assert!(within(first, before, after, limits.header_timeout));
        tick();
        a.on_read();
        assert_eq!(a.deadline(&limits), first);
        // Serving: no connection deadline.
        let req = a.begin();
        assert_eq!(a.deadline(&limits), None);
        let before = Instant::now();
        drop(req);
        let after = Instant::now();
        assert!(within(
            a.deadline(&limits),
            before,
            after,
            limits.idle_timeout
        ));
        // Bytes while idle start the next head's clock; later bytes do not extend it.
        tick();
        let before = Instant::now();
        a.on_read();
        let after = Instant::now();
        let head = a.deadline(&limits);
        assert!(within(head, before, after, limits.header_timeout));
        tick();
        a.on_read();
        assert_eq!(a.deadline(&limits), head);
        // Overlapping requests: busy until the last ends.
        let one = a.begin();
        let two = a.begin();
        drop(one);
        assert_eq!(a.deadline(&limits), None);
        drop(two);
        assert!(a.deadline(&limits).is_some());
    }
}
