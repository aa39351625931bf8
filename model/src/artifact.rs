//! The artifact: one self-describing, versioned JSON document holding everything
//! needed to predict (classes, scaler, weights) and to audit (training parameters,
//! metrics, data checksum). It is the only definition of the format; the trainer
//! writes it and the predict function reads it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ModelError;

/// The artifact format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Per-feature standardisation fitted on the training rows: `z = (x - mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    /// Mean of each feature over the training rows.
    pub mean: Vec<f64>,
    /// Standard deviation of each feature (1.0 where it was zero).
    pub scale: Vec<f64>,
}

/// The model artifact as stored (`model.json`).
///
/// Weights act on standardised features. With `K > 2` classes there are `K` rows of
/// coefficients (softmax); with two classes there is one row (sigmoid), whose positive
/// class is `classes[1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Format version; see [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Hex SHA-256 of the canonical content (see [`Artifact::compute_id`]).
    pub model_id: String,
    /// Model name, the directory under the store root.
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Class labels, sorted; predictions are indices into this list.
    pub classes: Vec<String>,
    /// Feature (column) names, in input order.
    pub feature_names: Vec<String>,
    /// Standardisation applied before the linear model.
    pub scaler: Scaler,
    /// Coefficients, one row per class (one row in total for a binary model).
    pub coefficients: Vec<Vec<f64>>,
    /// Intercepts, one per coefficient row.
    pub intercepts: Vec<f64>,
    /// Training parameters (solver, penalty, folds, seed, mode, ...), free-form.
    #[serde(default)]
    pub training: serde_json::Map<String, serde_json::Value>,
    /// Evaluation metrics (accuracy, CV scores, ...), free-form.
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Hex SHA-256 of the training data file's bytes.
    pub data_sha256: String,
}

impl Artifact {
    /// The canonical content hash: SHA-256 of the JSON serialisation with `model_id`
    /// and `created_at` blanked, so the same model trained twice has the same id.
    pub fn compute_id(&self) -> String {
        let mut canon = self.clone();
        canon.model_id.clear();
        canon.created_at.clear();
        // Serialising plain data (strings, finite floats, maps) cannot fail.
        let bytes = serde_json::to_vec(&canon).unwrap_or_default();
        sha256_hex(&bytes)
    }

    /// Fill in `model_id` from the content.
    pub fn seal(&mut self) {
        self.model_id = self.compute_id();
    }

    /// Serialise as pretty JSON (the stored form).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parse and fully validate a stored artifact.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        // Check the version before the shape, so a future format gets the right message.
        #[derive(Deserialize)]
        struct Probe {
            format_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        match probe.format_version {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(ModelError::Version {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => return Err(ModelError::invalid("format_version", "missing")),
        }
        let a: Artifact = serde_json::from_slice(bytes)?;
        a.validate()?;
        Ok(a)
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Check every invariant: shapes, finite numbers, positive scales, unique names, id.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.format_version != FORMAT_VERSION {
            return Err(ModelError::Version {
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        check_name(&self.name).map_err(|r| ModelError::invalid("name", r))?;
        let k = self.classes.len();
        if k < 2 {
            return Err(ModelError::invalid(
                "classes",
                format!("need at least 2 classes, found {k}"),
            ));
        }
        check_unique("classes", &self.classes)?;
        let f = self.feature_names.len();
        if f == 0 {
            return Err(ModelError::invalid("feature_names", "no features"));
        }
        check_unique("feature_names", &self.feature_names)?;
        check_vec("scaler.mean", &self.scaler.mean, f)?;
        check_vec("scaler.scale", &self.scaler.scale, f)?;
        if let Some(i) = self.scaler.scale.iter().position(|s| *s <= 0.0) {
            return Err(ModelError::invalid(
                format!("scaler.scale[{i}]"),
                "must be positive",
            ));
        }
        let rows = if k == 2 { 1 } else { k };
        if self.coefficients.len() != rows {
            return Err(ModelError::invalid(
                "coefficients",
                format!(
                    "expected {rows} rows for {k} classes, found {}",
                    self.coefficients.len()
                ),
            ));
        }
        for (i, row) in self.coefficients.iter().enumerate() {
            check_vec(&format!("coefficients[{i}]"), row, f)?;
        }
        check_vec("intercepts", &self.intercepts, rows)?;
        if !is_hex64(&self.data_sha256) {
            return Err(ModelError::invalid(
                "data_sha256",
                "must be 64 lowercase hex digits",
            ));
        }
        let id = self.compute_id();
        if self.model_id != id {
            return Err(ModelError::invalid(
                "model_id",
                format!(
                    "does not match the content (recorded {}, computed {id}); the artifact was altered",
                    self.model_id
                ),
            ));
        }
        Ok(())
    }
}

/// A model or version name: non-empty, at most 128 bytes, `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{name:?} must be 1 to 128 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a usable name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

fn check_unique(field: &str, items: &[String]) -> Result<(), ModelError> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, s) in items.iter().enumerate() {
        if !seen.insert(s.as_str()) {
            return Err(ModelError::invalid(
                format!("{field}[{i}]"),
                format!("duplicate {s:?}"),
            ));
        }
    }
    Ok(())
}

fn check_vec(field: &str, v: &[f64], len: usize) -> Result<(), ModelError> {
    if v.len() != len {
        return Err(ModelError::invalid(
            field,
            format!("expected {len} values, found {}", v.len()),
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(ModelError::invalid(
            format!("{field}[{i}]"),
            "not a finite number",
        ));
    }
    Ok(())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Current UTC time as RFC 3339 with milliseconds, e.g. `2026-11-27T03:31:50.123Z`.
pub fn now_rfc3339() -> String {
    let (date, time, ms) = now_parts();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// A new version name: sortable UTC time plus the start of the model id,
/// e.g. `20261127T033150.123Z-1a2b3c4d5e6f`.
pub fn new_version(model_id: &str) -> String {
    let (date, time, ms) = now_parts();
    let short: String = model_id.chars().take(12).collect();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{ms:03}Z-{short}",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// True when `s` has the shape of a name made by [`new_version`].
pub fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    // 8 digits, T, 6 digits, '.', 3 digits, 'Z', '-', then at least one hex digit.
    b.len() > 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[21..].iter().all(|c| c.is_ascii_hexdigit())
}

type Ymd = (i64, u32, u32);
type Hms = (u64, u64, u64);

fn now_parts() -> (Ymd, Hms, u128) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    (
        civil_from_days(days),
        (rem / 3600, (rem % 3600) / 60, rem % 60),
        d.subsec_millis().into(),
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> Ymd {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn versions_are_recognised() {
        let v = new_version("0123456789abcdef");
        assert!(is_version(&v), "{v}");
        assert!(v.ends_with("-0123456789ab"));
        assert!(!is_version("digits"));
        assert!(!is_version("20261127T033150.123Z-"));
    }

    #[test]
    fn names() {
        assert!(check_name("digits-v2.1_x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
