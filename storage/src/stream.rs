//! Streaming reads and multipart writes of one S3 object, for files too large to hold in
//! memory (batch scoring). Not for artifacts: those stay small and go through
//! [`ObjectStore`](model::store::ObjectStore) whole.
//!
//! - [`S3Store::open_read`] is one GetObject whose body is pulled chunk by chunk through
//!   [`std::io::Read`]: memory stays at one network chunk whatever the object's size. It can
//!   pin a version (`versionId`) or an ETag (`If-Match`), so a redelivered event reads the
//!   bytes it was about; the SDK checks the stored checksum as the body streams and a
//!   mismatch is a read error at the end. A body that stalls for [`READ_STALL_TIMEOUT`]
//!   is an error, never a hang.
//! - [`S3Store::create_writer`] is a [`std::io::Write`] whose full parts are uploaded by a
//!   thread of its own while the next part fills (at most three parts in memory: filling,
//!   queued, in flight). Nothing is visible under the key until [`S3Writer::finish`]: a small object
//!   is one PutObject, a larger one a multipart upload (parts of [`S3Writer::part_size`]
//!   bytes, the last one shorter) completed only there. [`S3Writer::abort`], or dropping
//!   the writer unfinished, aborts the upload, so no reader ever sees half an object.
//!   Every part and every single PUT carries its SHA-256.

use std::io;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use model::StoreError;
use model::store::ObjectStore;
use sha2::{Digest, Sha256};

use crate::runtime::block_on;
use crate::s3::{S3Store, causes};

/// Smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Part size unless [`S3Store::create_writer`] is given another.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: i32 = 10_000;
/// A streaming body that sends nothing for this long fails the read.
pub const READ_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for one part's upload attempt (the storage default of 3 s is for small
/// objects; a part is megabytes).
const PART_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
const PART_OPERATION_TIMEOUT: Duration = Duration::from_secs(400);

/// What the server said about an object being read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its ETag, quotes included, when the server sent one.
    pub etag: Option<String>,
    /// Its version id, on a versioned bucket.
    pub version_id: Option<String>,
    /// Its length in bytes, when the server sent one.
    pub size: Option<u64>,
}

/// Which bytes of an object to read: a version, or the object only while its ETag is this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCondition {
    /// Read this version (`versionId`).
    pub version_id: Option<String>,
    /// Read only if the object's ETag is this (`If-Match`).
    pub if_match: Option<String>,
}

/// An object's body as a [`std::io::Read`]; see the module documentation.
pub struct S3Reader {
    body: ByteStream,
    chunk: bytes::Bytes,
    pos: usize,
    location: String,
    info: ObjectInfo,
}

impl std::fmt::Debug for S3Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Reader")
            .field("location", &self.location)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl S3Reader {
    /// The object's ETag, version and size.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// `s3://bucket/key`.
    pub fn location(&self) -> &str {
        &self.location
    }
}

impl io::Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let body = &mut self.body;
            let next =
                block_on(
                    async move { tokio::time::timeout(READ_STALL_TIMEOUT, body.next()).await },
                )
                .map_err(io::Error::other)?;
            match next {
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: the S3 body sent nothing for {} s",
                            self.location,
                            READ_STALL_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Ok(None) => return Ok(0),
                Ok(Some(Ok(chunk))) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Some(Err(e))) => {
                    return Err(io::Error::other(format!(
                        "{}: download failed: {}",
                        self.location,
                        causes(&e)
                    )));
                }
            }
        }
    }
}

impl S3Store {
    /// The same client on another bucket and prefix (no new connection pool, no request).
    #[must_use]
    pub fn with_bucket(&self, bucket: &str, prefix: &str) -> Self {
        let mut s = self.clone();
        s.bucket = bucket.to_string();
        s.prefix = prefix.trim_matches('/').to_string();
        s
    }

    /// Start reading store key `key` as a stream. `Ok(None)` when `condition.if_match` no
    /// longer matches (the object was replaced since). A missing object (or version) is
    /// [`StoreError::NotFound`].
    pub fn open_read(
        &self,
        key: &str,
        condition: &ReadCondition,
    ) -> Result<Option<S3Reader>, StoreError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .checksum_mode(ChecksumMode::Enabled)
            .set_version_id(condition.version_id.clone())
            .set_if_match(condition.if_match.clone())
            .send();
        match block_on(req)? {
            Ok(out) => {
                let info = ObjectInfo {
                    etag: out.e_tag().map(str::to_string),
                    version_id: out.version_id().map(str::to_string),
                    size: out.content_length().and_then(|n| u64::try_from(n).ok()),
                };
                Ok(Some(S3Reader {
                    body: out.body,
                    chunk: bytes::Bytes::new(),
                    pos: 0,
                    location: self.describe(key),
                    info,
                }))
            }
            Err(SdkError::ServiceError(ctx))
                if condition.if_match.is_some() && ctx.raw().status().as_u16() == 412 =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failure("get", key, &e)),
        }
    }

    /// A writer for store key `key`; nothing is sent until a part fills. `part_size` is
    /// raised to [`MIN_PART_SIZE`] when smaller.
    pub fn create_writer(&self, key: &str, part_size: usize) -> S3Writer {
        S3Writer {
            store: self.clone(),
            key: key.to_string(),
            part_size: part_size.max(MIN_PART_SIZE),
            buf: Vec::new(),
            upload_id: None,
            parts_sent: 0,
            uploader: None,
            written: 0,
            done: false,
        }
    }
}

/// A multipart upload in progress; see the module documentation.
pub struct S3Writer {
    store: S3Store,
    key: String,
    part_size: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    /// Parts handed to the uploader so far.
    parts_sent: usize,
    /// The thread that uploads full parts while the next one fills.
    uploader: Option<Uploader>,
    written: u64,
    done: bool,
}

/// A thread uploading parts in order; the channel holds one part, so at most three parts
/// exist at once (filling, queued, in flight).
struct Uploader {
    tx: Option<std::sync::mpsc::SyncSender<(i32, Vec<u8>)>>,
    handle: Option<std::thread::JoinHandle<Result<Vec<CompletedPart>, StoreError>>>,
}

/// Upload one part with its SHA-256; the completed part.
fn upload_part(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    number: i32,
    body: Vec<u8>,
) -> Result<CompletedPart, StoreError> {
    let sha = aws_smithy_types::base64::encode(Sha256::digest(&body));
    let req = store
        .client
        .upload_part()
        .bucket(&store.bucket)
        .key(store.object_key(key))
        .upload_id(upload_id)
        .part_number(number)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(&sha)
        .body(ByteStream::from(body))
        .customize()
        .config_override(part_timeouts())
        .send();
    let out = block_on(req)?.map_err(|e| store.failure("upload part", key, &e))?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .checksum_sha256(sha)
        .build())
}

impl std::fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Writer")
            .field("key", &self.key)
            .field("part_size", &self.part_size)
            .field("parts", &self.parts_sent)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn to_io(e: StoreError) -> io::Error {
    io::Error::other(e)
}

fn part_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new().timeout_config(
        TimeoutConfig::builder()
            .operation_attempt_timeout(PART_ATTEMPT_TIMEOUT)
            .operation_timeout(PART_OPERATION_TIMEOUT)
            .build(),
    )
}

impl S3Writer {
    /// The part size in use.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// `s3://bucket/key`.
    pub fn location(&self) -> String {
        self.store.describe(&self.key)
    }

    fn begin(&mut self) -> Result<String, StoreError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let req = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.object_key(&self.key))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send();
        let out = block_on(req)?.map_err(|e| self.store.failure("create upload", &self.key, &e))?;
        let id = out.upload_id().map(str::to_string).ok_or_else(|| {
            StoreError::Backend(format!(
                "{}: CreateMultipartUpload answered no upload id",
                self.location()
            ))
        })?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Hand the buffer to the uploader as the next part (starting the upload and the
    /// uploader on the first part). An upload that failed earlier is reported here.
    fn flush_part(&mut self) -> Result<(), StoreError> {
        let number = i32::try_from(self.parts_sent + 1).unwrap_or(i32::MAX);
        if number > MAX_PARTS {
            return Err(StoreError::Backend(format!(
                "{}: more than {MAX_PARTS} parts of {} bytes: the object is too large for \
                 this part size",
                self.location(),
                self.part_size
            )));
        }
        let upload_id = self.begin()?;
        if self.uploader.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(i32, Vec<u8>)>(1);
            let (store, key) = (self.store.clone(), self.key.clone());
            let handle = std::thread::Builder::new()
                .name("storage-s3-parts".into())
                .spawn(move || {
                    let mut parts = Vec::new();
                    for (n, body) in rx {
                        parts.push(upload_part(&store, &key, &upload_id, n, body)?);
                    }
                    Ok(parts)
                })
                .map_err(|e| {
                    StoreError::Backend(format!("cannot start the part upload thread: {e}"))
                })?;
            self.uploader = Some(Uploader {
                tx: Some(tx),
                handle: Some(handle),
            });
        }
        let body = std::mem::take(&mut self.buf);
        let sent = self
            .uploader
            .as_ref()
            .and_then(|u| u.tx.as_ref())
            .is_some_and(|tx| tx.send((number, body)).is_ok());
        if sent {
            self.parts_sent += 1;
            return Ok(());
        }
        // The uploader stopped: it failed on an earlier part; say why.
        Err(match self.join_uploader() {
            Err(e) => e,
            Ok(_) => StoreError::Backend(format!(
                "{}: the part upload thread stopped",
                self.location()
            )),
        })
    }

    /// Wait for every handed part to be uploaded; the completed parts, in order.
    fn join_uploader(&mut self) -> Result<Vec<CompletedPart>, StoreError> {
        let Some(mut u) = self.uploader.take() else {
            return Ok(Vec::new());
        };
        drop(u.tx.take());
        match u.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Backend(format!(
                "{}: the part upload thread panicked",
                self.location()
            ))),
            None => Ok(Vec::new()),
        }
    }

    /// Publish the object: everything written appears at once, or nothing (the upload is
    /// aborted on failure).
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let result = self.complete();
        if result.is_err() {
            self.abort_quietly();
        }
        self.done = true;
        result
    }

    fn complete(&mut self) -> Result<u64, StoreError> {
        if self.upload_id.is_none() {
            // Small: one PUT (with its checksum), no upload to manage.
            let body = std::mem::take(&mut self.buf);
            self.store.put(&self.key, &body)?;
            return Ok(self.written);
        }
        if !self.buf.is_empty() {
            self.flush_part()?;
        }
        let parts = self.join_uploader()?;
        if parts.len() != self.parts_sent {
            return Err(StoreError::Backend(format!(
                "{}: {} parts handed over, {} uploaded",
                self.location(),
                self.parts_sent,
                parts.len()
            )));
        }
        let upload_id = self.begin()?;
        let req = self
            .store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.object_key(&self.key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            .config_override(part_timeouts())
            .send();
        block_on(req)?.map_err(|e| self.store.failure("complete upload", &self.key, &e))?;
        self.upload_id = None;
        Ok(self.written)
    }

    /// Give up: abort the upload (nothing is published) and drop what is buffered.
    pub fn abort(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.buf = Vec::new();
        self.abort_upload()
    }

    /// Stop the uploader (after the part in flight), then abort the multipart upload, if
    /// one was started.
    fn abort_upload(&mut self) -> Result<(), StoreError> {
        let _ = self.join_uploader();
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        let req = self
            .store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.object_key(&self.key))
            .upload_id(upload_id)
            .send();
        match block_on(req)? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.store.failure("abort upload", &self.key, &e)),
        }
    }

    fn abort_quietly(&mut self) {
        let _ = self.abort_upload();
    }
}

impl io::Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.done {
            return Err(io::Error::other(format!(
                "{}: write after finish or abort",
                self.location()
            )));
        }
        let room = self.part_size - self.buf.len();
        let n = data.len().min(room);
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_size);
        }
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= self.part_size {
            self.flush_part().map_err(to_io)?;
            self.buf.reserve_exact(self.part_size);
        }
        Ok(n)
    }

    /// Parts are sent as they fill; there is nothing more to flush before [`S3Writer::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.done {
            self.abort_quietly();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Options;

    #[test]
    fn part_size_is_at_least_the_s3_minimum() {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            credentials: Some(("K".into(), "S".into())),
        };
        let store = S3Store::connect("bkt", "", &opts).expect("store");
        assert_eq!(store.create_writer("k", 1).part_size(), MIN_PART_SIZE);
        assert_eq!(
            store.create_writer("k", 6 << 20).part_size(),
            6 << 20,
            "a larger part size is kept"
        );
        let other = store.with_bucket("other", "p/");
        assert_eq!(other.describe("k"), "s3://other/p/k");
    }
}
