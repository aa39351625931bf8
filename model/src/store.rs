//! Where artifacts live, the same on disk and in S3:
//!
//! ```text
//! <root>/<name>/<version>/model.json   written once, never overwritten
//! <root>/<name>/latest                 small JSON pointer, written last
//! ```
//!
//! Backends implement the small [`ObjectStore`] trait (byte-level calls: get, put, list,
//! delete, and a conditional get for polling); the layout rules are written once, here, on
//! top of it:
//!
//! - [`publish`] a new version, [`load`] a version or the one `latest` names;
//! - the registry: [`catalog`] (versions and what `latest` says), [`verify_version`],
//!   [`promote`] (verify, then move `latest`; a rollback is a promote), [`delete_version`]
//!   (never the one `latest` names);
//! - polling: [`read_latest_if_changed`] costs one small request when nothing changed.
//!
//! This module holds the local-directory backend; the S3 backend lives in the `storage`
//! crate.

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
    /// Every key under `prefix` (empty, or ending in `/`), at any depth, sorted; empty when
    /// there is none. A root that is not a store (a missing directory, a file, a missing
    /// bucket) is [`StoreError::NotAStore`].
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Remove an object. Removing an absent one succeeds (as it does on S3).
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Read `key` unless its content is still the one tagged `previous`: `Ok(None)` when
    /// unchanged, else its bytes and their tag (pass that tag to the next call).
    /// [`StoreError::NotFound`] when absent.
    ///
    /// Meant for polling a small object (the `latest` pointer). S3 sends one conditional
    /// GET (`If-None-Match`; an unchanged object is a `304` with no body). This default
    /// reads the object and compares [`content_tag`]s: right for any backend, and cheap for
    /// a pointer of a few hundred bytes. Tags are opaque: compare them, never parse them.
    fn get_if_changed(
        &self,
        key: &str,
        previous: Option<&str>,
    ) -> Result<Option<Tagged>, StoreError> {
        let bytes = self.get(key)?;
        let tag = content_tag(&bytes);
        if previous == Some(tag.as_str()) {
            Ok(None)
        } else {
            Ok(Some(Tagged { bytes, tag }))
        }
    }
}

/// An object's bytes and a tag that changes whenever they do (S3's `ETag`, or
/// [`content_tag`]): what [`ObjectStore::get_if_changed`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The tag of these bytes; opaque.
    pub tag: String,
}

/// The tag of `bytes` for a backend without tags of its own: `sha256:<hex>`.
pub fn content_tag(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
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
    write_latest(store, &latest)?;
    Ok(Published {
        name: name.clone(),
        version,
        model_id: artifact.model_id.clone(),
        location: store.describe(&key),
    })
}

/// Replace `latest` whole with `latest` (one atomic put: readers see the old pointer or the
/// new one, never a mix).
fn write_latest(store: &dyn ObjectStore, latest: &Latest) -> Result<(), StoreError> {
    // Serialising four strings cannot fail.
    let pointer = serde_json::to_vec(latest).unwrap_or_default();
    store.put(&latest_key(&latest.name), &pointer)
}

/// Read a model's `latest` pointer.
pub fn read_latest(store: &dyn ObjectStore, name: &str) -> Result<Latest, StoreError> {
    let key = latest_key(name);
    let bytes = store.get(&key)?;
    parse_latest(store, name, &bytes)
}

/// Parse and check the bytes of `name`'s `latest` pointer.
fn parse_latest(store: &dyn ObjectStore, name: &str, bytes: &[u8]) -> Result<Latest, StoreError> {
    let key = latest_key(name);
    let latest: Latest = serde_json::from_slice(bytes).map_err(|e| {
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

/// What a model's `latest` pointer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pointer {
    /// There is no pointer.
    Absent,
    /// A well-formed pointer to a version-shaped name of this model.
    Valid(Latest),
    /// A pointer that cannot be read as one (why).
    Invalid(String),
}

impl Pointer {
    /// The version a valid pointer names.
    pub fn version(&self) -> Option<&str> {
        match self {
            Self::Valid(l) => Some(&l.version),
            Self::Absent | Self::Invalid(_) => None,
        }
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Absent => f.write_str("(none)"),
            Self::Valid(l) => f.write_str(&l.version),
            Self::Invalid(why) => write!(f, "(unreadable: {why})"),
        }
    }
}

/// A model's versions and its `latest` pointer, as [`catalog`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Version names, oldest first (they sort by creation time).
    pub versions: Vec<String>,
    /// What `latest` says.
    pub latest: Pointer,
}

/// The complete versions of model `name` (`<name>/<version>/model.json`), oldest first.
pub fn list_versions(store: &dyn ObjectStore, name: &str) -> Result<Vec<String>, StoreError> {
    check_model_name(name)?;
    let prefix = format!("{name}/");
    let mut versions: Vec<String> = store
        .list(&prefix)?
        .into_iter()
        .filter_map(|key| {
            let (version, file) = key.strip_prefix(&prefix)?.split_once('/')?;
            (file == MODEL_FILE && is_version(version)).then(|| version.to_string())
        })
        .collect();
    versions.sort();
    versions.dedup();
    Ok(versions)
}

/// Read `latest` without failing on a bad pointer: absent, valid or invalid (store
/// failures are still errors).
fn read_pointer(store: &dyn ObjectStore, name: &str) -> Result<Pointer, StoreError> {
    match store.get(&latest_key(name)) {
        Ok(bytes) => Ok(match parse_latest(store, name, &bytes) {
            Ok(l) => Pointer::Valid(l),
            Err(e) => Pointer::Invalid(e.to_string()),
        }),
        Err(StoreError::NotFound(_)) => Ok(Pointer::Absent),
        Err(e) => Err(e),
    }
}

/// Model `name`'s versions and `latest` pointer. [`StoreError::NoSuchModel`] when it has
/// neither; [`StoreError::NotAStore`] when the root is not a store.
pub fn catalog(store: &dyn ObjectStore, name: &str) -> Result<Catalog, StoreError> {
    let versions = list_versions(store, name)?;
    let latest = read_pointer(store, name)?;
    if versions.is_empty() && latest == Pointer::Absent {
        return Err(StoreError::NoSuchModel {
            location: store.describe(name),
        });
    }
    Ok(Catalog { versions, latest })
}

fn check_model_name(name: &str) -> Result<(), StoreError> {
    check_name(name).map_err(|reason| StoreError::InvalidUri {
        uri: name.to_string(),
        reason: format!("model name {reason}"),
    })
}

fn check_version_name(version: &str) -> Result<(), StoreError> {
    if is_version(version) {
        Ok(())
    } else {
        Err(StoreError::InvalidUri {
            uri: version.to_string(),
            reason: "not a version name (versions look like 20261127T033150.123Z-1a2b3c4d5e6f)"
                .into(),
        })
    }
}

/// The error for a version that is not there: no such model at all, or no such version.
fn missing_version(store: &dyn ObjectStore, name: &str, version: &str) -> StoreError {
    match catalog(store, name) {
        Err(e @ (StoreError::NoSuchModel { .. } | StoreError::NotAStore { .. })) => e,
        _ => StoreError::NoSuchVersion {
            location: store.describe(&format!("{name}/{version}")),
            name: name.to_string(),
        },
    }
}

/// Read version `version` of model `name` and check everything a server relies on: the
/// artifact loads and validates (format, shapes, finite numbers, `model_id` = the hash of
/// its content), it is named `name`, and the version name ends with the start of its
/// `model_id` (the version holds the artifact it was published as). Returns the model and
/// the SHA-256 of its bytes (what a `latest` pointer records).
///
/// [`StoreError::NoSuchModel`] / [`StoreError::NoSuchVersion`] when absent;
/// [`StoreError::Unverified`] when present but wrong; store failures as they come.
pub fn verify_version(
    store: &dyn ObjectStore,
    name: &str,
    version: &str,
) -> Result<(Model, String), StoreError> {
    check_model_name(name)?;
    check_version_name(version)?;
    let key = model_key(name, version);
    let unverified = |source: StoreError| StoreError::Unverified {
        location: store.describe(&key),
        source: Box::new(source),
    };
    let bytes = match store.get(&key) {
        Ok(b) => b,
        Err(StoreError::NotFound(_)) => return Err(missing_version(store, name, version)),
        Err(e @ StoreError::Checksum { .. }) => return Err(unverified(e)),
        Err(e) => return Err(e),
    };
    let model = Model::from_json(&bytes).map_err(|source| {
        unverified(StoreError::Model {
            location: store.describe(&key),
            source,
        })
    })?;
    let a = model.artifact();
    if a.name != name {
        return Err(unverified(StoreError::Backend(format!(
            "the artifact is named {:?}, not {name:?}",
            a.name
        ))));
    }
    // `new_version` ends the name with the first 12 hex digits of the model id.
    let suffix = version.rsplit_once('-').map_or("", |(_, s)| s);
    if !a.model_id.starts_with(suffix) {
        return Err(unverified(StoreError::Backend(format!(
            "its model_id {} does not match the version name (which ends in {suffix})",
            a.model_id
        ))));
    }
    let sha = sha256_hex(&bytes);
    Ok((model, sha))
}

/// The result of a [`promote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The pointer now in place.
    pub latest: Latest,
    /// What `latest` said before.
    pub previous: Pointer,
    /// False when `latest` already named this version with this checksum (nothing written).
    pub changed: bool,
}

/// Make `latest` name `version` of model `name`, after [`verify_version`]; a rollback is
/// the promotion of an older version. The pointer is replaced with one atomic put and
/// records the checksum of the very bytes verified, so whatever happens concurrently
/// (another promotion, a publish), `latest` is always one whole pointer naming a verified
/// version: the last writer's. Any error leaves `latest` as it was.
pub fn promote(
    store: &dyn ObjectStore,
    name: &str,
    version: &str,
) -> Result<Promotion, StoreError> {
    let (model, sha256) = verify_version(store, name, version)?;
    let latest = Latest {
        name: name.to_string(),
        version: version.to_string(),
        model_id: model.artifact().model_id.clone(),
        sha256,
    };
    let previous = read_pointer(store, name)?;
    let changed = previous != Pointer::Valid(latest.clone());
    if changed {
        write_latest(store, &latest)?;
    }
    Ok(Promotion {
        latest,
        previous,
        changed,
    })
}

/// Delete version `version` of model `name` (its `model.json`). Refused with
/// [`StoreError::InUse`] when `latest` names it, and when `latest` cannot be read (then
/// nobody can tell what it names). The pointer is read just before the delete, so a
/// promotion that finished first is respected.
pub fn delete_version(
    store: &dyn ObjectStore,
    name: &str,
    version: &str,
) -> Result<(), StoreError> {
    check_model_name(name)?;
    check_version_name(version)?;
    let key = model_key(name, version);
    if !store.list(&format!("{name}/{version}/"))?.contains(&key) {
        return Err(missing_version(store, name, version));
    }
    match read_pointer(store, name)? {
        Pointer::Valid(l) if l.version == version => {
            return Err(StoreError::InUse {
                location: store.describe(&format!("{name}/{version}")),
            });
        }
        Pointer::Invalid(why) => {
            return Err(StoreError::Backend(format!(
                "refusing to delete {}: cannot tell what latest names ({why})",
                store.describe(&format!("{name}/{version}"))
            )));
        }
        Pointer::Valid(_) | Pointer::Absent => {}
    }
    store.delete(&key)
}

/// Poll model `name`'s `latest` pointer: `Ok(None)` while its tag is still `previous_tag`,
/// else the pointer (parsed and checked) and its new tag. On S3 an unchanged pointer costs
/// one conditional GET and no download (see [`ObjectStore::get_if_changed`]). The version
/// it names is not read here: [`load`] it (which checks the recorded checksum) off the
/// request path.
pub fn read_latest_if_changed(
    store: &dyn ObjectStore,
    name: &str,
    previous_tag: Option<&str>,
) -> Result<Option<(Latest, String)>, StoreError> {
    match store.get_if_changed(&latest_key(name), previous_tag)? {
        None => Ok(None),
        Some(t) => Ok(Some((parse_latest(store, name, &t.bytes)?, t.tag))),
    }
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

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let not_a_store = |location: &Path, reason: &str| StoreError::NotAStore {
            location: location.display().to_string(),
            reason: reason.to_string(),
        };
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_a_store(&self.root, "it is a file, not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_a_store(&self.root, "no such directory"));
            }
            Err(e) => return Err(io("read", &self.root, e)),
        }
        let dir = match prefix.strip_suffix('/') {
            Some(p) => self.path(p)?,
            None if prefix.is_empty() => self.root.clone(),
            None => {
                return Err(StoreError::InvalidUri {
                    uri: prefix.to_string(),
                    reason: "a list prefix is empty or ends in '/'".into(),
                });
            }
        };
        let mut keys = Vec::new();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => walk(&dir, prefix, &mut keys)?,
            Ok(_) => return Err(not_a_store(&dir, "it is a file, not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", &dir, e)),
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.path(key)?;
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("delete", &p, e)),
        }
        // A version directory left empty goes too, so listings stay clean; a directory that
        // is not empty (or already gone) stays as it is.
        if let Some(dir) = p.parent().filter(|d| *d != self.root) {
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// Append to `out` the key of every file under `dir` (whose key prefix is `prefix`),
/// skipping files being staged. Symbolic links are not followed into directories.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: no key can name it
        };
        if file_name.starts_with(tempfile_like::PREFIX) {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| io("list", &entry.path(), e))?;
        let key = format!("{prefix}{file_name}");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{key}/"), out)?;
        } else if kind.is_file() || fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            out.push(key);
        }
    }
    Ok(())
}

/// A tiny synced temporary file, removed on drop unless persisted.
mod tempfile_like {
    use super::{Path, PathBuf, StoreError, Write, fs, io};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    /// Names of staged files start with this; listings skip them.
    pub(super) const PREFIX: &str = ".tmp-";

    pub(super) struct Staged {
        path: PathBuf,
        keep: bool,
    }

    impl Staged {
        pub(super) fn write(dir: &Path, bytes: &[u8]) -> Result<Self, StoreError> {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{PREFIX}{}-{n}", std::process::id()));
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
    use crate::artifact::Scaler;

    /// A small valid binary model; `w` varies the weights (and so the model id).
    fn artifact(name: &str, w: f64) -> Artifact {
        let mut a = Artifact {
            format_version: crate::FORMAT_VERSION,
            model_id: String::new(),
            name: name.to_string(),
            created_at: "2026-11-27T03:00:00.000Z".into(),
            classes: vec!["no".into(), "yes".into()],
            feature_names: vec!["x".into(), "y".into()],
            scaler: Scaler {
                mean: vec![0.5, -1.0],
                scale: vec![2.0, 1.0],
            },
            coefficients: vec![vec![w, -0.5]],
            intercepts: vec![0.25],
            training: serde_json::Map::new(),
            metrics: serde_json::Map::new(),
            data_sha256: "0".repeat(64),
        };
        a.seal();
        a
    }

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LocalStore::new(dir.path());
        (dir, s)
    }

    /// Publish `n` versions of `name`; returns their version names, oldest first.
    fn versions(s: &LocalStore, name: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let v = publish(
                    s,
                    &artifact(name, 1.0 + f64::from(u32::try_from(i).unwrap_or(0))),
                )
                .expect("publish")
                .version;
                // Version names carry milliseconds: keep them apart and in order.
                std::thread::sleep(std::time::Duration::from_millis(3));
                v
            })
            .collect()
    }

    #[test]
    fn local_list_walks_under_a_prefix_and_skips_staged_files() {
        let (dir, s) = store();
        s.put("m/a/model.json", b"1").expect("put");
        s.put("m/latest", b"2").expect("put");
        s.put("other/x", b"3").expect("put");
        std::fs::write(dir.path().join("m/.tmp-1-1"), b"half").expect("write");
        assert_eq!(s.list("m/").expect("list"), ["m/a/model.json", "m/latest"]);
        assert_eq!(s.list("").expect("list").len(), 3);
        assert!(s.list("absent/").expect("list").is_empty());
        assert!(matches!(s.list("m"), Err(StoreError::InvalidUri { .. })));
    }

    #[test]
    fn local_list_says_when_the_root_is_not_a_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = LocalStore::new(dir.path().join("nope"));
        let e = missing.list("m/").expect_err("missing root");
        assert!(
            e.to_string()
                .contains("is not a model store: no such directory"),
            "{e}"
        );
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        let file = LocalStore::new(dir.path().join("file"));
        let e = file.list("m/").expect_err("file root");
        assert!(e.to_string().contains("it is a file"), "{e}");
        let s = LocalStore::new(dir.path());
        let e = s.list("file/").expect_err("file under root");
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    }

    #[test]
    fn local_delete_is_idempotent_and_tidies_the_version_directory() {
        let (dir, s) = store();
        s.put("m/v/model.json", b"1").expect("put");
        s.delete("m/v/model.json").expect("delete");
        assert!(!dir.path().join("m/v").exists());
        assert!(dir.path().join("m").exists());
        s.delete("m/v/model.json").expect("delete again");
    }

    #[test]
    fn get_if_changed_compares_content_tags() {
        let (_dir, s) = store();
        assert!(matches!(
            s.get_if_changed("k", None),
            Err(StoreError::NotFound(_))
        ));
        s.put("k", b"one").expect("put");
        let first = s.get_if_changed("k", None).expect("get").expect("changed");
        assert_eq!(first.bytes, b"one");
        assert_eq!(first.tag, content_tag(b"one"));
        assert_eq!(s.get_if_changed("k", Some(&first.tag)).expect("get"), None);
        s.put("k", b"two").expect("put");
        let second = s
            .get_if_changed("k", Some(&first.tag))
            .expect("get")
            .expect("changed");
        assert_eq!(second.bytes, b"two");
        // The same bytes again: the same tag, so nothing to reload.
        s.put("k", b"two").expect("put");
        assert_eq!(s.get_if_changed("k", Some(&second.tag)).expect("get"), None);
    }

    #[test]
    fn catalog_lists_versions_oldest_first_with_latest() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 3);
        let c = catalog(&s, "m").expect("catalog");
        assert_eq!(c.versions, v);
        assert_eq!(c.latest.version(), v.last().map(String::as_str));
        let e = catalog(&s, "absent").expect_err("no model");
        assert!(matches!(e, StoreError::NoSuchModel { .. }), "{e}");
        assert!(e.to_string().contains("no model at"), "{e}");
        assert!(matches!(
            catalog(&s, "bad name"),
            Err(StoreError::InvalidUri { .. })
        ));
    }

    #[test]
    fn a_corrupt_pointer_is_reported_not_fatal() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 1);
        s.put(&latest_key("m"), b"{oops").expect("put");
        let c = catalog(&s, "m").expect("catalog");
        assert!(matches!(c.latest, Pointer::Invalid(_)), "{:?}", c.latest);
        // Promotion repairs it.
        let p = promote(&s, "m", &v[0]).expect("promote");
        assert!(p.changed && matches!(p.previous, Pointer::Invalid(_)));
        assert_eq!(read_latest(&s, "m").expect("latest").version, v[0]);
    }

    #[test]
    fn promote_moves_latest_and_rolls_back() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 2);
        let p = promote(&s, "m", &v[0]).expect("rollback");
        assert!(p.changed);
        assert_eq!(p.previous.version(), Some(v[1].as_str()));
        assert_eq!(load(&s, "m", None).expect("load").1, v[0]);
        let again = promote(&s, "m", &v[0]).expect("again");
        assert!(!again.changed);
        promote(&s, "m", &v[1]).expect("forward");
        assert_eq!(read_latest(&s, "m").expect("latest").version, v[1]);
    }

    #[test]
    fn promote_refuses_bad_input_and_changes_nothing() {
        let (dir, s) = store();
        let v = versions(&s, "m", 2);
        let before = s.get(&latest_key("m")).expect("pointer");
        let absent = "20200101T000000.000Z-0123456789ab";
        let e = promote(&s, "m", absent).expect_err("no such version");
        assert!(matches!(e, StoreError::NoSuchVersion { .. }), "{e}");
        let e = promote(&s, "nope", absent).expect_err("no such model");
        assert!(matches!(e, StoreError::NoSuchModel { .. }), "{e}");
        let e = promote(&s, "m", "latest").expect_err("not a version");
        assert!(e.to_string().contains("not a version name"), "{e}");

        // Tampered weights: the model id no longer matches the content.
        let path = dir.path().join("m").join(&v[0]).join(MODEL_FILE);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("-0.5", "-0.25", 1)).expect("tamper");
        let e = promote(&s, "m", &v[0]).expect_err("tampered");
        assert!(matches!(e, StoreError::Unverified { .. }), "{e}");
        assert!(e.to_string().contains("fails verification"), "{e}");

        // A valid artifact of another model, copied under this model's name.
        let other = publish(&s, &artifact("other", 9.0)).expect("publish");
        let foreign = format!("{}-{}", &v[1][..20], &other.model_id[..12]);
        s.put_new(&model_key("m", &foreign), &artifact("other", 9.0).to_json())
            .expect("copy");
        let e = promote(&s, "m", &foreign).expect_err("foreign");
        assert!(e.to_string().contains("named \"other\""), "{e}");

        // A valid artifact of this model under a version name that is not its own.
        let renamed = format!("{}-{}", &v[1][..20], "0".repeat(12));
        s.put_new(&model_key("m", &renamed), &artifact("m", 2.0).to_json())
            .expect("copy");
        let e = promote(&s, "m", &renamed).expect_err("renamed");
        assert!(
            e.to_string().contains("does not match the version name"),
            "{e}"
        );

        assert_eq!(s.get(&latest_key("m")).expect("pointer"), before);
    }

    #[test]
    fn concurrent_promotions_leave_one_whole_pointer() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 2);
        for _ in 0..20 {
            std::thread::scope(|scope| {
                for version in &v {
                    let s = &s;
                    scope.spawn(move || promote(s, "m", version).expect("promote"));
                }
            });
            let (_, now) = load(&s, "m", None).expect("latest loads");
            assert!(v.contains(&now), "{now}");
        }
    }

    #[test]
    fn delete_version_never_deletes_latest() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 2);
        let e = delete_version(&s, "m", &v[1]).expect_err("latest");
        assert!(matches!(e, StoreError::InUse { .. }), "{e}");
        delete_version(&s, "m", &v[0]).expect("delete");
        assert_eq!(list_versions(&s, "m").expect("list"), [v[1].clone()]);
        let e = delete_version(&s, "m", &v[0]).expect_err("gone");
        assert!(matches!(e, StoreError::NoSuchVersion { .. }), "{e}");
    }

    #[test]
    fn polling_latest_reports_changes_only() {
        let (_dir, s) = store();
        let v = versions(&s, "m", 2);
        let (l, tag) = read_latest_if_changed(&s, "m", None)
            .expect("poll")
            .expect("first poll sees it");
        assert_eq!(l.version, v[1]);
        assert_eq!(
            read_latest_if_changed(&s, "m", Some(&tag)).expect("poll"),
            None
        );
        promote(&s, "m", &v[0]).expect("promote");
        let (l, _) = read_latest_if_changed(&s, "m", Some(&tag))
            .expect("poll")
            .expect("changed");
        assert_eq!(l.version, v[0]);
    }

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
