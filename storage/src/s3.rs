//! The S3 backend of [`ObjectStore`]: aws-sdk-s3 with aws-config's default chain.
//!
//! - One client per store, built in [`S3Store::connect`]; no request is made there.
//! - Path-style addressing whenever an endpoint is configured (S3-compatible servers).
//! - Every upload carries `x-amz-checksum-sha256`; every download asks for the stored
//!   checksum (checksum mode) and is refused with [`StoreError::Checksum`] on a mismatch.
//! - `put_new` is one conditional PUT (`If-None-Match: *`): the server refuses to replace an
//!   existing object, so a publish costs exactly one round trip per object.
//! - Bounded retries and timeouts: an unreachable or hanging server fails a call within 8 s.
//! - `get_if_changed` is one GET with `If-None-Match: <etag>`: AWS answers `304` with no
//!   body when nothing changed. A server that ignores the condition (s3s-fs 0.14.1 does)
//!   answers `200` with the same ETag, which counts as unchanged too: still one request,
//!   and only the small object polled is transferred, never a model.
//! - `list` is ListObjectsV2, page after page; `delete` is one DeleteObject.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use aws_smithy_http_client::tls;
use model::StoreError;
use model::artifact::hex;
use model::store::{ObjectStore, Tagged, content_tag};
use sha2::{Digest, Sha256};

use crate::runtime::block_on;

/// Attempts per call (the first try included).
const MAX_ATTEMPTS: u32 = 3;
/// Time allowed to open a TCP (+TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for one attempt, until the response headers arrive.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one call, retries included: the bound on a cold start against a dead
/// or hanging server.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);
/// Region used with a custom endpoint when none is configured (S3-compatible servers
/// accept any region; the signature only has to agree with itself).
const FALLBACK_REGION: &str = "us-east-1";

/// S3 settings that take precedence over aws-config's default chain. Every field left at
/// `None` is resolved by the chain (environment, shared profile, container / instance role).
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; otherwise `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL` or the AWS endpoint for the region.
    pub endpoint: Option<String>,
    /// Region; otherwise `AWS_REGION` and the rest of the chain.
    pub region: Option<String>,
    /// Static credentials `(access key id, secret access key)`; otherwise the chain.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<secret>")),
            )
            .finish()
    }
}

/// Keys per ListObjectsV2 page unless [`S3Store::with_list_page_size`] says otherwise
/// (S3's own maximum).
const LIST_PAGE_SIZE: i32 = 1000;

/// An [`ObjectStore`] under an S3 prefix: key `k` lives at `s3://bucket/prefix/k`.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    /// The configured endpoint, for messages (`None`: AWS itself).
    endpoint: Option<String>,
    /// Keys asked for per ListObjectsV2 page.
    list_page_size: i32,
}

/// Why an S3 call failed, phrased for the person reading the message.
#[derive(Debug, thiserror::Error)]
enum S3Failure {
    #[error("{location}: bucket {bucket:?} does not exist{}", at(.endpoint))]
    NoSuchBucket {
        location: String,
        bucket: String,
        endpoint: Option<String>,
    },
    #[error(
        "{location}: the S3 server{} refused the credentials ({code}: {message}); check \
         AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile / role in use)",
        at(.endpoint)
    )]
    BadCredentials {
        location: String,
        code: String,
        message: String,
        endpoint: Option<String>,
    },
    #[error("{location}: access denied ({code}: {message}); the credentials lack permission")]
    AccessDenied {
        location: String,
        code: String,
        message: String,
    },
    #[error("{location}: no usable AWS credentials: {detail}")]
    NoCredentials { location: String, detail: String },
    #[error(
        "{location}: cannot reach the S3 server{} after {MAX_ATTEMPTS} attempts: {detail}",
        at(.endpoint)
    )]
    Unreachable {
        location: String,
        endpoint: Option<String>,
        detail: String,
    },
    #[error(
        "{location}: the S3 server{} did not answer within {}s ({MAX_ATTEMPTS} attempts)",
        at(.endpoint),
        OPERATION_TIMEOUT.as_secs()
    )]
    TimedOut {
        location: String,
        endpoint: Option<String>,
    },
    #[error("{location}: {op} failed: {detail}")]
    Other {
        location: String,
        op: &'static str,
        detail: String,
    },
}

fn at(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map(|e| format!(" at {e}"))
        .unwrap_or_default()
}

impl From<S3Failure> for StoreError {
    fn from(f: S3Failure) -> Self {
        StoreError::Backend(f.to_string())
    }
}

/// The HTTPS client: rustls on ring (see the root Cargo.toml); plain HTTP works too.
pub(crate) fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl S3Store {
    /// Build the client for `s3://bucket/prefix` (prefix may be empty). Makes no request.
    pub fn connect(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self, StoreError> {
        // The endpoint as the SDK will see it; when there is one, use path-style addressing.
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
        // With a custom endpoint and no region in sight, do not let the chain go looking
        // for one on the instance metadata service: any region will do.
        let region = options.region.clone().or_else(|| {
            let from_env =
                env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION"));
            match (&endpoint, from_env) {
                (_, Some(r)) => Some(r),
                (Some(_), None) => Some(FALLBACK_REGION.to_string()),
                (None, None) => None,
            }
        });
        let opts = options.clone();
        let sdk = block_on(async move {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http_client())
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(MAX_ATTEMPTS)
                        .with_initial_backoff(Duration::from_millis(100))
                        .with_max_backoff(Duration::from_secs(1)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                        .operation_timeout(OPERATION_TIMEOUT)
                        .build(),
                );
            if let Some(e) = opts.endpoint {
                loader = loader.endpoint_url(e);
            }
            if let Some(r) = region {
                loader = loader.region(Region::new(r));
            }
            if let Some((id, secret)) = opts.credentials {
                loader = loader.credentials_provider(Credentials::new(
                    id,
                    secret,
                    None,
                    None,
                    "storage::S3Options",
                ));
            }
            loader.load().await
        })?;
        let endpoint = endpoint.or_else(|| sdk.endpoint_url().map(str::to_string));
        if sdk.region().is_none() {
            return Err(StoreError::Backend(format!(
                "s3://{bucket}: no AWS region configured; set AWS_REGION"
            )));
        }
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(endpoint.is_some())
            .build();
        Ok(Self {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
            list_page_size: LIST_PAGE_SIZE,
        })
    }

    /// Ask for at most `keys` (1 to 1000) keys per ListObjectsV2 page, e.g. to exercise
    /// pagination in tests or to suit a server with a lower limit.
    #[must_use]
    pub fn with_list_page_size(mut self, keys: u16) -> Self {
        self.list_page_size = i32::from(keys.clamp(1, 1000));
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full object key of store key `key` (the prefix, then the key).
    pub fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Turn an SDK error into a message that names the object and says what is wrong.
    pub(crate) fn failure<E>(&self, op: &'static str, key: &str, err: &SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = self.describe(key);
        let endpoint = self.endpoint.clone();
        match err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or("").to_string();
                let message = ctx.err().message().unwrap_or("").to_string();
                match code.as_str() {
                    "NoSuchKey" => StoreError::NotFound(location),
                    "NoSuchBucket" => S3Failure::NoSuchBucket {
                        location,
                        bucket: self.bucket.clone(),
                        endpoint,
                    }
                    .into(),
                    // `NotSignedUp` is what s3s answers for an unknown access key.
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "NotSignedUp"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired" => S3Failure::BadCredentials {
                        location,
                        code,
                        message,
                        endpoint,
                    }
                    .into(),
                    // A conditional create lost: someone else holds the key. (409 is real
                    // S3's answer to two concurrent conditional writes of the same key.)
                    "PreconditionFailed" | "ConditionalRequestConflict" => {
                        StoreError::AlreadyExists(location)
                    }
                    _ if status == 412 => StoreError::AlreadyExists(location),
                    _ if status == 404 => StoreError::NotFound(location),
                    _ if status == 403 || code == "AccessDenied" => S3Failure::AccessDenied {
                        location,
                        code: if code.is_empty() { "403".into() } else { code },
                        message,
                    }
                    .into(),
                    _ => S3Failure::Other {
                        location,
                        op,
                        detail: format!("HTTP {status} {code}: {message}"),
                    }
                    .into(),
                }
            }
            SdkError::TimeoutError(_) => S3Failure::TimedOut { location, endpoint }.into(),
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                S3Failure::TimedOut { location, endpoint }.into()
            }
            SdkError::DispatchFailure(d) if d.is_io() => S3Failure::Unreachable {
                location,
                endpoint,
                detail: causes(err),
            }
            .into(),
            _ => {
                let detail = causes(err);
                if detail.contains("credentials") || detail.contains("identity") {
                    S3Failure::NoCredentials { location, detail }.into()
                } else {
                    S3Failure::Other {
                        location,
                        op,
                        detail,
                    }
                    .into()
                }
            }
        }
    }

    /// After a 404 on an object: is it the object or the whole bucket that is missing?
    /// (Some servers say `NoSuchKey` for both; this costs a request only on a miss.)
    fn refine_not_found(&self, key: &str) -> StoreError {
        let bucket = self.bucket.clone();
        let client = self.client.clone();
        let head = block_on(async move { client.head_bucket().bucket(bucket).send().await });
        match head {
            Ok(Err(SdkError::ServiceError(ctx))) if ctx.raw().status().as_u16() == 404 => {
                S3Failure::NoSuchBucket {
                    location: self.describe(key),
                    bucket: self.bucket.clone(),
                    endpoint: self.endpoint.clone(),
                }
                .into()
            }
            _ => StoreError::NotFound(self.describe(key)),
        }
    }

    fn put_object(&self, key: &str, bytes: &[u8], create_only: bool) -> Result<(), StoreError> {
        let object_key = self.object_key(key);
        let digest = Sha256::digest(bytes);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .content_type(if key.ends_with(".json") || key.ends_with("latest") {
                "application/json"
            } else {
                "application/octet-stream"
            })
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(aws_smithy_types::base64::encode(digest))
            .body(ByteStream::from(bytes.to_vec()));
        if create_only {
            req = req.if_none_match("*");
        }
        match block_on(req.send())? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failure(if create_only { "create" } else { "put" }, key, &e)),
        }
    }
}

/// An error and its sources as one line, `a: b: c`, without repeats (the SDK's wrappers
/// often repeat their source's text).
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Hex of a base64 checksum header, or the header itself if it is not base64.
fn b64_to_hex(b64: &str) -> String {
    aws_smithy_types::base64::decode(b64)
        .map(|raw| hex(&raw))
        .unwrap_or_else(|_| b64.to_string())
}

/// The SDK's own checksum-mismatch error, if that is what stopped the body.
fn checksum_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<(String, String)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(aws_smithy_checksums::body::validate::Error::ChecksumMismatch {
            expected,
            actual,
        }) = e.downcast_ref()
        {
            return Some((hex(expected), hex(actual)));
        }
        cur = e.source();
    }
    None
}

/// An object's bytes and its ETag (when the server sent one).
type Fetched = (Vec<u8>, Option<String>);

impl S3Store {
    /// GET an object with its checksum verified; with `if_none_match`, `Ok(None)` when the
    /// server answers `304 Not Modified`. Returns the bytes and the ETag.
    fn get_object(
        &self,
        key: &str,
        if_none_match: Option<&str>,
    ) -> Result<Option<Fetched>, StoreError> {
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .checksum_mode(ChecksumMode::Enabled);
        if let Some(tag) = if_none_match {
            req = req.if_none_match(tag);
        }
        let req = req.send();
        let got = block_on(async move {
            match req.await {
                Ok(out) => {
                    let sha = out.checksum_sha256().map(str::to_string);
                    let etag = out.e_tag().map(str::to_string);
                    Ok((sha, etag, out.body.collect().await))
                }
                Err(e) => Err(e),
            }
        })?;
        let (sha, etag, body) = match got {
            Ok(v) => v,
            Err(SdkError::ServiceError(ctx))
                if if_none_match.is_some() && ctx.raw().status().as_u16() == 304 =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(match self.failure("get", key, &e) {
                    StoreError::NotFound(_) => self.refine_not_found(key),
                    other => other,
                });
            }
        };
        let bytes = match body {
            Ok(b) => b.into_bytes().to_vec(),
            Err(e) => {
                if let Some((expected, actual)) = checksum_mismatch(&e) {
                    return Err(StoreError::Checksum {
                        key: self.describe(key),
                        expected,
                        actual,
                    });
                }
                return Err(S3Failure::Other {
                    location: self.describe(key),
                    op: "download",
                    detail: causes(&e),
                }
                .into());
            }
        };
        // The SDK validates too; checking here keeps the guarantee whatever it decides.
        if let Some(expected) = sha {
            // Composite (multipart) checksums look like `<b64>-<parts>`: not a plain digest.
            if !expected.contains('-') {
                let expected = b64_to_hex(&expected);
                let actual = hex(&Sha256::digest(&bytes));
                if expected != actual {
                    return Err(StoreError::Checksum {
                        key: self.describe(key),
                        expected,
                        actual,
                    });
                }
            }
        }
        Ok(Some((bytes, etag)))
    }

    /// One ListObjectsV2 page under `object_prefix`: its full keys and the next token.
    fn list_page(
        &self,
        object_prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(object_prefix)
            .max_keys(self.list_page_size)
            .set_continuation_token(token)
            .send();
        match block_on(req)? {
            Ok(out) => {
                let keys = out
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .collect();
                let next = if out.is_truncated() == Some(true) {
                    out.next_continuation_token().map(str::to_string)
                } else {
                    None
                };
                Ok((keys, next))
            }
            Err(e) => {
                let missing_bucket = matches!(
                    &e,
                    SdkError::ServiceError(ctx) if ctx.err().code() == Some("NoSuchBucket")
                );
                if missing_bucket {
                    Err(StoreError::NotAStore {
                        location: self.describe(""),
                        reason: format!(
                            "bucket {:?} does not exist{}",
                            self.bucket,
                            at(&self.endpoint)
                        ),
                    })
                } else {
                    Err(self.failure("list", object_prefix, &e))
                }
            }
        }
    }
}

impl ObjectStore for S3Store {
    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.object_key(key))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self.get_object(key, None)? {
            Some((bytes, _)) => Ok(bytes),
            // Unconditional: a 304 cannot happen; say so rather than return nothing.
            None => Err(S3Failure::Other {
                location: self.describe(key),
                op: "get",
                detail: "the server answered 304 Not Modified to an unconditional GET".into(),
            }
            .into()),
        }
    }

    fn get_if_changed(
        &self,
        key: &str,
        previous: Option<&str>,
    ) -> Result<Option<Tagged>, StoreError> {
        let Some((bytes, etag)) = self.get_object(key, previous)? else {
            return Ok(None);
        };
        // A server that ignores If-None-Match sends the object again: same ETag, unchanged.
        let tag = etag.unwrap_or_else(|| content_tag(&bytes));
        if previous == Some(tag.as_str()) {
            return Ok(None);
        }
        Ok(Some(Tagged { bytes, tag }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            return Err(StoreError::InvalidUri {
                uri: prefix.to_string(),
                reason: "a list prefix is empty or ends in '/'".into(),
            });
        }
        // The store's own prefix is a directory: `models` must not match `models-old/...`.
        let object_prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.list_page(&object_prefix, token)?;
            keys.extend(
                page.into_iter()
                    .filter_map(|k| k.strip_prefix(&strip).map(str::to_string)),
            );
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send();
        match block_on(req)? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failure("delete", key, &e)),
        }
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_object(key, bytes, true)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_object(key, bytes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3Store {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            credentials: Some(("K".into(), "S".into())),
        };
        S3Store::connect("bkt", prefix, &opts).expect("store")
    }

    #[test]
    fn keys_and_descriptions() {
        let s = store("models/x/");
        assert_eq!(s.object_key("digits/latest"), "models/x/digits/latest");
        assert_eq!(s.describe("a"), "s3://bkt/models/x/a");
        assert_eq!(store("").describe("a"), "s3://bkt/a");
    }

    #[test]
    fn options_hide_the_secret() {
        let o = S3Options {
            credentials: Some(("id".into(), "hunter2".into())),
            ..S3Options::default()
        };
        let shown = format!("{o:?}");
        assert!(
            shown.contains("id") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn base64_checksums_become_hex() {
        let b64 = aws_smithy_types::base64::encode(Sha256::digest(b"abc"));
        assert_eq!(b64_to_hex(&b64), model::artifact::sha256_hex(b"abc"));
    }
}
