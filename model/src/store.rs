//! Where artifacts live, the same on disk and in S3:
//!
//! ```text
//! <root>/<name>/<version>/model.json   written once, never overwritten
//! <root>/<name>/latest                 small JSON pointer, written last
//! ```
//!
//! Backends implement the small [`ObjectStore`] trait (three byte-level calls); the layout
//! rules ([`publish`], [`load`]) are written once, here, on top of it. This module holds the
//! local-directory backend; the S3 backend lives in the `store-s3` crate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, check_name, is_version, new_version, sha256_hex};
use crate::classifier::Model;
use crate::error::StoreError;

/// File name of an artifact inside its version directory.
pub const MODEL_FILE: &str = "model.json";
/// File name of the pointer to the newest version.
pub const LATEST_FILE: &str = "latest";

/// A byte-level object store rooted somewhere (a directory, an S3 prefix).
/// Keys are `/`-separated paths relative to the root.
pub trait ObjectStore: Send + Sync {
    /// A human-readable location of `key`, for messages (`/path/x`, `s3://b/p/x`).
    fn describe(&self, key: &str) -> String;
    /// Read a whole object; [`StoreError::NotFound`] when absent.
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Write a new object whole; [`StoreError::AlreadyExists`] if the key is taken.
    /// Readers never see a partial object.
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Write or replace an object whole; readers see the old or the new bytes, never a mix.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
}

/// Where a store, a model or a data file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local path.
    Local(PathBuf),
    /// An S3 bucket and key (or key prefix; may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key or prefix, without leading or trailing `/`.
        key: String,
    },
}

impl Location {
    /// Parse `s3://bucket/key...` or a local path.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUri {
            uri: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name after s3://"));
            }
            let key = key.trim_matches('/');
            if key.split('/').any(|seg| seg == "..") {
                return Err(invalid("'..' is not allowed in an S3 key"));
            }
            Ok(Self::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
        } else if s.contains("://") {
            Err(invalid("only local paths and s3:// URIs are supported"))
        } else if s.is_empty() {
            Err(invalid("empty location"))
        } else {
            Ok(Self::Local(PathBuf::from(s)))
        }
    }

    /// The parent location and the last segment (`s3://b/a/c` -> `s3://b/a`, `c`).
    pub fn split_last(&self) -> Option<(Location, String)> {
        match self {
            Self::Local(p) => {
                let name = p.file_name()?.to_str()?.to_string();
                let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
                let parent = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent
                };
                Some((Self::Local(parent), name))
            }
            Self::S3 { bucket, key } => {
                if key.is_empty() {
                    return None;
                }
                let (parent, name) = key.rsplit_once('/').unwrap_or(("", key));
                Some((
                    Self::S3 {
                        bucket: bucket.clone(),
                        key: parent.to_string(),
                    },
                    name.to_string(),
                ))
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, key } if key.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// What `MODEL_URI` names: a store root, a model name and, optionally, one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUri {
    /// The store root.
    pub root: Location,
    /// The model name.
    pub name: String,
    /// A version, or `None` to follow `latest`.
    pub version: Option<String>,
}

impl ModelUri {
    /// Parse `<root>/<name>` or `<root>/<name>/<version>` (local path or `s3://`).
    /// A trailing `/model.json` is accepted for a version.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUri {
            uri: s.to_string(),
            reason,
        };
        let trimmed = s.trim_end_matches('/');
        let trimmed = trimmed
            .strip_suffix(&format!("/{MODEL_FILE}"))
            .unwrap_or(trimmed);
        let loc = Location::parse(trimmed)?;
        let (parent, last) = loc
            .split_last()
            .ok_or_else(|| invalid("expected <store>/<name>[/<version>]".into()))?;
        let (root, name, version) = if is_version(&last) {
            let (root, name) = parent
                .split_last()
                .ok_or_else(|| invalid("a version needs a model name before it".into()))?;
            (root, name, Some(last))
        } else {
            (parent, last, None)
        };
        check_name(&name).map_err(|r| invalid(format!("model name {r}")))?;
        Ok(Self {
            root,
            name,
            version,
        })
    }
}

impl std::fmt::Display for ModelUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let root = self.root.to_string();
        let sep = if root.ends_with('/') { "" } else { "/" };
        write!(f, "{root}{sep}{}", self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The `latest` pointer's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// Model name.
    pub name: String,
    /// The version it points at.
    pub version: String,
    /// That version's model id.
    pub model_id: String,
    /// SHA-256 of the version's `model.json` bytes.
    pub sha256: String,
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Model name.
    pub name: String,
    /// The new version.
    pub version: String,
    /// The model id.
    pub model_id: String,
    /// Where the version's `model.json` now lives.
    pub location: String,
}

/// Key of a version's artifact.
pub fn model_key(name: &str, version: &str) -> String {
    format!("{name}/{version}/{MODEL_FILE}")
}

/// Key of a model's `latest` pointer.
pub fn latest_key(name: &str) -> String {
    format!("{name}/{LATEST_FILE}")
}

/// Publish an artifact: write a new version whole, then move `latest` to it.
/// A crash in between leaves `latest` on the previous complete version.
pub fn publish(store: &dyn ObjectStore, artifact: &Artifact) -> Result<Published, StoreError> {
    artifact.validate().map_err(|source| StoreError::Model {
        location: format!("artifact {}", artifact.name),
        source,
    })?;
    let bytes = artifact.to_json();
    let name = &artifact.name;
    let mut version = new_version(&artifact.model_id);
    let mut key = model_key(name, &version);
    // Two publishers in the same millisecond with the same model: take the next slot.
    let mut attempt = 0;
    loop {
        match store.put_new(&key, &bytes) {
            Ok(()) => break,
            Err(StoreError::AlreadyExists(_)) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
                version = new_version(&artifact.model_id);
                key = model_key(name, &version);
            }
            Err(e) => return Err(e),
        }
    }
    let latest = Latest {
        name: name.clone(),
        version: version.clone(),
        model_id: artifact.model_id.clone(),
        sha256: sha256_hex(&bytes),
    };
    let pointer = serde_json::to_vec(&latest).unwrap_or_default();
    store.put(&latest_key(name), &pointer)?;
    Ok(Published {
        name: name.clone(),
        version,
        model_id: artifact.model_id.clone(),
        location: store.describe(&key),
    })
}

/// Read a model's `latest` pointer.
pub fn read_latest(store: &dyn ObjectStore, name: &str) -> Result<Latest, StoreError> {
    let key = latest_key(name);
    let bytes = store.get(&key)?;
    let latest: Latest = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::Backend(format!(
            "{}: not a valid latest pointer: {e}",
            store.describe(&key)
        ))
    })?;
    if latest.name != name || !is_version(&latest.version) {
        return Err(StoreError::Backend(format!(
            "{}: pointer names {}/{}, which is not a version of this model",
            store.describe(&key),
            latest.name,
            latest.version
        )));
    }
    Ok(latest)
}

/// Load and validate a model: the given version, or the one `latest` names (whose
/// recorded checksum must then match). Returns the model and its version.
pub fn load(
    store: &dyn ObjectStore,
    name: &str,
    version: Option<&str>,
) -> Result<(Model, String), StoreError> {
    let (version, expected_sha) = match version {
        Some(v) => (v.to_string(), None),
        None => {
            let l = read_latest(store, name)?;
            (l.version, Some(l.sha256))
        }
    };
    let key = model_key(name, &version);
    let bytes = store.get(&key).map_err(|e| match e {
        StoreError::NotFound(_) if expected_sha.is_some() => StoreError::NotFound(format!(
            "{} (named by {})",
            store.describe(&key),
            store.describe(&latest_key(name))
        )),
        other => other,
    })?;
    if let Some(expected) = expected_sha {
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(StoreError::Checksum {
                key: store.describe(&key),
                expected,
                actual,
            });
        }
    }
    let model = Model::from_json(&bytes).map_err(|source| StoreError::Model {
        location: store.describe(&key),
        source,
    })?;
    if model.artifact().name != name {
        return Err(StoreError::Backend(format!(
            "{}: artifact is named {:?}, expected {name:?}",
            store.describe(&key),
            model.artifact().name
        )));
    }
    Ok((model, version))
}

/// A store in a local directory. Writes go to a temporary file in the target directory,
/// are synced, then renamed (replace) or hard-linked (create-only) into place.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let mut p = self.root.clone();
        for seg in key.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(StoreError::InvalidUri {
                    uri: key.to_string(),
                    reason: "bad key segment".into(),
                });
            }
            p.push(seg);
        }
        Ok(p)
    }

    /// Write `bytes` to a synced temporary file beside `dest`.
    fn stage(dest: &Path, bytes: &[u8]) -> Result<tempfile_like::Staged, StoreError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| io("create directory", dir, source))?;
        tempfile_like::Staged::write(dir, bytes)
    }
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

impl ObjectStore for LocalStore {
    fn describe(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let p = self.path(key)?;
        fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(p.display().to_string())
            } else {
                io("read", &p, e)
            }
        })
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let staged = Self::stage(&dest, bytes)?;
        // hard_link fails if `dest` exists: an atomic create-only publish.
        match fs::hard_link(staged.path(), &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists(dest.display().to_string()))
            }
            Err(e) => Err(io("link", &dest, e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let staged = Self::stage(&dest, bytes)?;
        staged.persist(&dest)
    }
}

/// A tiny synced temporary file, removed on drop unless persisted.
mod tempfile_like {
    use super::{Path, PathBuf, StoreError, Write, fs, io};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    pub(super) struct Staged {
        path: PathBuf,
        keep: bool,
    }

    impl Staged {
        pub(super) fn write(dir: &Path, bytes: &[u8]) -> Result<Self, StoreError> {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
            let staged = Self { path, keep: false };
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged.path)
                .map_err(|e| io("create", &staged.path, e))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| io("write", &staged.path, e))?;
            Ok(staged)
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        pub(super) fn persist(mut self, dest: &Path) -> Result<(), StoreError> {
            fs::rename(&self.path, dest).map_err(|e| io("rename", dest, e))?;
            self.keep = true;
            if let Some(dir) = dest.parent() {
                // Make the rename durable; a failure here loses nothing already visible.
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        }
    }

    impl Drop for Staged {
        fn drop(&mut self) {
            if !self.keep {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_locations() {
        assert_eq!(
            Location::parse("s3://b/a/c/").ok(),
            Some(Location::S3 {
                bucket: "b".into(),
                key: "a/c".into()
            })
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("http://x").is_err());
        assert_eq!(
            Location::parse("artifacts").ok(),
            Some(Location::Local("artifacts".into()))
        );
    }

    #[test]
    fn parse_model_uris() {
        let u = ModelUri::parse("artifacts/digits").expect("uri");
        assert_eq!(u.root, Location::Local("artifacts".into()));
        assert_eq!(u.name, "digits");
        assert_eq!(u.version, None);
        let v = "20261127T033150.123Z-0123456789ab";
        let u = ModelUri::parse(&format!("s3://bkt/models/digits/{v}/model.json")).expect("uri");
        assert_eq!(
            u.root,
            Location::S3 {
                bucket: "bkt".into(),
                key: "models".into()
            }
        );
        assert_eq!(u.version.as_deref(), Some(v));
        assert_eq!(u.to_string(), format!("s3://bkt/models/digits/{v}"));
        let u = ModelUri::parse("s3://bkt/digits").expect("uri");
        assert_eq!(u.to_string(), "s3://bkt/digits");
        assert!(ModelUri::parse("s3://bkt").is_err());
        assert!(ModelUri::parse("s3://bkt/bad name").is_err());
    }
}
