//! Reading request bodies and their headers, shared by every route that takes a body:
//! the content type, the body limit and the body-read timeout, and how a `serde_json`
//! error on a body is classified. Nothing here knows a route.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::error::AppError;
use crate::state::AppState;

/// JSON when the content type says so; a request without one is read as JSON too, as
/// the original (FastAPI) did.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let s = ct.to_str().unwrap_or("");
    let mime = s.split(';').next().unwrap_or("").trim();
    let (kind, sub) = mime.split_once('/').unwrap_or((mime, ""));
    if kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
    {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(s.to_string()))
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return AppError::PayloadTooLarge { limit };
            }
            src = s.source();
        }
        AppError::BodyRead(e.to_string())
    })
}

/// Read the body, giving up after `timeout`. Everything after the body is pure computation,
/// so the body is the only part of a request that can stall. A timer costs a lock on the
/// timer wheel, so it is armed only when the body is not already in: a typical request
/// arrives in one segment and never touches it.
async fn read_body_within(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, AppError> {
    let mut read = std::pin::pin!(read_body(body, limit));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| AppError::Timeout(timeout))?,
    }
}

/// Read a request body under the configured limit and within the configured timeout,
/// refusing early when the declared length is already over the limit, and decode its
/// content coding (the decoded body is under the same limit). Every route that
/// reads a body (`/predict`, `/invocations`, the V2 `infer` routes) reads it through
/// here, so a client that sends its headers and then stalls gets the 408 error (in the
/// route's error shape) instead of holding a connection and a task forever.
pub(crate) async fn read_limited(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, AppError> {
    let limit = state.body_limit();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let coding = content_coding(headers)?;
    let bytes = read_body_within(body, limit, state.timeout()).await?;
    decode(coding, bytes, limit)
}

/// A request body's content coding (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No coding (the header is absent or says `identity`).
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: zlib-wrapped DEFLATE, as HTTP defines it.
    Deflate,
}

/// The content coding of a request: one of identity, gzip or deflate. Anything else,
/// or more than one coding, is a 415 naming it, before the body is read: a coding is
/// never ignored.
pub(crate) fn content_coding(headers: &HeaderMap) -> Result<Coding, AppError> {
    let mut found = Coding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            AppError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into())
        })?;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let coding = match token.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                _ => return Err(AppError::UnsupportedEncoding(token.to_string())),
            };
            if found != Coding::Identity {
                return Err(AppError::UnsupportedEncoding(text.to_string()));
            }
            found = coding;
        }
    }
    Ok(found)
}

/// Decode `bytes` as `coding` says, refusing a decoded body over `limit` bytes as soon
/// as it passes the limit: a small compressed body cannot expand past what an
/// uncompressed one may be (no zip bombs).
pub(crate) fn decode(coding: Coding, bytes: Bytes, limit: usize) -> Result<Bytes, AppError> {
    use std::io::Read;
    let name = match coding {
        Coding::Identity => return Ok(bytes),
        Coding::Gzip => "gzip",
        Coding::Deflate => "deflate",
    };
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
        _ => Box::new(flate2::read::ZlibDecoder::new(&bytes[..])),
    };
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // The decoded size is unknown: grow as it arrives, from at most twice the coded size.
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(2).min(limit));
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| AppError::BodyRead(format!("the {name} body does not decode: {e}")))?;
    if out.len() > limit {
        return Err(AppError::PayloadTooLarge { limit });
    }
    Ok(out.into())
}

/// The media type of a request, lower-cased and without parameters (`None` when absent).
pub(crate) fn media_type(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| {
        AppError::UnsupportedMediaType(String::from_utf8_lossy(v.as_bytes()).into())
    })?;
    Ok(Some(
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    ))
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A `serde_json` error on a request body, classified as `POST /predict` classifies its
/// own: syntax errors are malformed JSON (400); a number too large for an `f64` is a
/// non-finite value (422); the rest is a body of the wrong shape (422).
pub(crate) fn json_error(e: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        return AppError::NonFinite(format!("a number is not finite ({msg})"));
    }
    match e.classify() {
        Category::Data => AppError::InvalidBody(msg),
        Category::Syntax | Category::Eof | Category::Io => AppError::MalformedJson(msg),
    }
}
