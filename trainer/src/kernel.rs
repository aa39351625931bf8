//! The dense arithmetic of one objective evaluation over a chunk of rows: the scores
//! `S = X Wᵀ + b`, the softmax (or sigmoid) loss with `S` turned in place into
//! `D = ∂loss/∂S`, and the gradient `Xᵀ D`.
//!
//! Shaped for logistic regression: few classes, tens to hundreds of features, many rows.
//! The class axis is padded to a multiple of [`LANES`] so that four classes fill one
//! 256-bit vector. Every sum runs in one fixed order (features in order for a score, rows
//! in order for a gradient entry) with fused multiply-adds, so the bits of the result do not
//! depend on how rows are grouped, nor on the CPU: with AVX2 + FMA the compiler turns the
//! four-lane loops into vector instructions; without, `f64::mul_add` is the same correctly
//! rounded operation, done by the C library.
//!
//! The run-time choice of instruction set is pulp's (`Arch::dispatch`), so this crate needs
//! no `unsafe` of its own.

/// f64 lanes in one 256-bit vector: the padding unit of the class axis.
pub const LANES: usize = 4;

type Lanes = [f64; LANES];

/// Shapes and parameters of one evaluation, borrowed from the parameter vector.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// Coefficient rows: 1 for a binary model (sigmoid), else the number of classes.
    pub k: usize,
    /// `k` rounded up to a multiple of [`LANES`]: the row stride of the scores.
    pub kp: usize,
    /// Features.
    pub f: usize,
    /// Coefficients: `k` rows of `f`.
    pub w: &'a [f64],
    /// Intercepts (`k`).
    pub b: &'a [f64],
}

impl<'a> Weights<'a> {
    /// Split `w` (`k` coefficient rows of `f`, then `k` intercepts) for the kernel.
    pub fn new(w: &'a [f64], k: usize, f: usize) -> Self {
        let (w, b) = w.split_at(k * f);
        Self {
            k,
            kp: k.div_ceil(LANES) * LANES,
            f,
            w,
            b: &b[..k],
        }
    }
}

/// What one chunk adds to the objective: the summed loss and its gradient in the
/// parameter layout (`k` rows of `f`, then `k` intercept entries).
#[derive(Debug, Clone)]
pub struct ChunkSums {
    /// Sum of the rows' losses (no penalty, not averaged).
    pub loss: f64,
    /// `Dᵀ X` as `k x f`, then the column sums of `D` (`k`).
    pub grad: Vec<f64>,
}

/// Loss and gradient sums of the rows `rows` (each a slice of `f` standardised features)
/// with classes `y`. pulp runs the kernel inside a function compiled for the best
/// instruction set the CPU has (x86-64-v3: AVX2 + FMA), checked at run time; the result is
/// the same bits either way.
pub fn chunk(rows: &[&[f64]], y: &[usize], w: &Weights<'_>) -> ChunkSums {
    pulp::Arch::new().dispatch(Chunk { rows, y, w })
}

/// The kernel as pulp's unit of work. `with_simd` must be `#[inline(always)]` (and so must
/// everything it calls) for the code to be compiled with the chosen target features; a
/// closure would not be.
struct Chunk<'a> {
    rows: &'a [&'a [f64]],
    y: &'a [usize],
    w: &'a Weights<'a>,
}

impl pulp::WithSimd for Chunk<'_> {
    type Output = ChunkSums;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> ChunkSums {
        chunk_portable(self.rows, self.y, self.w)
    }
}

#[inline(always)]
fn chunk_portable(rows: &[&[f64]], y: &[usize], w: &Weights<'_>) -> ChunkSums {
    let (kp, f) = (w.kp, w.f);
    let m = rows.len().min(y.len());
    let rows = &rows[..m];
    let mut s = vec![0.0; m * kp];
    scores(rows, w, &mut s);
    let loss = if w.k == 1 {
        sigmoid_loss(&mut s, y, kp)
    } else {
        softmax_loss(&mut s, y, w.k, kp)
    };
    let k = w.k;
    let mut grad = vec![0.0; k * f + k];
    let (gw, gb) = grad.split_at_mut(k * f);
    backward(rows, &s, k, kp, f, gw);
    for d in s.chunks_exact(kp) {
        for (g, v) in gb.iter_mut().zip(d) {
            *g += v;
        }
    }
    ChunkSums { loss, grad }
}

#[inline(always)]
fn load(v: &[f64], at: usize) -> Lanes {
    let mut out = [0.0; LANES];
    out.copy_from_slice(&v[at..at + LANES]);
    out
}

#[inline(always)]
fn fma(acc: &mut Lanes, x: f64, w: &Lanes) {
    for (a, wl) in acc.iter_mut().zip(w) {
        *a = x.mul_add(*wl, *a);
    }
}

/// `s[i][j] = b[j] + Σ_f x[i][f] · w[j][f]`. Lanes run over features (four partial sums
/// per score, added pairwise at the end, then the features left over in order); a tile of
/// four rows by two classes keeps eight independent accumulators in registers.
#[inline(always)]
fn scores(rows: &[&[f64]], w: &Weights<'_>, s: &mut [f64]) {
    let mut groups = rows.chunks_exact(SCORE_ROWS);
    let mut out = s.chunks_exact_mut(SCORE_ROWS * w.kp);
    for (g, o) in (&mut groups).zip(&mut out) {
        score_rows::<SCORE_ROWS>(g, w, o);
    }
    let tail = groups.remainder();
    let at = s.len() - tail.len() * w.kp;
    for (x, o) in tail.iter().zip(s[at..].chunks_exact_mut(w.kp)) {
        score_rows::<1>(std::slice::from_ref(x), w, o);
    }
}

const SCORE_ROWS: usize = 4;

#[inline(always)]
fn score_rows<const R: usize>(rows: &[&[f64]], w: &Weights<'_>, out: &mut [f64]) {
    let (k, kp, f) = (w.k, w.kp, w.f);
    let x: [&[f64]; R] = std::array::from_fn(|r| &rows[r][..f]);
    let mut j = 0;
    while j + 2 <= k {
        score_tile::<R, 2>(&x, w, j, kp, out);
        j += 2;
    }
    if j < k {
        score_tile::<R, 1>(&x, w, j, kp, out);
    }
}

#[inline(always)]
fn score_tile<const R: usize, const J: usize>(
    x: &[&[f64]; R],
    w: &Weights<'_>,
    j0: usize,
    kp: usize,
    out: &mut [f64],
) {
    let f = w.f;
    let n4 = f / LANES;
    let f4 = n4 * LANES;
    let wr: [&[f64]; J] = std::array::from_fn(|j| &w.w[(j0 + j) * f..(j0 + j + 1) * f]);
    // Equal-length views of whole lane groups: the compiler drops the bounds checks.
    let wv: [&[Lanes]; J] = std::array::from_fn(|j| &wr[j].as_chunks::<LANES>().0[..n4]);
    let xv: [&[Lanes]; R] = std::array::from_fn(|r| &x[r].as_chunks::<LANES>().0[..n4]);
    let mut acc = [[[0.0; LANES]; J]; R];
    for v in 0..n4 {
        let wl: [Lanes; J] = std::array::from_fn(|j| wv[j][v]);
        for (ar, xr) in acc.iter_mut().zip(&xv) {
            let xl = xr[v];
            for (a, wj) in ar.iter_mut().zip(&wl) {
                for ((al, xv), wv) in a.iter_mut().zip(&xl).zip(wj) {
                    *al = xv.mul_add(*wv, *al);
                }
            }
        }
    }
    for (r, (ar, xr)) in acc.iter().zip(x).enumerate() {
        for (jj, (a, wj)) in ar.iter().zip(&wr).enumerate() {
            let mut t = w.b[j0 + jj] + ((a[0] + a[1]) + (a[2] + a[3]));
            for fi in f4..f {
                t = xr[fi].mul_add(wj[fi], t);
            }
            out[r * kp + j0 + jj] = t;
        }
    }
}

/// `g[j][f] = Σ_i d[i][j] · x[i][f]`, rows in order, into `g` laid out as `k` rows of `f`.
/// Lanes run over features; a tile of two classes by sixteen features keeps eight
/// independent accumulators in registers for the whole chunk.
#[inline(always)]
fn backward(rows: &[&[f64]], d: &[f64], k: usize, kp: usize, f: usize, g: &mut [f64]) {
    let f16 = f / 16 * 16;
    let f4 = f / 4 * 4;
    let mut j = 0;
    while j < k {
        let two = j + 1 < k;
        let mut f0 = 0;
        while f0 < f16 {
            if two {
                grad_tile::<2, 4>(rows, d, kp, j, f0, f, g);
            } else {
                grad_tile::<1, 4>(rows, d, kp, j, f0, f, g);
            }
            f0 += 16;
        }
        while f0 < f4 {
            if two {
                grad_tile::<2, 1>(rows, d, kp, j, f0, f, g);
            } else {
                grad_tile::<1, 1>(rows, d, kp, j, f0, f, g);
            }
            f0 += 4;
        }
        for jj in j..(j + if two { 2 } else { 1 }) {
            for fi in f4..f {
                let mut acc = 0.0;
                for (x, di) in rows.iter().zip(d.chunks_exact(kp)) {
                    acc = di[jj].mul_add(x[fi], acc);
                }
                g[jj * f + fi] = acc;
            }
        }
        j += if two { 2 } else { 1 };
    }
}

#[inline(always)]
fn grad_tile<const J: usize, const V: usize>(
    rows: &[&[f64]],
    d: &[f64],
    kp: usize,
    j0: usize,
    f0: usize,
    f: usize,
    g: &mut [f64],
) {
    let mut acc = [[[0.0; LANES]; V]; J];
    for (x, di) in rows.iter().zip(d.chunks_exact(kp)) {
        let x = &x[f0..f0 + V * LANES];
        for (jj, aj) in acc.iter_mut().enumerate() {
            let dv = di[j0 + jj];
            for (v, a) in aj.iter_mut().enumerate() {
                fma(a, dv, &load(x, v * LANES));
            }
        }
    }
    for (jj, aj) in acc.iter().enumerate() {
        for (v, a) in aj.iter().enumerate() {
            let at = (j0 + jj) * f + f0 + v * LANES;
            g[at..at + LANES].copy_from_slice(a);
        }
    }
}

/// Softmax cross-entropy of each row of `s` (`k` real scores, then padding); turns `s`
/// into `p - onehot(y)` (padding 0). Returns the summed loss.
#[inline(always)]
fn softmax_loss(s: &mut [f64], y: &[usize], k: usize, kp: usize) -> f64 {
    let mut zy = Vec::with_capacity(y.len());
    for (row, &yi) in s.chunks_exact_mut(kp).zip(y) {
        let (real, pad) = row.split_at_mut(k);
        let max = real.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        for v in real.iter_mut() {
            *v -= max;
        }
        pad.fill(f64::NEG_INFINITY);
        zy.push(real[yi.min(k - 1)]);
    }
    // One flat, vectorisable pass of exp over every score (padding gives exactly 0).
    for v in s.iter_mut() {
        *v = exp(*v);
    }
    let mut loss = 0.0;
    for ((row, &yi), z) in s.chunks_exact_mut(kp).zip(y).zip(zy) {
        let sum: f64 = row[..k].iter().sum();
        loss += sum.ln() - z;
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        row[yi.min(k - 1)] -= 1.0;
    }
    loss
}

/// Logistic loss of the first score of each row of `s` (class 1 positive); turns it into
/// `sigmoid(t) - y`. Returns the summed loss.
#[inline(always)]
fn sigmoid_loss(s: &mut [f64], y: &[usize], kp: usize) -> f64 {
    let mut loss = 0.0;
    for (row, &yi) in s.chunks_exact_mut(kp).zip(y) {
        let t = row[0];
        let yv = if yi == 1 { 1.0 } else { 0.0 };
        // log(1 + e^t) - y t, stably
        let softplus = if t > 0.0 {
            t + (-t).exp().ln_1p()
        } else {
            t.exp().ln_1p()
        };
        loss += softplus - yv * t;
        row[0] = model::classifier::sigmoid(t) - yv;
        row[1..].fill(0.0);
    }
    loss
}

/// `e^x`, within 2 ulp of the correctly rounded value, 0 below -708 (and for -inf), as
/// straight-line arithmetic the compiler can vectorise: `x = n ln2 + r`, `|r| <= ln2/2`,
/// a degree-13 Taylor polynomial for `e^r`, and `2^n` built from its bits.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // 1.5 * 2^52: adding it rounds to an integer and leaves that integer in the low bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const C: [f64; 12] = [
        1.0 / 6_227_020_800.0, // 1/13!
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5, // 1/2!
    ];
    let xc = x.clamp(-708.0, 709.0);
    let t = xc.mul_add(std::f64::consts::LOG2_E, SHIFT);
    let n = t - SHIFT;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let mut p = C[0];
    for c in &C[1..] {
        p = p.mul_add(r, *c);
    }
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let bits = t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(1023) << 52;
    let v = p * f64::from_bits(bits);
    if x < -708.0 { 0.0 } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut worst = 0.0f64;
        let mut x = -708.0;
        while x <= 709.0 {
            let (ours, std) = (exp(x), x.exp());
            let ulp = (std.to_bits() as i64 - ours.to_bits() as i64).unsigned_abs();
            worst = worst.max(ulp as f64);
            assert!(ulp <= 2, "exp({x}) = {ours}, std {std}");
            x += 0.001_37;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-800.0), 0.0);
        assert!(exp(f64::NAN).is_nan() || exp(f64::NAN) >= 0.0);
        eprintln!("worst ulp distance {worst}");
    }

    fn naive(rows: &[&[f64]], y: &[usize], w: &[f64], k: usize, f: usize) -> (f64, Vec<f64>) {
        let mut loss = 0.0;
        let mut g = vec![0.0; k * f + k];
        for (x, &yi) in rows.iter().zip(y) {
            let s: Vec<f64> = (0..k)
                .map(|j| w[k * f + j] + (0..f).map(|fi| x[fi] * w[j * f + fi]).sum::<f64>())
                .collect();
            let d: Vec<f64> = if k == 1 {
                let p = 1.0 / (1.0 + (-s[0]).exp());
                let yv = f64::from(u8::from(yi == 1));
                loss += -(yv * p.ln() + (1.0 - yv) * (1.0 - p).ln());
                vec![p - yv]
            } else {
                let max = s.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f64 = s.iter().map(|v| (v - max).exp()).sum();
                loss += max + sum.ln() - s[yi];
                (0..k)
                    .map(|j| (s[j] - max).exp() / sum - f64::from(u8::from(j == yi)))
                    .collect()
            };
            for j in 0..k {
                for fi in 0..f {
                    g[j * f + fi] += x[fi] * d[j];
                }
                g[k * f + j] += d[j];
            }
        }
        (loss, g)
    }

    #[test]
    fn chunk_matches_a_naive_computation_and_is_grouping_independent() {
        for (k, f, m) in [
            (1, 7, 11),
            (3, 5, 9),
            (10, 13, 23),
            (5, 4, 4),
            (4, 3, 1),
            (10, 64, 37),
            (3, 37, 19),
        ] {
            let data: Vec<f64> = (0..m * f)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
                .collect();
            let rows: Vec<&[f64]> = data.chunks_exact(f).collect();
            let classes = if k == 1 { 2 } else { k };
            let y: Vec<usize> = (0..m).map(|i| i * 7 % classes).collect();
            let w: Vec<f64> = (0..k * f + k)
                .map(|i| ((i * 13 % 17) as f64 - 8.0) / 10.0)
                .collect();
            let kw = Weights::new(&w, k, f);
            let got = chunk(&rows, &y, &kw);
            let portable = chunk_portable(&rows, &y, &kw);
            assert_eq!(got.loss.to_bits(), portable.loss.to_bits());
            assert_eq!(got.grad, portable.grad);
            let (loss, g) = naive(&rows, &y, &w, k, f);
            assert!(
                (got.loss - loss).abs() < 1e-9 * loss.abs().max(1.0),
                "{k} {f} {m}"
            );
            for j in 0..k {
                for fi in 0..f {
                    let a = got.grad[j * f + fi];
                    assert!((a - g[j * f + fi]).abs() < 1e-9, "{a} {}", g[j * f + fi]);
                }
                assert!((got.grad[k * f + j] - g[k * f + j]).abs() < 1e-9);
            }
            // Rows one at a time (the tail path only) give the same loss up to rounding.
            let single: Vec<ChunkSums> = rows
                .iter()
                .zip(&y)
                .map(|(r, yi)| chunk(std::slice::from_ref(r), std::slice::from_ref(yi), &kw))
                .collect();
            let loss1: f64 = single.iter().map(|c| c.loss).sum();
            assert!((loss1 - got.loss).abs() < 1e-9 * loss.abs().max(1.0));
        }
    }
}
