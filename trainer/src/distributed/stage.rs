//! Staged training rows: the coordinator's prepared (split, standardised) rows as compact
//! little-endian binary objects in the S3 store, and the worker's checked reader.
//!
//! Layout of one object (all little-endian):
//!
//! ```text
//! magic    8 bytes  "TRNROWS\0"
//! version  u32      1
//! classes  u32      number of classes
//! rows     u64      rows in this object
//! cols     u64      features per row
//! first    u64      index of the object's first row among all training rows
//! n        u64      all training rows of the fit
//! labels   rows x u32
//! values   rows x cols x f64, row-major
//! ```
//!
//! Objects live at `<store>/_staging/<data sha256, 16 hex>/<object sha256, 32 hex>.bin`:
//! content-addressed,
//! so a second fit on the same data, split and seed finds them and uploads nothing, and a
//! key never holds two different contents. The event carries the object's sha256; the
//! worker refuses bytes that do not hash to it.

use ndarray::{Array2, ArrayView2};
use sha2::{Digest, Sha256};

use crate::distributed::task::StagedRef;
use crate::error::TrainError;
use crate::solver;
use crate::train::Prepared;

/// First bytes of every staged object.
pub const MAGIC: &[u8; 8] = b"TRNROWS\0";
/// Format version of staged objects.
pub const STAGE_VERSION: u32 = 1;
/// Header bytes.
pub const HEADER: usize = 8 + 4 + 4 + 8 * 4;
/// Prefix of staged objects under the store root.
pub const STAGING: &str = "_staging";

/// Rows read back from a staged object.
#[derive(Debug, Clone)]
pub struct StagedRows {
    /// The rows, standardised.
    pub x: Array2<f64>,
    /// Class index of each row.
    pub y: Vec<usize>,
    /// Number of classes.
    pub n_classes: usize,
    /// Index of the first row among all training rows.
    pub first: usize,
    /// All training rows of the fit.
    pub n: usize,
}

/// Encode rows `first..first + x.nrows()` of a fit over `n` rows.
pub fn encode(
    x: ArrayView2<'_, f64>,
    y: &[usize],
    n_classes: usize,
    first: usize,
    n: usize,
) -> Vec<u8> {
    let (rows, cols) = x.dim();
    let mut out = Vec::with_capacity(HEADER + rows * 4 + rows * cols * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&STAGE_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(n_classes).unwrap_or(u32::MAX).to_le_bytes());
    for v in [rows, cols, first, n] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    for &c in y {
        out.extend_from_slice(&u32::try_from(c).unwrap_or(u32::MAX).to_le_bytes());
    }
    for v in x.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// Check `bytes` (read from `uri`) against `sha256` and decode them. Every size is
/// checked against the object's length before anything is allocated.
pub fn decode(bytes: &[u8], uri: &str, sha256: &str) -> Result<StagedRows, TrainError> {
    let got = sha256_hex(bytes);
    if got != sha256 {
        return Err(TrainError::data(
            uri,
            format!(
                "staged data changed: sha256 is {got}, the task expects {sha256}; \
                 refusing it (delete the object to stage the data again)"
            ),
        ));
    }
    let bad = |m: String| TrainError::data(uri, m);
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad(
            "not a staged rows object (bad magic or shorter than its header)".into(),
        ));
    }
    let version = u32_at(bytes, 8);
    if version != STAGE_VERSION {
        return Err(bad(format!(
            "staged rows format version {version}; this build reads version {STAGE_VERSION}"
        )));
    }
    let n_classes = u32_at(bytes, 12) as usize;
    let to_usize = |v: u64, what: &str| {
        usize::try_from(v).map_err(|_| bad(format!("header field {what} {v} is too large")))
    };
    let rows = to_usize(u64_at(bytes, 16), "rows")?;
    let cols = to_usize(u64_at(bytes, 24), "cols")?;
    let first = to_usize(u64_at(bytes, 32), "first")?;
    let n = to_usize(u64_at(bytes, 40), "n")?;
    let expected = rows
        .checked_mul(cols)
        .and_then(|v| v.checked_mul(8))
        .and_then(|v| v.checked_add(rows.checked_mul(4)?))
        .and_then(|v| v.checked_add(HEADER));
    if expected != Some(bytes.len()) {
        return Err(bad(format!(
            "header says {rows} rows x {cols} columns, which does not match the object's {} bytes",
            bytes.len()
        )));
    }
    if n_classes < 2 || first.checked_add(rows).is_none_or(|end| end > n) {
        return Err(bad(format!(
            "header fields out of range: classes {n_classes}, rows {first}..{}, of {n}",
            first.saturating_add(rows)
        )));
    }
    let mut y = Vec::with_capacity(rows);
    for i in 0..rows {
        let c = u32_at(bytes, HEADER + 4 * i) as usize;
        if c >= n_classes {
            return Err(bad(format!(
                "row {}: class index {c} with {n_classes} classes",
                first + i
            )));
        }
        y.push(c);
    }
    let at = HEADER + 4 * rows;
    let values: Vec<f64> = bytes[at..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let x = crate::data::aligned_matrix(values, rows, cols);
    Ok(StagedRows {
        x,
        y,
        n_classes,
        first,
        n,
    })
}

/// The directory (under the store root, with a trailing `/`) of the objects staged for data
/// whose file hashes to `data_sha256`.
pub fn staging_dir(data_sha256: &str) -> String {
    format!(
        "{STAGING}/{}/",
        data_sha256.get(..16).unwrap_or(data_sha256)
    )
}

/// What was staged for a fit.
#[derive(Debug, Clone)]
pub struct Staged {
    /// All training rows (CV tasks).
    pub whole: StagedRef,
    /// One object per shard (gradient tasks), in shard order; empty without shards.
    pub shards: Vec<StagedRef>,
    /// Objects uploaded now (the others were there already).
    pub uploaded: usize,
    /// Bytes uploaded now.
    pub uploaded_bytes: usize,
}

/// Stage `p`'s training rows in `store` (the S3 store root): the whole set, and `shards`
/// shard objects aligned with the pass's blocks (none for 0). Objects already present are
/// not uploaded again; the others go up as multipart uploads (parts of 8 MiB, each with its
/// SHA-256), visible only once complete.
pub fn stage(p: &Prepared, store: &storage::S3Store, shards: usize) -> Result<Staged, TrainError> {
    use model::store::ObjectStore;
    use std::io::Write;
    let n = p.n_train;
    let blocks = solver::blocks(n);
    if shards > blocks {
        return Err(TrainError::param(
            "--shards",
            format!(
                "{shards} shards for {n} training rows, which make {blocks} blocks of the \
                 fixed summation order; use at most {blocks} shards"
            ),
        ));
    }
    // Names carry 64 and 128 bits of the hashes: short keys (s3s-fs's multipart files are
    // named after them), and the event still carries, and the worker still checks, the
    // full sha256.
    let dir = staging_dir(&p.data_sha256);
    let present = store.list(&dir)?;
    let mut staged = Staged {
        whole: StagedRef {
            uri: String::new(),
            sha256: String::new(),
        },
        shards: Vec::with_capacity(shards),
        uploaded: 0,
        uploaded_bytes: 0,
    };
    let n_classes = p.classes.len();
    let x = p.train_x();
    let y = &p.y[..n];
    let mut put = |bytes: Vec<u8>| -> Result<StagedRef, TrainError> {
        let sha = sha256_hex(&bytes);
        let key = format!("{dir}{}.bin", sha.get(..32).unwrap_or(&sha));
        if !present.contains(&key) {
            // Same key, same bytes: a concurrent fit writing it too is harmless.
            let mut w = store.create_writer(&key, storage::DEFAULT_PART_SIZE);
            w.write_all(&bytes)
                .map_err(|e| TrainError::io("upload", store.describe(&key), e))?;
            w.finish()?;
            staged.uploaded += 1;
            staged.uploaded_bytes += bytes.len();
        }
        Ok(StagedRef {
            uri: store.describe(&key),
            sha256: sha,
        })
    };
    let whole = put(encode(x, y, n_classes, 0, n))?;
    let mut refs = Vec::with_capacity(shards);
    for s in 0..shards {
        let b = solver::shard_blocks(s, shards, n);
        let r = solver::block_rows(b.start, b.end, n);
        let xs = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(r.start..r.end));
        refs.push(put(encode(xs, &y[r.clone()], n_classes, r.start, n))?);
    }
    staged.whole = whole;
    staged.shards = refs;
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_refusals() {
        let x = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 / 7.0 - 1.0);
        let y = vec![0, 1, 2, 1, 0];
        let bytes = encode(x.view(), &y, 3, 10, 20);
        let sha = sha256_hex(&bytes);
        let r = decode(&bytes, "s3://b/k", &sha).expect("decode");
        assert_eq!(r.x, x);
        assert_eq!((r.y, r.n_classes, r.first, r.n), (y, 3, 10, 20));
        let e = decode(&bytes, "s3://b/k", "00")
            .expect_err("sha")
            .to_string();
        assert!(
            e.contains("s3://b/k") && e.contains("staged data changed"),
            "{e}"
        );
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 8);
        let e = decode(&cut, "k", &sha256_hex(&cut))
            .expect_err("short")
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        let mut huge = bytes;
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = decode(&huge, "k", &sha256_hex(&huge))
            .expect_err("huge")
            .to_string();
        assert!(
            e.contains("does not match") || e.contains("too large"),
            "{e}"
        );
    }
}
