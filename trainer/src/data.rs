//! Data: a strict CSV reader that parses straight into one contiguous `f64` matrix, the
//! seeded stratified split and folds, the standard scaler, and the synthetic generator.
//!
//! The reader is strict on purpose: every cell must be a finite number (except the label),
//! every row must have the header's width, and each error names file, line and column.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

use model::store::Location;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Slice};
use sha2::{Digest, Sha256};

use crate::error::TrainError;

/// A labelled data set: raw features in one row-major matrix and a class index per row.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Raw (unscaled) features, one row per example, in file order.
    pub x: Array2<f64>,
    /// Class index of each row, into [`Dataset::classes`].
    pub y: Vec<usize>,
    /// Class labels, sorted numerically when all are integers, else lexicographically.
    pub classes: Vec<String>,
    /// Feature column names, in file order (label column removed).
    pub feature_names: Vec<String>,
    /// Where the data came from, for messages and the artifact.
    pub source: String,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

impl Dataset {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.x.nrows()
    }

    /// Number of rows of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for &k in &self.y {
            c[k] += 1;
        }
        c
    }
}

/// Read a CSV data set from a local path or `s3://` URI. Local files are streamed (never
/// held as text in memory); S3 objects are read whole through `storage::read_location`.
pub fn load(uri: &str, label: &str) -> Result<Dataset, TrainError> {
    let loc = Location::parse(uri)?;
    match &loc {
        Location::Local(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    TrainError::data(uri, "no such file")
                } else {
                    TrainError::io("open", uri, e)
                }
            })?;
            let mut hashing = HashingReader {
                inner: file,
                hasher: Sha256::new(),
            };
            let parsed = parse_csv(BufReader::with_capacity(1 << 20, &mut hashing), uri, label)?;
            let sha256 = model::artifact::hex(&hashing.hasher.finalize());
            Ok(parsed.into_dataset(uri, sha256))
        }
        Location::S3 { .. } => {
            let bytes = storage::read_location(&loc)?;
            let sha256 = model::artifact::sha256_hex(&bytes);
            let parsed = parse_csv(bytes.as_slice(), uri, label)?;
            Ok(parsed.into_dataset(uri, sha256))
        }
    }
}

/// Parse CSV text (from any reader) named `source` in messages.
pub fn parse(reader: impl Read, source: &str, label: &str) -> Result<Dataset, TrainError> {
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let parsed = parse_csv(BufReader::new(&mut hashing), source, label)?;
    let sha256 = model::artifact::hex(&hashing.hasher.finalize());
    Ok(parsed.into_dataset(source, sha256))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Parsed {
    values: Vec<f64>,
    n_features: usize,
    raw_labels: Vec<usize>,
    label_names: Vec<String>,
    feature_names: Vec<String>,
}

impl Parsed {
    fn into_dataset(self, source: &str, sha256: String) -> Dataset {
        let (classes, remap) = order_classes(&self.label_names);
        let y = self.raw_labels.iter().map(|&r| remap[r]).collect();
        let n_rows = self.values.len() / self.n_features.max(1);
        let x = aligned_matrix(self.values, n_rows, self.n_features);
        Dataset {
            x,
            y,
            classes,
            feature_names: self.feature_names,
            source: source.to_string(),
            sha256,
        }
    }
}

/// Rows of vector-aligned loads start on a cache line: an evaluation over a matrix at an
/// address 16 bytes past one takes a fifth longer (every other 32-byte load is split).
const MATRIX_ALIGN: usize = 64;

/// `values` (`n_rows * n_features`, row-major) as a matrix whose first element sits on a
/// [`MATRIX_ALIGN`]-byte boundary. The values are moved within their own allocation (no
/// second copy of the matrix is ever held); the unused head of the buffer is at most 56
/// bytes. A length that does not match gives an empty matrix (callers pass `n_rows` from
/// the length).
pub fn aligned_matrix(mut values: Vec<f64>, n_rows: usize, n_features: usize) -> Array2<f64> {
    let len = n_rows * n_features;
    if values.len() != len {
        return Array2::zeros((0, n_features));
    }
    let lanes = MATRIX_ALIGN / std::mem::size_of::<f64>();
    values.resize(len + lanes - 1, 0.0);
    values.shrink_to_fit();
    let off = crate::kernel::aligned_start(&values, MATRIX_ALIGN);
    values.copy_within(0..len, off);
    ndarray::Array1::from_vec(values)
        .slice_axis_move(Axis(0), Slice::from(off..off + len))
        .into_shape_with_order((n_rows, n_features))
        .unwrap_or_else(|_| Array2::zeros((0, n_features)))
}

/// Sort class names (numerically if all are integers, else lexicographically) and return
/// them with a map from first-seen index to sorted index.
fn order_classes(names: &[String]) -> (Vec<String>, Vec<usize>) {
    let ints: Option<Vec<i128>> = names.iter().map(|s| s.parse::<i128>().ok()).collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    match ints {
        Some(v) => order.sort_by(|&a, &b| v[a].cmp(&v[b]).then_with(|| names[a].cmp(&names[b]))),
        None => order.sort_by(|&a, &b| names[a].cmp(&names[b])),
    }
    let mut remap = vec![0; names.len()];
    for (sorted, &first_seen) in order.iter().enumerate() {
        remap[first_seen] = sorted;
    }
    (order.iter().map(|&i| names[i].clone()).collect(), remap)
}

fn strip_eol(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

fn parse_csv(mut r: impl BufRead, src: &str, label: &str) -> Result<Parsed, TrainError> {
    let read_err = |e: std::io::Error| TrainError::io("read", src, e);
    let mut line = Vec::with_capacity(4096);
    if r.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
        return Err(TrainError::data(
            src,
            "empty file (expected a header line naming the columns)",
        ));
    }
    strip_eol(&mut line);
    let header = std::str::from_utf8(&line)
        .map_err(|_| TrainError::at_line(src, 1, "header is not valid UTF-8"))?;
    if header.trim().is_empty() {
        return Err(TrainError::at_line(
            src,
            1,
            "no header: the first line is empty (expected column names)",
        ));
    }
    let names: Vec<String> = header
        .split(',')
        .map(|s| unquote(s.trim()).to_string())
        .collect();
    if names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(TrainError::at_line(
            src,
            1,
            "no header: the first line holds only numbers; the first line must name the columns",
        ));
    }
    let mut seen = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(TrainError::at_cell(
                src,
                1,
                i + 1,
                "header",
                "empty column name",
            ));
        }
        if let Some(first) = seen.insert(n.as_str(), i) {
            return Err(TrainError::at_cell(
                src,
                1,
                i + 1,
                n,
                format!("duplicate column name (also column {})", first + 1),
            ));
        }
    }
    let label_col = names.iter().position(|n| n == label).ok_or_else(|| {
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        let more = if names.len() > 8 { ", ..." } else { "" };
        TrainError::at_line(
            src,
            1,
            format!(
                "no label column `{label}` in the header (columns: {}{more}); pick one with --label",
                shown.join(", ")
            ),
        )
    })?;
    let ncols = names.len();
    if ncols < 2 {
        return Err(TrainError::at_line(
            src,
            1,
            "no feature columns besides the label",
        ));
    }
    let n_features = ncols - 1;
    let feature_names: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != label_col)
        .map(|(_, n)| n.clone())
        .collect();

    let mut values: Vec<f64> = Vec::new();
    let mut raw_labels: Vec<usize> = Vec::new();
    let mut label_ids: HashMap<String, usize> = HashMap::new();
    let mut label_names: Vec<String> = Vec::new();
    let mut line_no = 1;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            break;
        }
        line_no += 1;
        strip_eol(&mut line);
        if line.is_empty() {
            continue; // blank lines (e.g. at the end) carry nothing
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| TrainError::at_line(src, line_no, "not valid UTF-8"))?;
        let found = text.bytes().filter(|b| *b == b',').count() + 1;
        if found != ncols {
            return Err(TrainError::at_line(
                src,
                line_no,
                format!("ragged row: expected {ncols} fields as in the header, found {found}"),
            ));
        }
        for (col, field) in text.split(',').enumerate() {
            let field = field.trim();
            if col == label_col {
                let l = unquote(field);
                if l.is_empty() {
                    return Err(TrainError::at_cell(
                        src,
                        line_no,
                        col + 1,
                        &names[col],
                        "missing label",
                    ));
                }
                let id = match label_ids.get(l) {
                    Some(&id) => id,
                    None => {
                        let id = label_names.len();
                        label_ids.insert(l.to_string(), id);
                        label_names.push(l.to_string());
                        id
                    }
                };
                raw_labels.push(id);
            } else {
                if field.is_empty() {
                    return Err(TrainError::at_cell(
                        src,
                        line_no,
                        col + 1,
                        &names[col],
                        "missing value",
                    ));
                }
                match field.parse::<f64>() {
                    Ok(v) if v.is_finite() => values.push(v),
                    _ => {
                        return Err(TrainError::at_cell(
                            src,
                            line_no,
                            col + 1,
                            &names[col],
                            format!("non-numeric value {field:?} (expected a finite number)"),
                        ));
                    }
                }
            }
        }
    }
    if raw_labels.is_empty() {
        return Err(TrainError::data(src, "no data rows after the header"));
    }
    Ok(Parsed {
        values,
        n_features,
        raw_labels,
        label_names,
        feature_names,
    })
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}

/// Check that the data can be classified: at least two classes.
pub fn check_classes(d: &Dataset, label: &str) -> Result<(), TrainError> {
    if d.classes.len() < 2 {
        return Err(TrainError::data(
            &d.source,
            format!(
                "a single class ({:?}) in label column `{label}`; need at least 2 classes",
                d.classes.first().map_or("", String::as_str)
            ),
        ));
    }
    Ok(())
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same stream on
/// every platform, which is all the split, folds and generator need.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        // 53 random bits; the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let v = (self.next_u64() >> 11) as f64;
        v * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n > 0), by rejection so it has no modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                // v % n < n <= usize::MAX
                return usize::try_from(v % n).unwrap_or(0);
            }
        }
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Row indices of a stratified train / test split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows, in file order.
    pub train: Vec<usize>,
    /// Holdout rows, in file order.
    pub test: Vec<usize>,
}

/// A seeded stratified split. The holdout has `ceil(test_fraction * n)` rows, as
/// scikit-learn's `train_test_split` and `StratifiedShuffleSplit` count them (360 of
/// digits' 1,797 rows at 0.2), shared out over the classes in proportion to their sizes
/// ([`test_counts`]); each class's holdout rows are the first of its seeded shuffle. Both
/// lists are in file order: the trainer orders the training rows with [`training_order`],
/// as it does the rows of a training file, so `trainer split` and then `trainer fit
/// --test-data` fit the same model as `trainer fit` on the whole file.
pub fn stratified_split(y: &[usize], n_classes: usize, test_fraction: f64, seed: u64) -> Split {
    let mut rng = Rng::new(seed);
    let mut by_class = vec![Vec::new(); n_classes];
    for (i, &c) in y.iter().enumerate() {
        by_class[c].push(i);
    }
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let n_test = test_counts(&sizes, test_fraction);
    let mut train = Vec::with_capacity(y.len());
    let mut test = Vec::new();
    for (rows, &n_test) in by_class.iter_mut().zip(&n_test) {
        rng.shuffle(rows);
        test.extend_from_slice(&rows[..n_test]);
        train.extend_from_slice(&rows[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// The order the trainer takes training `rows` (given in file order) in: a seeded shuffle,
/// so that folds and row chunks mix the classes.
pub fn training_order(mut rows: Vec<usize>, seed: u64) -> Vec<usize> {
    Rng::new(seed).shuffle(&mut rows);
    rows
}

/// Holdout rows per class for classes of `sizes` rows: `ceil(test_fraction * n)` in all,
/// each class its proportional share rounded down, and the rows left over one each to the
/// classes with the largest remainders (ties to the lower class index). A class always keeps
/// at least one training row; what it cannot take goes to the next class in that order.
pub fn test_counts(sizes: &[usize], test_fraction: f64) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    // The epsilon keeps an exact product (0.2 x 1000) from rounding up past itself.
    let total = ((test_fraction * n as f64 - 1e-9).ceil().max(0.0) as usize)
        .min(n.saturating_sub(sizes.iter().filter(|&&s| s > 0).count()));
    let cap = |s: usize| s.saturating_sub(1);
    // Exact shares in integers (u128: total x size cannot overflow): class c's share is
    // total x size / n = floor + remainder / n.
    let share = |s: usize| {
        let p = total as u128 * s as u128;
        let n = n as u128;
        (usize::try_from(p / n).unwrap_or(usize::MAX), p % n)
    };
    let mut counts: Vec<usize> = sizes.iter().map(|&s| share(s).0.min(cap(s))).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(share(sizes[c]).1), c));
    let mut left = total - counts.iter().sum::<usize>();
    while left > 0 {
        let before = left;
        for &c in &order {
            if left > 0 && counts[c] < cap(sizes[c]) {
                counts[c] += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
    counts
}

/// Stratified k folds over positions `0..y.len()` (rows already shuffled): the j-th row of
/// each class goes to fold `j % k`. Returns the validation positions of each fold, sorted.
pub fn stratified_folds(y: &[usize], n_classes: usize, k: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![0usize; n_classes];
    let mut folds = vec![Vec::new(); k];
    for (pos, &c) in y.iter().enumerate() {
        folds[seen[c] % k].push(pos);
        seen[c] += 1;
    }
    folds
}

/// Reorder the rows of `x` in place so that row `i` becomes old row `perm[i]`, using one
/// row of scratch space (no copy of the matrix). `perm` must be a permutation.
pub fn permute_rows(x: &mut Array2<f64>, perm: &[usize]) {
    let f = x.ncols();
    let n = x.nrows();
    let Some(flat) = x.as_slice_mut() else {
        return;
    };
    let mut done = vec![false; n];
    let mut tmp = vec![0.0; f];
    for start in 0..n {
        if done[start] || perm[start] == start {
            done[start] = true;
            continue;
        }
        tmp.copy_from_slice(&flat[start * f..(start + 1) * f]);
        let mut j = start;
        loop {
            done[j] = true;
            let k = perm[j];
            if k == start {
                flat[j * f..(j + 1) * f].copy_from_slice(&tmp);
                break;
            }
            flat.copy_within(k * f..(k + 1) * f, j * f);
            j = k;
        }
    }
}

/// Fit a standard scaler (mean, population std; 1.0 where the std is zero) on `x`'s rows,
/// accumulating in row order so the result is the same on every run. `Err(j)`: column `j`'s
/// mean or variance overflows f64.
pub fn fit_scaler(x: ArrayView2<'_, f64>) -> Result<model::Scaler, usize> {
    let f = x.ncols();
    let n = x.nrows().max(1);
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let mut mean = vec![0.0; f];
    for row in x.axis_iter(Axis(0)) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= nf;
    }
    let mut var = vec![0.0; f];
    for row in x.axis_iter(Axis(0)) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            let d = v - m;
            *s += d * d;
        }
    }
    // Finite values can still overflow the sums (values near 1e154 and beyond); such a
    // column cannot be standardised in f64 and is refused, not fitted on infinities.
    if let Some(j) = (0..f).find(|&j| !(mean[j].is_finite() && var[j].is_finite())) {
        return Err(j);
    }
    let scale = var
        .iter()
        .map(|s| {
            let sd = (s / nf).sqrt();
            if sd > 0.0 { sd } else { 1.0 }
        })
        .collect();
    Ok(model::Scaler { mean, scale })
}

/// Standardise `x` in place with `scaler`, exactly as `model::Model` does at predict time.
pub fn apply_scaler(mut x: ArrayViewMut2<'_, f64>, scaler: &model::Scaler) {
    for mut row in x.axis_iter_mut(Axis(0)) {
        for ((v, m), s) in row.iter_mut().zip(&scaler.mean).zip(&scaler.scale) {
            *v = (*v - m) / s;
        }
    }
}

/// Parameters of the synthetic generator.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    /// Rows to write.
    pub rows: usize,
    /// Feature columns.
    pub features: usize,
    /// Classes (labels `0..classes`).
    pub classes: usize,
    /// Seed of the generator.
    pub seed: u64,
}

/// Write a synthetic classification data set in the spirit of scikit-learn's
/// `make_classification`: each class is a Gaussian blob around a random vertex of a
/// hypercube in an informative subspace; a quarter of the rest are linear combinations of
/// the informative features, the others pure noise; 1% of labels are flipped at random.
pub fn generate(spec: &GenerateSpec, mut out: impl Write) -> std::io::Result<()> {
    let f = spec.features;
    let k = spec.classes;
    let mut rng = Rng::new(spec.seed);
    // Enough informative dimensions for every class to get its own hypercube vertex.
    let bits = usize::BITS as usize - (k.max(2) - 1).leading_zeros() as usize;
    let informative = (f / 2).max(bits).max(1).min(f);
    let redundant = (f - informative) / 2;
    let class_sep = 1.5;
    let centroids: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            (0..informative)
                .map(|j| {
                    let bit = if j < bits {
                        (c >> j) & 1 == 1
                    } else {
                        rng.next_u64() & 1 == 1
                    };
                    if bit { class_sep } else { -class_sep }
                })
                .collect()
        })
        .collect();
    let mix: Vec<Vec<f64>> = (0..redundant)
        .map(|_| {
            (0..informative)
                .map(|_| rng.uniform() * 2.0 - 1.0)
                .collect()
        })
        .collect();
    let header: Vec<String> = (0..f).map(|i| format!("f{i}")).collect();
    writeln!(out, "{},label", header.join(","))?;
    let mut row = vec![0.0; f];
    let mut line = String::with_capacity(f * 10);
    for i in 0..spec.rows {
        let class = i % k;
        for j in 0..informative {
            row[j] = centroids[class][j] + rng.normal();
        }
        for (r, m) in mix.iter().enumerate() {
            row[informative + r] = m.iter().zip(&row[..informative]).map(|(a, b)| a * b).sum();
        }
        for v in &mut row[informative + redundant..] {
            *v = rng.normal();
        }
        let label = if rng.uniform() < 0.01 {
            rng.below(k)
        } else {
            class
        };
        line.clear();
        for v in &row {
            use std::fmt::Write as _;
            let _ = write!(line, "{v:.4},");
        }
        line.push_str(&label.to_string());
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Dataset, TrainError> {
        parse(s.as_bytes(), "t.csv", "label")
    }

    #[test]
    fn parses_and_orders_numeric_classes() {
        let d = parse_str("a,label,b\n1,10,2\n3,9,4\r\n5,10,6\n\n").expect("parse");
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.classes, ["9", "10"]); // numeric, not lexicographic
        assert_eq!(d.y, [1, 0, 1]);
        assert_eq!(d.x.row(1).to_vec(), [3.0, 4.0]);
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn string_classes_sort_lexicographically() {
        let d = parse_str("x,label\n1,dog\n2,cat\n3,ant\n").expect("parse");
        assert_eq!(d.classes, ["ant", "cat", "dog"]);
        assert_eq!(d.y, [2, 1, 0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_str("a,b,label\n1,2,0\n1,x,1\n")
            .expect_err("bad")
            .to_string();
        assert!(
            e.contains("line 3, column 2 (b)") && e.contains("non-numeric"),
            "{e}"
        );
        let e = parse_str("a,b,label\n1,,0\n").expect_err("bad").to_string();
        assert!(
            e.contains("line 2, column 2 (b)") && e.contains("missing value"),
            "{e}"
        );
        let e = parse_str("a,b,label\n1,2\n").expect_err("bad").to_string();
        assert!(e.contains("line 2") && e.contains("ragged"), "{e}");
        let e = parse_str("a,b,label\n1,NaN,0\n")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("column 2"), "{e}");
        let e = parse_str("").expect_err("bad").to_string();
        assert!(e.contains("empty file"), "{e}");
        let e = parse_str("1,2,3\n4,5,6\n").expect_err("bad").to_string();
        assert!(e.contains("no header"), "{e}");
        let e = parse_str("a,b,c\n1,2,3\n").expect_err("bad").to_string();
        assert!(e.contains("no label column `label`"), "{e}");
        let e = parse_str("a,label\n").expect_err("bad").to_string();
        assert!(e.contains("no data rows"), "{e}");
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let y: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let s = stratified_split(&y, 2, 0.2, 42);
        assert_eq!(s.test.len(), 20);
        assert_eq!(s.test.iter().filter(|&&i| y[i] == 1).count(), 5);
        assert_eq!(s, stratified_split(&y, 2, 0.2, 42));
        assert_ne!(s, stratified_split(&y, 2, 0.2, 43));
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn holdout_size_is_counted_as_scikit_learn_counts_it() {
        // digits: 1,797 rows, 360 held out at 0.2 (ceil(359.4)); per-class rounding gave 359.
        let digits = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
        let c = test_counts(&digits, 0.2);
        assert_eq!(c.iter().sum::<usize>(), 360);
        // Shares 35.66, 36.46, 35.46, 36.66, 36.26, 36.46, 36.26, 35.86, 34.86, 36.06: the
        // floors plus one each for the five largest remainders (the tie at .46 to class 1).
        assert_eq!(c, [36, 37, 35, 37, 36, 36, 36, 36, 35, 36]);
        // An exact product is not rounded up.
        assert_eq!(test_counts(&[500, 500], 0.2), [100, 100]);
        // Every class keeps a training row; its leftover goes to another class.
        assert_eq!(test_counts(&[1, 9], 0.5), [0, 5]);
        assert_eq!(test_counts(&[2, 2], 0.9), [1, 1]);
        assert_eq!(test_counts(&[0, 3], 0.5), [0, 2]);
        assert_eq!(test_counts(&[], 0.5), Vec::<usize>::new());
    }

    #[test]
    fn folds_cover_every_position_once() {
        let y = [0, 1, 0, 1, 0, 1, 0, 1, 0, 0];
        let folds = stratified_folds(&y, 2, 3);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(folds.iter().all(|f| f.iter().any(|&p| y[p] == 1)));
    }

    #[test]
    fn permute_rows_in_place() {
        let mut x = Array2::from_shape_fn((5, 2), |(i, j)| (i * 10 + j) as f64);
        let perm = [3, 0, 4, 1, 2];
        permute_rows(&mut x, &perm);
        for (i, &p) in perm.iter().enumerate() {
            assert_eq!(x.row(i).to_vec(), [(p * 10) as f64, (p * 10 + 1) as f64]);
        }
    }

    #[test]
    fn aligned_matrix_keeps_values_and_starts_on_a_cache_line() {
        for (n, f) in [(0, 3), (1, 1), (5, 2), (37, 13), (300, 64)] {
            let values: Vec<f64> = (0..n * f).map(|i| i as f64 * 0.5).collect();
            let x = aligned_matrix(values.clone(), n, f);
            assert_eq!(x.dim(), (n, f));
            assert_eq!(x.as_slice(), Some(values.as_slice()), "{n}x{f}");
            if n * f > 0 {
                assert_eq!(x.as_ptr().addr() % MATRIX_ALIGN, 0, "{n}x{f}");
            }
        }
        // A length that does not match the shape is an empty matrix, not a panic.
        assert_eq!(aligned_matrix(vec![1.0; 5], 2, 3).dim(), (0, 3));
    }

    #[test]
    fn scaler_matches_population_std() {
        let x = ndarray::array![[1.0, 5.0], [3.0, 5.0]];
        let s = fit_scaler(x.view()).expect("finite");
        assert_eq!(s.mean, [2.0, 5.0]);
        assert_eq!(s.scale, [1.0, 1.0]); // std 1, and 1.0 for the constant column
        // Finite values whose sums overflow: the column is named, not standardised.
        let x = ndarray::array![[1.0, 1e308], [2.0, 1.7e308], [3.0, -1e308]];
        assert_eq!(fit_scaler(x.view()), Err(1));
        let x = ndarray::array![[1.0, 1e200], [2.0, -1e200]];
        assert_eq!(fit_scaler(x.view()), Err(1));
    }

    #[test]
    fn generator_is_seeded() {
        let spec = GenerateSpec {
            rows: 50,
            features: 6,
            classes: 3,
            seed: 7,
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        generate(&spec, &mut a).expect("write");
        generate(&spec, &mut b).expect("write");
        assert_eq!(a, b);
        let d = parse(a.as_slice(), "gen", "label").expect("parse");
        assert_eq!(d.x.dim(), (50, 6));
        assert_eq!(d.classes, ["0", "1", "2"]);
    }
}
