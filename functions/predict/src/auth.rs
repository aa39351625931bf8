//! API keys: when any are configured, every request but the health and readiness routes
//! (and `/metrics` when it is public) needs one, as `Authorization: Bearer KEY` or
//! `x-api-key: KEY`. Keys are kept only as SHA-256 digests and compared in constant time
//! (a request's digest against every key's, all of them, whatever matches); a key is never
//! logged, and the 401 answer does not say whether a key was close.
//!
//! This module knows nothing of the model: [`ApiKeys`] is built from the configuration
//! and the router applies [`require`] when keys exist.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;

/// Routes that never need a key: liveness and readiness probes.
const OPEN: &[&str] = &["/health", "/ping", "/v2/health/live", "/v2/health/ready"];

/// The accepted keys, as digests.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Arc<[[u8; 32]]>,
    metrics_public: bool,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys, not even their digests.
        f.debug_struct("ApiKeys")
            .field("count", &self.digests.len())
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

/// Why the keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The keys file could not be read.
    #[error("cannot read API_KEYS_FILE {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key is unusable (names where, never the key).
    #[error("{0}")]
    Invalid(String),
}

/// The shortest key accepted: shorter ones are guessable.
pub const MIN_KEY_LEN: usize = 16;

impl ApiKeys {
    /// Keys from `API_KEYS` (comma-separated) and `API_KEYS_FILE` (one a line; blank
    /// lines and `#` comments skipped). `None` when neither gives a key: no auth.
    pub fn load(
        list: Option<&str>,
        file: Option<&Path>,
        metrics_public: bool,
    ) -> Result<Option<Self>, KeysError> {
        let mut keys: Vec<(String, String)> = Vec::new();
        if let Some(list) = list {
            for (i, k) in list.split(',').map(str::trim).enumerate() {
                if !k.is_empty() {
                    keys.push((format!("API_KEYS entry {}", i + 1), k.to_string()));
                }
            }
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| KeysError::File {
                path: path.display().to_string(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let k = line.trim();
                if !k.is_empty() && !k.starts_with('#') {
                    keys.push((format!("{} line {}", path.display(), i + 1), k.to_string()));
                }
            }
        }
        let mut digests = Vec::with_capacity(keys.len());
        for (place, key) in keys {
            if key.len() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(KeysError::Invalid(format!(
                    "{place}: an API key must be at least {MIN_KEY_LEN} characters, with no spaces or control characters"
                )));
            }
            digests.push(Sha256::digest(key.as_bytes()).into());
        }
        Ok((!digests.is_empty()).then(|| Self {
            digests: digests.into(),
            metrics_public,
        }))
    }

    /// True when `presented` is one of the keys. Every key's digest is compared, in
    /// constant time, whichever matches.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        let mut ok = subtle::Choice::from(0);
        for k in self.digests.iter() {
            ok |= k.ct_eq(&d);
        }
        ok.into()
    }

    fn is_open(&self, path: &str) -> bool {
        OPEN.contains(&path) || (self.metrics_public && path == "/metrics")
    }
}

/// The key a request presents: `Authorization: Bearer KEY`, else `x-api-key: KEY`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let b = v.as_bytes();
        let scheme = b"bearer ";
        if b.len() > scheme.len() && b[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(b[scheme.len()..].trim_ascii());
        }
        return None;
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// The middleware: a request to a closed route without an accepted key is answered 401
/// before its body is read.
pub async fn require(State(keys): State<ApiKeys>, req: Request, next: Next) -> Response {
    if keys.is_open(req.uri().path()) {
        return next.run(req).await;
    }
    match presented(req.headers()) {
        Some(k) if keys.accepts(k) => next.run(req).await,
        Some(_) => AppError::Unauthorized("the API key is not valid").into_response(),
        None => AppError::Unauthorized(
            "this server needs an API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_list_and_the_file_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys");
        std::fs::write(&file, "# ops\n\nbbbbbbbbbbbbbbbbbbbb\n").expect("write");
        let keys = ApiKeys::load(Some("aaaaaaaaaaaaaaaaaaaa, "), Some(&file), false)
            .expect("loads")
            .expect("some keys");
        assert!(keys.accepts(b"aaaaaaaaaaaaaaaaaaaa"));
        assert!(keys.accepts(b"bbbbbbbbbbbbbbbbbbbb"));
        assert!(!keys.accepts(b"aaaaaaaaaaaaaaaaaaa"));
        assert!(!keys.accepts(b""));
        assert!(!format!("{keys:?}").contains("aaaa"));
        assert!(
            ApiKeys::load(Some(" , "), None, false)
                .expect("ok")
                .is_none()
        );
        let e = ApiKeys::load(Some("short"), None, false).expect_err("too short");
        assert!(e.to_string().contains("API_KEYS entry 1"), "{e}");
        assert!(
            !e.to_string().contains("short"),
            "the key is not shown: {e}"
        );
    }

    #[test]
    fn the_key_is_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer  k1 ".parse().expect("value"));
        assert_eq!(presented(&h), Some(&b"k1"[..]));
        h.insert(header::AUTHORIZATION, "Basic k1".parse().expect("value"));
        assert_eq!(presented(&h), None);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k2".parse().expect("value"));
        assert_eq!(presented(&h), Some(&b"k2"[..]));
    }
}
