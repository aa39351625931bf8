//! The registry verbs, `trainer models list | show | promote | prune`: what is in a store,
//! which version `latest` names, and moving it (a rollback is a promotion of an older
//! version). The store rules (verification, atomic pointer writes, never deleting what
//! `latest` names) live in `model::store`; this module adds the policies (which versions a
//! prune deletes) and the output (tables for people, JSON for machines).
//!
//! It never trains and never touches a model's bytes: versions are read, verified and
//! deleted whole.

use std::fmt::Write as _;

use model::StoreError;
use model::store::{self, ModelUri, ObjectStore, Pointer};
use serde::Serialize;
use serde_json::Value;

use crate::error::TrainError;

/// Hex digits shown of a model id or a data checksum in tables.
const SHORT: usize = 12;

fn short(s: &str) -> String {
    s.chars().take(SHORT).collect()
}

/// `uri` must name a model, not one of its versions (`list`, `prune`).
fn model_only(uri: &ModelUri, verb: &'static str) -> Result<(), TrainError> {
    match &uri.version {
        None => Ok(()),
        Some(v) => Err(TrainError::param(
            verb,
            format!("takes <store>/<name>, not a version; drop the trailing /{v} (got {uri})"),
        )),
    }
}

/// One row of [`Listing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRow {
    /// The version name.
    pub version: String,
    /// True for the version `latest` names.
    pub latest: bool,
    /// The artifact's `created_at`.
    pub created_at: Option<String>,
    /// The artifact's `model_id` (full).
    pub model_id: Option<String>,
    /// Holdout accuracy (`metrics.accuracy`), when recorded.
    pub accuracy: Option<f64>,
    /// SHA-256 of the training data (full).
    pub data_sha256: Option<String>,
    /// Why the version does not verify, if it does not (then the fields above are empty).
    pub error: Option<String>,
}

/// `trainer models list`: a model's versions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// The model, `<store>/<name>`.
    pub model: String,
    /// The version `latest` names, if it names one.
    pub latest: Option<String>,
    /// Why `latest` cannot be read, if it cannot.
    pub latest_error: Option<String>,
    /// The versions, newest first.
    pub versions: Vec<VersionRow>,
}

/// List the versions of the model `uri` names, newest first, each verified (a version that
/// does not verify is listed with the reason).
pub fn list(store: &dyn ObjectStore, uri: &ModelUri) -> Result<Listing, TrainError> {
    model_only(uri, "models list")?;
    let catalog = store::catalog(store, &uri.name)?;
    let latest = catalog.latest.version().map(str::to_string);
    let versions = catalog
        .versions
        .iter()
        .rev()
        .map(|v| {
            let is_latest = latest.as_deref() == Some(v.as_str());
            match store::verify_version(store, &uri.name, v) {
                Ok((model, _)) => {
                    let a = model.artifact();
                    VersionRow {
                        version: v.clone(),
                        latest: is_latest,
                        created_at: Some(a.created_at.clone()),
                        model_id: Some(a.model_id.clone()),
                        accuracy: a.metrics.get("accuracy").and_then(Value::as_f64),
                        data_sha256: Some(a.data_sha256.clone()),
                        error: None,
                    }
                }
                Err(e) => VersionRow {
                    version: v.clone(),
                    latest: is_latest,
                    created_at: None,
                    model_id: None,
                    accuracy: None,
                    data_sha256: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    Ok(Listing {
        model: uri.to_string(),
        latest,
        latest_error: match catalog.latest {
            Pointer::Invalid(why) => Some(why),
            Pointer::Absent | Pointer::Valid(_) => None,
        },
        versions,
    })
}

impl Listing {
    /// The listing as a table; `*` marks the version `latest` names.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let width = self
            .versions
            .iter()
            .map(|r| r.version.len())
            .max()
            .unwrap_or(0)
            .max("version".len());
        let _ = writeln!(
            s,
            "  {:<width$}  {:<24}  {:<12}  {:>8}  data sha256",
            "version", "created_at", "model_id", "accuracy"
        );
        for r in &self.versions {
            let mark = if r.latest { '*' } else { ' ' };
            match &r.error {
                None => {
                    let accuracy = r.accuracy.map_or_else(|| "-".into(), |a| format!("{a:.4}"));
                    let _ = writeln!(
                        s,
                        "{mark} {:<width$}  {:<24}  {:<12}  {accuracy:>8}  {}",
                        r.version,
                        r.created_at.as_deref().unwrap_or("-"),
                        short(r.model_id.as_deref().unwrap_or("-")),
                        short(r.data_sha256.as_deref().unwrap_or("-")),
                    );
                }
                Some(e) => {
                    let _ = writeln!(s, "{mark} {:<width$}  INVALID: {e}", r.version);
                }
            }
        }
        let _ = writeln!(
            s,
            "{} version{} of {}",
            self.versions.len(),
            if self.versions.len() == 1 { "" } else { "s" },
            self.model
        );
        match (&self.latest, &self.latest_error) {
            (_, Some(e)) => {
                let _ = writeln!(s, "latest: unreadable: {e}");
            }
            (Some(v), None) if !self.versions.iter().any(|r| &r.version == v) => {
                let _ = writeln!(s, "latest: {v} (missing from the store)");
            }
            (Some(_), None) => {}
            (None, None) => {
                let _ = writeln!(s, "latest: (none)");
            }
        }
        s
    }
}

/// `trainer models show`: one version's metadata and metrics (never its weights).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    /// The model, `<store>/<name>`.
    pub model: String,
    /// The version shown.
    pub version: String,
    /// True when `latest` names it.
    pub latest: bool,
    /// Where its `model.json` lives.
    pub location: String,
    /// SHA-256 of its `model.json` bytes.
    pub sha256: String,
    /// The artifact's `model_id`.
    pub model_id: String,
    /// The artifact's `created_at`.
    pub created_at: String,
    /// The artifact's format version.
    pub format_version: u32,
    /// Class labels.
    pub classes: Vec<String>,
    /// Feature names, in input order.
    pub feature_names: Vec<String>,
    /// SHA-256 of the training data.
    pub data_sha256: String,
    /// Training parameters.
    pub training: serde_json::Map<String, Value>,
    /// Evaluation metrics.
    pub metrics: serde_json::Map<String, Value>,
}

/// Show the version `uri` names, or the one `latest` names (whose recorded checksum must
/// then match). The version is verified as a promotion would verify it.
pub fn show(store: &dyn ObjectStore, uri: &ModelUri) -> Result<Shown, TrainError> {
    let pointer = store::catalog(store, &uri.name)?.latest;
    let (version, expected_sha) = match (&uri.version, &pointer) {
        (Some(v), _) => (v.clone(), None),
        (None, Pointer::Valid(l)) => (l.version.clone(), Some(l.sha256.clone())),
        (None, Pointer::Absent) => {
            return Err(TrainError::param(
                "models show",
                format!(
                    "{uri} has no latest pointer; name a version (`trainer models list {uri}`)"
                ),
            ));
        }
        (None, Pointer::Invalid(why)) => {
            return Err(TrainError::param(
                "models show",
                format!("{uri}: the latest pointer is unreadable ({why}); name a version"),
            ));
        }
    };
    let (model, sha256) = store::verify_version(store, &uri.name, &version)?;
    let key = store::model_key(&uri.name, &version);
    if let Some(expected) = expected_sha.filter(|e| *e != sha256) {
        return Err(StoreError::Checksum {
            key: store.describe(&key),
            expected,
            actual: sha256,
        }
        .into());
    }
    let a = model.artifact();
    Ok(Shown {
        model: ModelUri {
            version: None,
            ..uri.clone()
        }
        .to_string(),
        latest: pointer.version() == Some(version.as_str()),
        location: store.describe(&key),
        version,
        sha256,
        model_id: a.model_id.clone(),
        created_at: a.created_at.clone(),
        format_version: a.format_version,
        classes: a.classes.clone(),
        feature_names: a.feature_names.clone(),
        data_sha256: a.data_sha256.clone(),
        training: a.training.clone(),
        metrics: a.metrics.clone(),
    })
}

/// A metric or parameter on one line: scalars as they are, the rest summarised.
fn one_line(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{} items; see --json]", items.len()),
        Value::Object(map) => format!("{{{} fields; see --json}}", map.len()),
        other => other.to_string(),
    }
}

impl Shown {
    /// The metadata as `key  value` lines.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let width = self
            .training
            .keys()
            .map(|k| k.len() + "training.".len())
            .chain(self.metrics.keys().map(|k| k.len() + "metrics.".len()))
            .max()
            .unwrap_or(0)
            .max("format_version".len())
            + 2;
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(s, "{k:<width$}{v}");
        };
        line("model", &self.model);
        let version = if self.latest {
            format!("{} (latest)", self.version)
        } else {
            self.version.clone()
        };
        line("version", &version);
        line("location", &self.location);
        line("sha256", &self.sha256);
        line("model_id", &self.model_id);
        line("created_at", &self.created_at);
        line("format_version", &self.format_version.to_string());
        line(
            "classes",
            &format!("{}: {}", self.classes.len(), self.classes.join(" ")),
        );
        let features = if self.feature_names.len() > 8 {
            format!(
                "{}: {} ... {}",
                self.feature_names.len(),
                self.feature_names[..4].join(" "),
                self.feature_names[self.feature_names.len() - 2..].join(" ")
            )
        } else {
            format!(
                "{}: {}",
                self.feature_names.len(),
                self.feature_names.join(" ")
            )
        };
        line("features", &features);
        line("data_sha256", &self.data_sha256);
        for (k, v) in &self.training {
            line(&format!("training.{k}"), &one_line(v));
        }
        for (k, v) in &self.metrics {
            line(&format!("metrics.{k}"), &one_line(v));
        }
        s
    }
}

/// `trainer models promote`: what `latest` was and is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promoted {
    /// The model, `<store>/<name>`.
    pub model: String,
    /// The version `latest` named before, if it named one.
    pub previous: Option<String>,
    /// Why the previous pointer could not be read, if it could not.
    pub previous_error: Option<String>,
    /// The version `latest` names now.
    pub latest: String,
    /// Its `model_id`.
    pub model_id: String,
    /// SHA-256 of its `model.json`, as the pointer records it.
    pub sha256: String,
    /// False when `latest` already named it (nothing was written).
    pub changed: bool,
}

/// Verify the version `uri` names, then make `latest` name it. Any error leaves `latest`
/// as it was.
pub fn promote(store: &dyn ObjectStore, uri: &ModelUri) -> Result<Promoted, TrainError> {
    let Some(version) = &uri.version else {
        let last = uri.name.clone();
        return Err(TrainError::param(
            "models promote",
            format!(
                "takes <store>/<name>/<version>; {last:?} is not a version name (versions \
                 look like 20261127T033150.123Z-1a2b3c4d5e6f; `trainer models list` shows them)"
            ),
        ));
    };
    let p = store::promote(store, &uri.name, version).map_err(|source| TrainError::Refused {
        what: format!("cannot promote {uri}"),
        unchanged: "latest is unchanged",
        source,
    })?;
    Ok(Promoted {
        model: ModelUri {
            version: None,
            ..uri.clone()
        }
        .to_string(),
        previous: p.previous.version().map(str::to_string),
        previous_error: match p.previous {
            Pointer::Invalid(why) => Some(why),
            Pointer::Absent | Pointer::Valid(_) => None,
        },
        latest: p.latest.version,
        model_id: p.latest.model_id,
        sha256: p.latest.sha256,
        changed: p.changed,
    })
}

impl Promoted {
    /// `latest was ... / latest is ...`.
    pub fn text(&self) -> String {
        let was = match (&self.previous, &self.previous_error) {
            (_, Some(e)) => format!("(unreadable: {e})"),
            (Some(v), None) => v.clone(),
            (None, None) => "(none)".into(),
        };
        let note = if self.changed {
            ""
        } else {
            " (already latest; nothing written)"
        };
        format!(
            "{}\nlatest was {was}\nlatest is  {}{note} (model_id {}, verified)\n",
            self.model,
            self.latest,
            short(&self.model_id)
        )
    }
}

/// `trainer models prune`: what was (or would be) deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    /// The model, `<store>/<name>`.
    pub model: String,
    /// Versions kept besides the one `latest` names.
    pub keep: usize,
    /// True when nothing was deleted on purpose.
    pub dry_run: bool,
    /// The version `latest` names (never deleted).
    pub latest: Option<String>,
    /// Versions kept, newest first.
    pub kept: Vec<String>,
    /// Versions deleted (or, in a dry run, to delete), oldest first.
    pub deleted: Vec<String>,
    /// Versions planned for deletion but spared because `latest` named them by the time
    /// their turn came (a concurrent promotion).
    pub spared: Vec<String>,
}

/// Which versions a prune keeps: the `keep` newest, and the one `latest` names wherever it
/// is. Returns (kept newest first, to delete oldest first).
pub fn prune_plan(
    versions_oldest_first: &[String],
    latest: Option<&str>,
    keep: usize,
) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut delete = Vec::new();
    for (i, v) in versions_oldest_first.iter().rev().enumerate() {
        if i < keep || latest == Some(v.as_str()) {
            kept.push(v.clone());
        } else {
            delete.push(v.clone());
        }
    }
    delete.reverse();
    (kept, delete)
}

/// Delete the oldest versions of the model `uri` names beyond the `keep` newest, never the
/// one `latest` names (each deletion re-reads `latest` first). Refused, deleting nothing,
/// when `latest` cannot be read: then nobody can tell which version it protects.
pub fn prune(
    store: &dyn ObjectStore,
    uri: &ModelUri,
    keep: usize,
    dry_run: bool,
) -> Result<Pruned, TrainError> {
    model_only(uri, "models prune")?;
    let catalog = store::catalog(store, &uri.name)?;
    if let Pointer::Invalid(why) = &catalog.latest {
        return Err(TrainError::Refused {
            what: format!("cannot prune {uri}"),
            unchanged: "nothing deleted",
            source: StoreError::Backend(format!(
                "the latest pointer is unreadable ({why}); promote a version first"
            )),
        });
    }
    let latest = catalog.latest.version().map(str::to_string);
    let (kept, plan) = prune_plan(&catalog.versions, latest.as_deref(), keep);
    let mut deleted = Vec::new();
    let mut spared = Vec::new();
    if dry_run {
        deleted = plan;
    } else {
        for v in plan {
            match store::delete_version(store, &uri.name, &v) {
                Ok(()) => deleted.push(v),
                // Promoted meanwhile: it stays.
                Err(StoreError::InUse { .. }) => spared.push(v),
                // Gone meanwhile (another prune): nothing left to do for it.
                Err(StoreError::NoSuchVersion { .. }) => {}
                Err(source) => {
                    return Err(TrainError::Refused {
                        what: format!(
                            "prune of {uri} stopped after deleting {} version(s) ({})",
                            deleted.len(),
                            if deleted.is_empty() {
                                "none".to_string()
                            } else {
                                deleted.join(", ")
                            }
                        ),
                        unchanged: "the other versions are untouched",
                        source,
                    });
                }
            }
        }
    }
    Ok(Pruned {
        model: uri.to_string(),
        keep,
        dry_run,
        latest,
        kept,
        deleted,
        spared,
    })
}

impl Pruned {
    /// One line per deleted version, then a summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for v in &self.deleted {
            let _ = writeln!(s, "{verb} {}/{v}", self.model);
        }
        for v in &self.spared {
            let _ = writeln!(s, "kept {}/{v} (latest names it now)", self.model);
        }
        let _ = writeln!(
            s,
            "{}: {} {verb}, {} kept (the {} newest{}){}",
            self.model,
            self.deleted.len(),
            self.kept.len() + self.spared.len(),
            self.keep,
            match &self.latest {
                Some(v) if !self.kept.iter().take(self.keep).any(|k| k == v) =>
                    format!(" and latest, {v}"),
                Some(_) => " (latest among them)".into(),
                None => String::new(),
            },
            if self.dry_run {
                "; dry run, nothing deleted"
            } else {
                ""
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v{i}")).collect()
    }

    #[test]
    fn prune_keeps_the_newest_and_latest() {
        let v = names(5);
        let (kept, delete) = prune_plan(&v, Some("v4"), 2);
        assert_eq!(kept, ["v4", "v3"]);
        assert_eq!(delete, ["v0", "v1", "v2"]);
        // latest is old: it stays besides the newest.
        let (kept, delete) = prune_plan(&v, Some("v1"), 2);
        assert_eq!(kept, ["v4", "v3", "v1"]);
        assert_eq!(delete, ["v0", "v2"]);
        let (kept, delete) = prune_plan(&v, Some("v0"), 0);
        assert_eq!(kept, ["v0"]);
        assert_eq!(delete, ["v1", "v2", "v3", "v4"]);
        let (kept, delete) = prune_plan(&v, None, 10);
        assert_eq!(kept.len(), 5);
        assert!(delete.is_empty());
    }

    #[test]
    fn values_fit_on_one_line() {
        assert_eq!(one_line(&serde_json::json!(0.5)), "0.5");
        assert_eq!(one_line(&serde_json::json!("lbfgs")), "lbfgs");
        assert_eq!(
            one_line(&serde_json::json!([1, 2])),
            "[2 items; see --json]"
        );
    }
}
