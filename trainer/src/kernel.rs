//! The dense arithmetic of one objective evaluation over a chunk of rows: the scores
//! `S = X Wᵀ + b`, the softmax (or sigmoid) loss with `S` turned in place into
//! `D = ∂loss/∂S`, and the gradient `Xᵀ D`.
//!
//! Shaped for logistic regression: few classes, tens to hundreds of features, many rows.
//! Scores are kept in blocks of four rows, class-major inside a block, so that the softmax
//! steps run over four rows in one 256-bit vector with no padding classes. Every sum runs in
//! one fixed order (features in order for a score, rows in order for a gradient entry) with
//! fused multiply-adds, so the bits of the result do not depend on how rows are grouped, nor
//! on the CPU: with AVX2 + FMA the tiles' multiply-adds are 256-bit FMA instructions; without,
//! `f64::mul_add` is the same correctly rounded operation, one lane at a time.
//!
//! With AVX-512 (x86-64-v4) the two hottest tiles run on 512-bit vectors laid out so that
//! every lane still computes exactly the sum it computes in four-lane form: a score vector
//! holds the same four feature lanes of two classes, a gradient vector eight features' own
//! sums over rows. So the bits are the same on an AVX2 machine, an AVX-512 machine and
//! without either, and a model trained on one is the model trained on another.
//!
//! The run-time check of the instruction set and the FMA wrappers are pulp's (`V3`, `V4`),
//! so this crate needs no `unsafe` of its own.

/// f64 lanes in one 256-bit vector: the rows of one score block.
pub const LANES: usize = 4;

type Lanes = [f64; LANES];

/// Shapes and parameters of one evaluation, borrowed from the parameter vector.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// Coefficient rows: 1 for a binary model (sigmoid), else the number of classes.
    pub k: usize,
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
/// with classes `y`. On a CPU with AVX-512 (x86-64-v4) or AVX2 + FMA (x86-64-v3), checked
/// at run time, the kernel runs inside a function compiled for it, its multiply-adds
/// written as 512- or 256-bit instructions through pulp's safe wrappers; elsewhere the same
/// operations run one lane at a time. The result is the same bits either way.
pub fn chunk(rows: &[&[f64]], y: &[usize], w: &Weights<'_>) -> ChunkSums {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        return pulp::Simd::vectorize(simd, Chunk { rows, y, w, simd });
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, Chunk { rows, y, w, simd });
    }
    chunk_with(rows, y, w, Portable)
}

/// Four-lane fused multiply-add `x · w + a`, each lane correctly rounded: the one vector
/// operation the kernel spells out instead of leaving to the auto-vectoriser, whose choices
/// for the tiles changed from one build to the next (and cost a third of the time).
trait Fma4: Copy {
    /// The tile shapes that pay with this instruction set. Either way the result is the
    /// same bits.
    fn tiles(self) -> Tiles;

    fn fma(self, a: Lanes, x: Lanes, w: Lanes) -> Lanes;

    /// Eight lanes at once: the two halves as two four-lane operations unless overridden.
    #[inline(always)]
    fn fma8(self, a: Lanes8, x: Lanes8, w: Lanes8) -> Lanes8 {
        let (a0, a1) = halves(a);
        let (x0, x1) = halves(x);
        let (w0, w1) = halves(w);
        join(self.fma(a0, x0, w0), self.fma(a1, x1, w1))
    }
}

/// Which tiles run on eight-lane (512-bit) vectors; the rest run on four-lane ones. The
/// same bits either way: only the speed depends on the choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tiles {
    /// The score (forward) tiles: two classes' four feature lanes per vector, which costs
    /// a lane shuffle per row and vector.
    scores: bool,
    /// The gradient (backward) tiles: thirty-two features by two classes.
    gradient: bool,
}

impl Tiles {
    const NARROW: Self = Self {
        scores: false,
        gradient: false,
    };
    #[cfg(test)]
    const WIDE: Self = Self {
        scores: true,
        gradient: true,
    };
}

/// Whether this CPU runs each 512-bit operation as two 256-bit halves: AMD's family 19h
/// (Zen 4). There the wide score tile's shuffles cost more than its wider FMAs give back:
/// measured on digits (`eval_cost`), narrow score tiles with wide gradient tiles took
/// 115 us per sequential evaluation against 122 us with both wide (and 118-120 us with
/// both narrow). Read once (CPUID) and kept.
#[cfg(target_arch = "x86_64")]
fn halves_512_bit_ops() -> bool {
    static HALVES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HALVES.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        let vendor = __cpuid(0);
        let amd = (vendor.ebx, vendor.edx, vendor.ecx)
            == (
                u32::from_le_bytes(*b"Auth"),
                u32::from_le_bytes(*b"enti"),
                u32::from_le_bytes(*b"cAMD"),
            );
        let eax = __cpuid(1).eax;
        let family = ((eax >> 8) & 0xf) + ((eax >> 20) & 0xff);
        amd && family == 0x19
    })
}

/// f64 lanes in one 512-bit vector.
const LANES8: usize = 2 * LANES;

type Lanes8 = [f64; LANES8];

#[inline(always)]
fn halves(v: Lanes8) -> (Lanes, Lanes) {
    ([v[0], v[1], v[2], v[3]], [v[4], v[5], v[6], v[7]])
}

#[inline(always)]
fn join(a: Lanes, b: Lanes) -> Lanes8 {
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

/// A vector of f64 lanes a gradient tile runs on: [`Lanes`] (four) or [`Lanes8`] (eight),
/// each through its own fused multiply-add of `F`.
trait Vector<F: Fma4>: Copy {
    fn fma(simd: F, a: Self, x: Self, w: Self) -> Self;
}

impl<F: Fma4> Vector<F> for Lanes {
    #[inline(always)]
    fn fma(simd: F, a: Self, x: Self, w: Self) -> Self {
        simd.fma(a, x, w)
    }
}

impl<F: Fma4> Vector<F> for Lanes8 {
    #[inline(always)]
    fn fma(simd: F, a: Self, x: Self, w: Self) -> Self {
        simd.fma8(a, x, w)
    }
}

/// Lane by lane, through `f64::mul_add`.
#[derive(Clone, Copy)]
struct Portable;

impl Fma4 for Portable {
    fn tiles(self) -> Tiles {
        Tiles::NARROW
    }

    #[inline(always)]
    fn fma(self, a: Lanes, x: Lanes, w: Lanes) -> Lanes {
        std::array::from_fn(|l| x[l].mul_add(w[l], a[l]))
    }
}

#[cfg(target_arch = "x86_64")]
impl Fma4 for pulp::x86::V3 {
    fn tiles(self) -> Tiles {
        Tiles::NARROW
    }

    #[inline(always)]
    fn fma(self, a: Lanes, x: Lanes, w: Lanes) -> Lanes {
        use pulp::bytemuck::cast;
        cast(self.mul_add_f64x4(cast(x), cast(w), cast(a)))
    }
}

#[cfg(target_arch = "x86_64")]
impl Fma4 for pulp::x86::V4 {
    fn tiles(self) -> Tiles {
        Tiles {
            scores: !halves_512_bit_ops(),
            gradient: true,
        }
    }

    #[inline(always)]
    fn fma(self, a: Lanes, x: Lanes, w: Lanes) -> Lanes {
        use pulp::bytemuck::cast;
        cast(self.mul_add_f64x4(cast(x), cast(w), cast(a)))
    }

    #[inline(always)]
    fn fma8(self, a: Lanes8, x: Lanes8, w: Lanes8) -> Lanes8 {
        use pulp::bytemuck::cast;
        cast(self.mul_add_f64x8(cast(x), cast(w), cast(a)))
    }
}

/// The kernel as pulp's unit of work. `with_simd` must be `#[inline(always)]` (and so must
/// everything it calls) for the code to be compiled with the CPU's features; a closure
/// would not be.
#[cfg(target_arch = "x86_64")]
struct Chunk<'a, F> {
    rows: &'a [&'a [f64]],
    y: &'a [usize],
    w: &'a Weights<'a>,
    simd: F,
}

#[cfg(target_arch = "x86_64")]
impl<F: Fma4> pulp::WithSimd for Chunk<'_, F> {
    type Output = ChunkSums;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> ChunkSums {
        chunk_with(self.rows, self.y, self.w, self.simd)
    }
}

#[inline(always)]
fn chunk_with<F: Fma4>(rows: &[&[f64]], y: &[usize], w: &Weights<'_>, simd: F) -> ChunkSums {
    chunk_tiled(rows, y, w, simd, simd.tiles())
}

/// [`chunk_with`] with the tile shapes chosen by `tiles`, so that a test can run each on
/// any CPU.
#[inline(always)]
fn chunk_tiled<F: Fma4>(
    rows: &[&[f64]],
    y: &[usize],
    w: &Weights<'_>,
    simd: F,
    tiles: Tiles,
) -> ChunkSums {
    let (k, f) = (w.k, w.f);
    let m = rows.len().min(y.len());
    let (rows, y) = (&rows[..m], &y[..m]);
    // Scores in blocks of LANES rows, class-major inside a block: block `b`, class `j`,
    // row `r` of the block at `(b * k + j) * LANES + r`. Lanes of a missing tail row stay 0.
    let mut buf = Vec::new();
    let s = aligned_zeros(&mut buf, m.div_ceil(LANES) * k * LANES);
    scores(rows, w, s, simd, tiles.scores);
    let loss = if k == 1 {
        sigmoid_loss(s, y)
    } else {
        softmax_loss(s, y, k)
    };
    let mut grad = vec![0.0; k * f + k];
    let (gw, gb) = grad.split_at_mut(k * f);
    backward(rows, s, k, f, gw, simd, tiles.gradient);
    // Intercepts: rows in order for each class (tail lanes hold 0 and are skipped).
    let mut j0 = 0;
    while j0 < k {
        let n = (k - j0).min(8);
        if n == 8 {
            intercepts::<8>(rows.len(), s, k, j0, &mut gb[j0..j0 + 8]);
        } else {
            for j in j0..j0 + n {
                intercepts::<1>(rows.len(), s, k, j, &mut gb[j..=j]);
            }
        }
        j0 += n;
    }
    ChunkSums { loss, grad }
}

/// Column sums of `d` for classes `j0..j0 + J`, each a chain over the rows in order, kept in
/// registers.
#[inline(always)]
fn intercepts<const J: usize>(m: usize, d: &[f64], k: usize, j0: usize, g: &mut [f64]) {
    let mut acc = [0.0; J];
    for (b, blk) in d.chunks_exact(k * LANES).enumerate() {
        let rows = (m - b * LANES).min(LANES);
        let blk = &blk[j0 * LANES..(j0 + J) * LANES];
        for r in 0..rows {
            for (jj, a) in acc.iter_mut().enumerate() {
                *a += blk[jj * LANES + r];
            }
        }
    }
    g.copy_from_slice(&acc);
}

/// `s[i][j] = b[j] + Σ_f x[i][f] · w[j][f]` into the block layout. Lanes run over features
/// (four partial sums per score, added pairwise at the end, then the features left over in
/// order); a tile of four rows by [`SCORE_CLASSES`] classes keeps its accumulators in
/// registers.
///
/// Wide: the same sums, two classes per eight-lane vector (class `2p` in the low half, `2p+1`
/// in the high half, each half the four feature lanes above), from coefficients interleaved
/// once per call by [`pack_pairs`].
#[inline(always)]
fn scores<F: Fma4>(rows: &[&[f64]], w: &Weights<'_>, s: &mut [f64], simd: F, wide: bool) {
    let k = w.k;
    let wide = wide && k >= 2;
    let mut pbuf = Vec::new();
    let packed = if wide {
        pack_pairs(w, &mut pbuf)
    } else {
        &[][..]
    };
    for (xb, out) in rows.chunks(LANES).zip(s.chunks_exact_mut(k * LANES)) {
        if let Ok(x) = <&[&[f64]; LANES]>::try_from(xb) {
            if wide {
                score_rows_wide::<LANES, F>(x, w, packed, out, simd);
            } else {
                score_rows::<LANES, F>(x, 0, w, out, simd);
            }
        } else {
            for (r, x) in xb.iter().enumerate() {
                score_rows::<1, F>(&[*x], r, w, out, simd);
            }
        }
    }
}

/// Classes per score tile.
const SCORE_CLASSES: usize = 2;

#[inline(always)]
fn score_rows<const R: usize, F: Fma4>(
    x: &[&[f64]; R],
    lane: usize,
    w: &Weights<'_>,
    out: &mut [f64],
    simd: F,
) {
    let k = w.k;
    let x: [&[f64]; R] = std::array::from_fn(|r| &x[r][..w.f]);
    let mut j = 0;
    while j + SCORE_CLASSES <= k {
        score_tile::<R, SCORE_CLASSES, F>(&x, w, j, lane, out, simd);
        j += SCORE_CLASSES;
    }
    while j < k {
        score_tile::<R, 1, F>(&x, w, j, lane, out, simd);
        j += 1;
    }
}

#[inline(always)]
fn score_tile<const R: usize, const J: usize, F: Fma4>(
    x: &[&[f64]; R],
    w: &Weights<'_>,
    j0: usize,
    lane: usize,
    out: &mut [f64],
    simd: F,
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
                *a = simd.fma(*a, xl, *wj);
            }
        }
    }
    for (r, (ar, xr)) in acc.iter().zip(x).enumerate() {
        for (jj, (a, wj)) in ar.iter().zip(&wr).enumerate() {
            let mut t = w.b[j0 + jj] + ((a[0] + a[1]) + (a[2] + a[3]));
            for fi in f4..f {
                t = xr[fi].mul_add(wj[fi], t);
            }
            out[(j0 + jj) * LANES + lane + r] = t;
        }
    }
}

/// Coefficients of each class pair `(2p, 2p + 1)` interleaved four features at a time:
/// vector `v` of pair `p` is `w[2p][4v..4v+4]` then `w[2p+1][4v..4v+4]`, the pairs one after
/// another, on a 64-byte boundary. The features past the last whole group of four are not
/// packed (the tiles add them one by one from `w`).
#[inline(always)]
fn pack_pairs<'b>(w: &Weights<'_>, buf: &'b mut Vec<f64>) -> &'b [f64] {
    let (k, f) = (w.k, w.f);
    let n4 = f / LANES;
    let len = k / 2 * n4 * LANES8;
    buf.clear();
    buf.resize(len + LANES8 - 1, 0.0);
    let off = aligned_start(buf, LANES8 * std::mem::size_of::<f64>());
    let out = &mut buf[off..off + len];
    if n4 == 0 {
        return out;
    }
    for (p, dst) in out.chunks_exact_mut(n4 * LANES8).enumerate() {
        let (w0, w1) = (&w.w[2 * p * f..], &w.w[(2 * p + 1) * f..]);
        for (v, d) in dst.chunks_exact_mut(LANES8).enumerate() {
            d[..LANES].copy_from_slice(&w0[v * LANES..(v + 1) * LANES]);
            d[LANES..].copy_from_slice(&w1[v * LANES..(v + 1) * LANES]);
        }
    }
    out
}

/// Class pairs per wide score tile.
const SCORE_PAIRS: usize = 2;

/// The scores of one whole block of rows with the wide tiles: class pairs two at a time,
/// then a single pair, then (odd `k`) the last class with a four-lane tile.
#[inline(always)]
fn score_rows_wide<const R: usize, F: Fma4>(
    x: &[&[f64]; R],
    w: &Weights<'_>,
    packed: &[f64],
    out: &mut [f64],
    simd: F,
) {
    let k = w.k;
    let x: [&[f64]; R] = std::array::from_fn(|r| &x[r][..w.f]);
    let pairs = k / 2;
    let mut p = 0;
    while p + SCORE_PAIRS <= pairs {
        score_tile_wide::<R, SCORE_PAIRS, F>(&x, w, packed, p, out, simd);
        p += SCORE_PAIRS;
    }
    while p < pairs {
        score_tile_wide::<R, 1, F>(&x, w, packed, p, out, simd);
        p += 1;
    }
    if k % 2 == 1 {
        score_tile::<R, 1, F>(&x, w, k - 1, 0, out, simd);
    }
}

/// `P` class pairs by `R` rows: lane `l` of half `h` of `acc[r][q]` is the running sum over
/// features `4v + l` of row `r` and class `2(p0 + q) + h`, exactly the lane [`score_tile`]
/// keeps for that row and class; finished the same way.
#[inline(always)]
fn score_tile_wide<const R: usize, const P: usize, F: Fma4>(
    x: &[&[f64]; R],
    w: &Weights<'_>,
    packed: &[f64],
    p0: usize,
    out: &mut [f64],
    simd: F,
) {
    let f = w.f;
    let n4 = f / LANES;
    let f4 = n4 * LANES;
    let pv: [&[Lanes8]; P] =
        std::array::from_fn(|q| &packed.as_chunks::<LANES8>().0[(p0 + q) * n4..][..n4]);
    let xv: [&[Lanes]; R] = std::array::from_fn(|r| &x[r].as_chunks::<LANES>().0[..n4]);
    let mut acc = [[[0.0; LANES8]; P]; R];
    for v in 0..n4 {
        let wl: [Lanes8; P] = std::array::from_fn(|q| pv[q][v]);
        for (ar, xr) in acc.iter_mut().zip(&xv) {
            let xl = xr[v];
            let x2 = join(xl, xl);
            for (a, wq) in ar.iter_mut().zip(&wl) {
                *a = simd.fma8(*a, x2, *wq);
            }
        }
    }
    for (r, (ar, xr)) in acc.iter().zip(x).enumerate() {
        for (q, a2) in ar.iter().enumerate() {
            let (lo, hi) = halves(*a2);
            for (h, a) in [lo, hi].iter().enumerate() {
                let j = 2 * (p0 + q) + h;
                let wj = &w.w[j * f..(j + 1) * f];
                // The same finish as `score_tile`'s, spelled out: through a shared helper
                // the digits evaluation measured 1-3 % slower (same bits).
                let mut t = w.b[j] + ((a[0] + a[1]) + (a[2] + a[3]));
                for fi in f4..f {
                    t = xr[fi].mul_add(wj[fi], t);
                }
                out[j * LANES + r] = t;
            }
        }
    }
}

/// `g[j][f] = Σ_i d[i][j] · x[i][f]`, rows in order, from `d` in the block layout into `g`
/// laid out as `k` rows of `f`. Lanes run over features; a tile of two classes by sixteen
/// features keeps eight independent accumulators in registers for the whole chunk. Wide:
/// the same per-lane sums, in tiles of two classes by thirty-two features (eight-lane
/// vectors), then the four-lane tiles for the features left.
#[inline(always)]
fn backward<F: Fma4>(
    rows: &[&[f64]],
    d: &[f64],
    k: usize,
    f: usize,
    g: &mut [f64],
    simd: F,
    wide: bool,
) {
    let f32 = if wide { f / 32 * 32 } else { 0 };
    let f16 = f / 16 * 16;
    let f4 = f / 4 * 4;
    // Feature groups outside, classes inside: a group's columns of the chunk are read from
    // memory once and then from L1 by every class.
    let mut f0 = 0;
    while f0 < f4 {
        let step = if f0 < f32 {
            32
        } else if f0 < f16 {
            16
        } else {
            LANES
        };
        let mut j = 0;
        while j < k {
            let two = j + 1 < k;
            match (two, step) {
                (true, 32) => grad_tile::<2, 4, LANES8, F>(rows, d, k, j, f0, f, g, simd),
                (false, 32) => grad_tile::<1, 4, LANES8, F>(rows, d, k, j, f0, f, g, simd),
                (true, 16) => grad_tile::<2, 4, LANES, F>(rows, d, k, j, f0, f, g, simd),
                (false, 16) => grad_tile::<1, 4, LANES, F>(rows, d, k, j, f0, f, g, simd),
                (true, _) => grad_tile::<2, 1, LANES, F>(rows, d, k, j, f0, f, g, simd),
                (false, _) => grad_tile::<1, 1, LANES, F>(rows, d, k, j, f0, f, g, simd),
            }
            j += if two { 2 } else { 1 };
        }
        f0 += step;
    }
    for j in 0..k {
        for fi in f4..f {
            let mut acc = 0.0;
            for (xb, db) in rows.chunks(LANES).zip(d.chunks_exact(k * LANES)) {
                for (r, x) in xb.iter().enumerate() {
                    acc = db[j * LANES + r].mul_add(x[fi], acc);
                }
            }
            g[j * f + fi] = acc;
        }
    }
}

/// `J` classes by `V` vectors of `N` lanes (`V N` features from `f0`) of the gradient,
/// each lane a sum over the chunk's rows in order, in registers until the end.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile<const J: usize, const V: usize, const N: usize, F: Fma4>(
    rows: &[&[f64]],
    d: &[f64],
    k: usize,
    j0: usize,
    f0: usize,
    f: usize,
    g: &mut [f64],
    simd: F,
) where
    [f64; N]: Vector<F>,
{
    let mut acc = [[[0.0; N]; V]; J];
    let mut blocks = rows.chunks_exact(LANES);
    let mut dblocks = d.chunks_exact(k * LANES);
    // Whole blocks with a fixed trip count of four rows (the compiler unrolls them and
    // drops the bounds checks: 6 % of an evaluation), then the partial last block.
    for (xb, db) in (&mut blocks).zip(&mut dblocks) {
        let db = &db[..k * LANES];
        for (r, x) in xb.iter().enumerate().take(LANES) {
            grad_row(&mut acc, &x[f0..f0 + V * N], &db[j0 * LANES + r..], simd);
        }
    }
    if let Some(db) = dblocks.next() {
        for (r, x) in blocks.remainder().iter().enumerate() {
            grad_row(&mut acc, &x[f0..f0 + V * N], &db[j0 * LANES + r..], simd);
        }
    }
    for (jj, aj) in acc.iter().enumerate() {
        for (v, a) in aj.iter().enumerate() {
            let at = (j0 + jj) * f + f0 + v * N;
            g[at..at + N].copy_from_slice(a);
        }
    }
}

/// `len` zeros in `buf`, starting on a 32-byte boundary (whole-vector loads and stores).
#[inline(always)]
pub fn aligned_zeros(buf: &mut Vec<f64>, len: usize) -> &mut [f64] {
    buf.clear();
    buf.resize(len + LANES - 1, 0.0);
    let off = aligned_start(buf, VECTOR_BYTES);
    &mut buf[off..off + len]
}

/// The `len` values that [`aligned_zeros`] handed out of `buf` (and were written since).
pub fn aligned_view(buf: &[f64], len: usize) -> &[f64] {
    let off = aligned_start(buf, VECTOR_BYTES);
    buf.get(off..off + len).unwrap_or(&[])
}

/// Bytes of one 256-bit vector.
const VECTOR_BYTES: usize = LANES * std::mem::size_of::<f64>();

/// Index of the first value of `buf` on an `align`-byte boundary (a power of two, a
/// multiple of 8); 0 when `align_offset` declines (it may: usize::MAX), so the buffer is
/// then used as it comes. `buf` needs `align / 8 - 1` spare values at its end.
#[inline(always)]
pub fn aligned_start(buf: &[f64], align: usize) -> usize {
    let off = buf.as_ptr().align_offset(align);
    if off < align / std::mem::size_of::<f64>() {
        off
    } else {
        0
    }
}

/// One row's share of a gradient tile: `acc[j] += d[j] · x` for the tile's classes, with
/// `d[j]` at `d[j * LANES]` (one row of a score block) and `x` the tile's features.
/// A function, not a closure: a closure would not be compiled with the kernel's features.
#[inline(always)]
fn grad_row<const J: usize, const V: usize, const N: usize, F: Fma4>(
    acc: &mut [[[f64; N]; V]; J],
    x: &[f64],
    d: &[f64],
    simd: F,
) where
    [f64; N]: Vector<F>,
{
    let x = &x.as_chunks::<N>().0[..V];
    for (jj, aj) in acc.iter_mut().enumerate() {
        let dv = [d[jj * LANES]; N];
        for (a, xv) in aj.iter_mut().zip(x) {
            *a = Vector::fma(simd, *a, dv, *xv);
        }
    }
}

/// Softmax cross-entropy of each row of the block-laid scores `s` (`k` classes, `y.len()`
/// rows); turns `s` into `p - onehot(y)` (tail lanes 0). Returns the summed loss.
/// Each step runs over the four rows of a block at once.
#[inline(always)]
fn softmax_loss(s: &mut [f64], y: &[usize], k: usize) -> f64 {
    let mut zy = vec![0.0; s.len() / k];
    for ((blk, z), yb) in s
        .chunks_exact_mut(k * LANES)
        .zip(zy.chunks_exact_mut(LANES))
        .zip(y.chunks(LANES))
    {
        let mut max = [f64::NEG_INFINITY; LANES];
        for c in blk.chunks_exact(LANES) {
            for (m, v) in max.iter_mut().zip(c) {
                *m = m.max(*v);
            }
        }
        for c in blk.chunks_exact_mut(LANES) {
            for (v, m) in c.iter_mut().zip(&max) {
                *v -= m;
            }
        }
        for (r, &yi) in yb.iter().enumerate() {
            z[r] = blk[yi.min(k - 1) * LANES + r];
        }
    }
    // One flat, vectorisable pass of exp over every score.
    for v in s.iter_mut() {
        *v = exp(*v);
    }
    let mut loss = 0.0;
    for ((blk, z), yb) in s
        .chunks_exact_mut(k * LANES)
        .zip(zy.chunks_exact(LANES))
        .zip(y.chunks(LANES))
    {
        let mut sum = [0.0; LANES];
        for c in blk.chunks_exact(LANES) {
            for (t, v) in sum.iter_mut().zip(c) {
                *t += v;
            }
        }
        // One logarithm per block: each sum lies in [1, k] (the largest term is e^0), so
        // the product of four cannot overflow for any number of classes memory can hold.
        let mut inv = [0.0; LANES];
        let mut prod = 1.0;
        let mut zs = 0.0;
        for (r, &t) in sum.iter().enumerate().take(yb.len()) {
            prod *= t;
            zs += z[r];
            inv[r] = 1.0 / t;
        }
        loss += prod.ln() - zs;
        for c in blk.chunks_exact_mut(LANES) {
            for (v, i) in c.iter_mut().zip(&inv) {
                *v *= i;
            }
        }
        for (r, &yi) in yb.iter().enumerate() {
            blk[yi.min(k - 1) * LANES + r] -= 1.0;
        }
    }
    loss
}

/// Logistic loss of each score in `s` (one class: the block layout is row order; class 1
/// positive); turns it into `sigmoid(t) - y`. Returns the summed loss.
#[inline(always)]
fn sigmoid_loss(s: &mut [f64], y: &[usize]) -> f64 {
    let mut loss = 0.0;
    for (v, &yi) in s.iter_mut().zip(y) {
        let t = *v;
        let yv = if yi == 1 { 1.0 } else { 0.0 };
        // log(1 + e^t) - y t, stably
        let softplus = if t > 0.0 {
            t + (-t).exp().ln_1p()
        } else {
            t.exp().ln_1p()
        };
        loss += softplus - yv * t;
        *v = model::classifier::sigmoid(t) - yv;
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
            (7, 50, 29),
            (2, 33, 10),
            (4, 96, 9),
            (5, 68, 41),
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
            let portable = chunk_with(&rows, &y, &kw, Portable);
            assert_eq!(got.loss.to_bits(), portable.loss.to_bits());
            assert_eq!(got.grad, portable.grad);
            // The wide tiles, whatever the CPU (two four-lane FMAs per eight-lane one here),
            // and each instruction set this CPU has: the same bits as the portable path.
            let same = |c: &ChunkSums, what: &str| {
                assert_eq!(
                    c.loss.to_bits(),
                    portable.loss.to_bits(),
                    "{what} {k} {f} {m}"
                );
                let bits = |g: &[f64]| g.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c.grad), bits(&portable.grad), "{what} {k} {f} {m}");
            };
            same(
                &chunk_tiled(&rows, &y, &kw, Portable, Tiles::WIDE),
                "portable wide",
            );
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(v3) = pulp::x86::V3::try_new() {
                    same(&chunk_tiled(&rows, &y, &kw, v3, Tiles::NARROW), "avx2");
                    same(&chunk_tiled(&rows, &y, &kw, v3, Tiles::WIDE), "avx2 wide");
                }
                if let Some(v4) = pulp::x86::V4::try_new() {
                    same(
                        &chunk_tiled(&rows, &y, &kw, v4, Tiles::NARROW),
                        "avx512 narrow",
                    );
                    same(&chunk_tiled(&rows, &y, &kw, v4, Tiles::WIDE), "avx512 wide");
                    let zen4 = Tiles {
                        scores: false,
                        gradient: true,
                    };
                    same(
                        &chunk_tiled(&rows, &y, &kw, v4, zen4),
                        "avx512 wide gradient",
                    );
                }
            }
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
