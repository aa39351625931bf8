//! Opens artifact stores and reads data files at a [`Location`]: a local path or `s3://`.
//!
//! The layout rules (version first, `latest` last) live in `model::store`; this crate only
//! picks and implements the backend. The API is synchronous on purpose: the trainer is rayon
//! code and the predict function loads its model before it starts its own runtime. The S3
//! backend ([`S3Store`]) drives aws-sdk-s3 on a small internal tokio runtime and is safe to
//! call from any thread, including from inside another tokio runtime.
//!
//! With the `test-server` feature, [`testing`] starts a real S3-compatible server (s3s-fs)
//! for tests in this and other crates.

#![warn(missing_docs)]

mod runtime;
mod s3;
mod stream;
#[cfg(feature = "test-server")]
pub mod testing;

pub use s3::{S3Options, S3Store};
pub use stream::{
    DEFAULT_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, ObjectInfo, READ_STALL_TIMEOUT, ReadCondition,
    S3Reader, S3Writer,
};

use model::StoreError;
use model::store::{LocalStore, Location, ObjectStore};

/// Open the store rooted at `root`. For `s3://`, region, credentials and endpoint come from
/// the AWS default chain (environment, profile, instance role; `AWS_ENDPOINT_URL_S3` /
/// `AWS_ENDPOINT_URL`). No request is made here; the S3 client is built once, now.
pub fn open_store(root: &Location) -> Result<Box<dyn ObjectStore>, StoreError> {
    open_store_with(root, &S3Options::default())
}

/// Like [`open_store`], with explicit S3 settings that take precedence over the default
/// chain (ignored for a local path).
pub fn open_store_with(
    root: &Location,
    options: &S3Options,
) -> Result<Box<dyn ObjectStore>, StoreError> {
    match root {
        Location::Local(p) => Ok(Box::new(LocalStore::new(p.clone()))),
        Location::S3 { bucket, key } => Ok(Box::new(S3Store::connect(bucket, key, options)?)),
    }
}

/// Read a whole file (e.g. training data) at `loc`. From S3, the object's checksum is
/// verified when it has one.
pub fn read_location(loc: &Location) -> Result<Vec<u8>, StoreError> {
    read_location_with(loc, &S3Options::default())
}

/// Like [`read_location`], with explicit S3 settings (see [`open_store_with`]).
pub fn read_location_with(loc: &Location, options: &S3Options) -> Result<Vec<u8>, StoreError> {
    match loc {
        Location::Local(p) => std::fs::read(p).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(p.display().to_string())
            } else {
                StoreError::Io {
                    op: "read",
                    path: p.display().to_string(),
                    source,
                }
            }
        }),
        Location::S3 { bucket, key } => {
            if key.is_empty() {
                return Err(StoreError::InvalidUri {
                    uri: loc.to_string(),
                    reason: "expected s3://bucket/key, not a bare bucket".into(),
                });
            }
            S3Store::connect(bucket, "", options)?.get(key)
        }
    }
}
