//! Exact nearest-neighbour search over a contiguous `f32` matrix, shared by the knowledge-base
//! index and similar-customer search, an int8 copy for a faster exact first pass, plus the
//! little-endian BLOB encoding of vectors.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use upsell_core::kb::dot;

/// Encodes a vector as a little-endian `f32` BLOB (4 bytes per dimension).
pub fn f32_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a BLOB written by [`f32_to_blob`]; trailing bytes that do not make a float are ignored.
pub fn blob_to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Rows of `dims` floats stored back to back, so a scan walks memory linearly.
#[derive(Debug, Clone, Default)]
pub struct VectorMatrix {
    dims: usize,
    data: Vec<f32>,
}

/// A (score, row) pair ordered so that a `BinaryHeap` pops the *worst* score first.
#[derive(Clone, Copy, PartialEq)]
struct Worst(f32, usize);

impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse on score, then prefer lower row ids (stable results) by treating higher ids as worse.
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Rows below this count are scanned on one thread; above it the scan is split across cores.
const PARALLEL_ROWS: usize = 20_000;

/// Threads for a large scan: the cores available, at most four.
pub fn scan_threads() -> usize {
    std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(4)
}

impl VectorMatrix {
    pub fn new(dims: usize) -> Self {
        VectorMatrix {
            dims,
            data: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dims).unwrap_or(0)
    }

    /// Appends a row; it must have `dims` values.
    pub fn push(&mut self, row: &[f32]) {
        assert_eq!(row.len(), self.dims, "vector of the wrong dimension");
        self.data.extend_from_slice(row);
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dims..(i + 1) * self.dims]
    }

    fn scan(
        &self,
        query: &[f32],
        k: usize,
        rows: std::ops::Range<usize>,
        allow: &(impl Fn(usize) -> bool + Sync),
        score: &(impl Fn(&[f32], &[f32]) -> f32 + Sync),
    ) -> BinaryHeap<Worst> {
        let mut heap = BinaryHeap::with_capacity(k + 1);
        for i in rows {
            if !allow(i) {
                continue;
            }
            let s = score(query, self.row(i));
            if heap.len() < k {
                heap.push(Worst(s, i));
            } else if let Some(worst) = heap.peek()
                && s > worst.0
            {
                heap.pop();
                heap.push(Worst(s, i));
            }
        }
        heap
    }

    /// The `k` rows with the highest score among those `allow` accepts, best first.
    pub fn top_k_by(
        &self,
        query: &[f32],
        k: usize,
        allow: impl Fn(usize) -> bool + Sync,
        score: impl Fn(&[f32], &[f32]) -> f32 + Sync,
    ) -> Vec<(usize, f32)> {
        let n = self.len();
        if k == 0 || n == 0 {
            return Vec::new();
        }
        let threads = if n >= PARALLEL_ROWS {
            scan_threads()
        } else {
            1
        };
        let mut heap = if threads <= 1 {
            self.scan(query, k, 0..n, &allow, &score)
        } else {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (allow, score) = (&allow, &score);
                        s.spawn(move || {
                            self.scan(query, k, t * per..((t + 1) * per).min(n), allow, score)
                        })
                    })
                    .collect();
                let mut all = BinaryHeap::new();
                for h in handles {
                    all.extend(h.join().expect("vector scan thread panicked"));
                }
                all
            })
        };
        while heap.len() > k {
            heap.pop();
        }
        let mut out: Vec<(usize, f32)> = heap.into_iter().map(|w| (w.1, w.0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Top `k` by dot product (cosine similarity for unit vectors).
    #[cfg(test)]
    pub fn top_k(
        &self,
        query: &[f32],
        k: usize,
        allow: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        self.top_k_by(query, k, allow, dot)
    }
}

/// An int8 copy of a [`VectorMatrix`] (one scale per row) for a fast first pass: a quarter of
/// the bytes to read, integer multiply-adds. Search stays exact: the candidates of the first
/// pass are rescored in `f32`, and every row whose int8 score could still reach the `k`-th
/// exact score (a rigorous bound on the quantisation error) is rescored too.
#[derive(Debug, Clone, Default)]
pub struct Int8Matrix {
    dims: usize,
    /// Values in `-127..=127` (never -128: the SIMD kernel relies on it).
    data: Vec<i8>,
    /// Per row: the value of one quantisation step.
    scale: Vec<f32>,
    /// Per row: the L1 norm of the original row (for the error bound).
    l1: Vec<f32>,
    /// Per row: the L2 norms of the original row and of its quantisation error.
    l2: Vec<f32>,
    err2: Vec<f32>,
    /// The largest `scale`, `l1`, `l2` and `err2` of any row: a bound on every row's error.
    max_scale: f32,
    max_l1: f32,
    max_l2: f32,
    max_err2: f32,
}

/// Symmetric quantisation of one vector: `x ~= q * scale`, `|x - q * scale| <= scale / 2`,
/// every `q` in `-127..=127`.
fn quantize(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    out.extend(
        v.iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
    );
    scale
}

fn norm2(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Integer dot products of a query with many int8 rows, on the widest instructions the CPU
/// has: AVX2 when the running x86-64 CPU supports it (checked at run time, since release
/// builds target the x86-64 baseline), otherwise a portable loop the compiler vectorises.
/// Both give identical results (a test compares them).
mod kernel {
    /// Rows handled per call, so the dispatch cost is paid once per block, not per row.
    pub const BLOCK: usize = 128;

    /// `out[j] = q . data[rows[j]]`, where row `r` is `data[r * q.len()..(r + 1) * q.len()]`.
    /// Every value must be in `-127..=127` (the AVX2 path negates values and multiplies pairs
    /// of them in 16 bits; both stay exact in that range).
    pub fn dots(q: &[i8], data: &[i8], rows: &[u32], out: &mut [i32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return avx2_dots_checked(q, data, rows, out);
        }
        portable_dots(q, data, rows, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) fn avx2_dots_checked(q: &[i8], data: &[i8], rows: &[u32], out: &mut [i32]) {
        assert!(std::arch::is_x86_feature_detected!("avx2"));
        // SAFETY: the CPU supports AVX2 (asserted above), which is all `avx2_dots` requires;
        // it reads memory only through bounds-checked slices.
        unsafe { avx2_dots(q, data, rows, out) }
    }

    pub fn portable_dots(q: &[i8], data: &[i8], rows: &[u32], out: &mut [i32]) {
        let d = q.len();
        for (o, &r) in out.iter_mut().zip(rows) {
            *o = portable_dot(q, &data[r as usize * d..(r as usize + 1) * d]);
        }
    }

    /// Sixteen independent lanes so the compiler vectorises it on any target.
    fn portable_dot(a: &[i8], b: &[i8]) -> i32 {
        let mut acc = [0i32; 16];
        let split = a.len() / 16 * 16;
        for (ca, cb) in a[..split].chunks_exact(16).zip(b[..split].chunks_exact(16)) {
            for i in 0..16 {
                acc[i] += i32::from(ca[i]) * i32::from(cb[i]);
            }
        }
        let tail: i32 = a[split..]
            .iter()
            .zip(&b[split..])
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        acc.iter().sum::<i32>() + tail
    }

    /// 32 bytes per step: `|q| * sign(q) r` as unsigned x signed bytes (`vpmaddubsw`, pairs
    /// summed into 16 bits: at most 2 * 127 * 127 = 32,258, no saturation), then widened and
    /// summed into 32-bit lanes (`vpmaddwd`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2_dots(q: &[i8], data: &[i8], rows: &[u32], out: &mut [i32]) {
        use std::arch::x86_64::*;
        let d = q.len();
        let steps = d / 32;
        let ones = _mm256_set1_epi16(1);
        for (o, &r) in out.iter_mut().zip(rows) {
            let row = &data[r as usize * d..(r as usize + 1) * d];
            let mut acc = _mm256_setzero_si256();
            // The query stays in L1; recomputing |q| per row is free next to loading the row.
            for (chunk, qc) in row.chunks_exact(32).zip(q.chunks_exact(32)) {
                let qv = load(qc);
                let p =
                    _mm256_maddubs_epi16(_mm256_abs_epi8(qv), _mm256_sign_epi8(load(chunk), qv));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
            }
            let half = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256(acc, 1),
            );
            let quarter = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0b01_00_11_10));
            let sum = _mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, 0b10_11_00_01));
            let tail: i32 = q[steps * 32..]
                .iter()
                .zip(&row[steps * 32..])
                .map(|(x, y)| i32::from(*x) * i32::from(*y))
                .sum();
            *o = _mm_cvtsi128_si32(sum) + tail;
        }
    }

    /// An unaligned 32-byte load from a slice of exactly 32 bytes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(unsafe_code)]
    fn load(chunk: &[i8]) -> std::arch::x86_64::__m256i {
        assert_eq!(chunk.len(), 32);
        // SAFETY: the slice holds 32 readable bytes (asserted) and `loadu` has no alignment
        // requirement.
        unsafe { std::arch::x86_64::_mm256_loadu_si256(chunk.as_ptr().cast()) }
    }
}

/// One scan thread's share of the first pass: its best `pool` rows by int8 score, and every
/// row that could still matter after exact rescoring.
struct FirstPass {
    pool: BinaryHeap<Worst>,
    /// (row, int8 score) of every row scored within `2 * max_bound` of the pool's lowest score
    /// at the time (or before the pool was full); includes the pool's rows.
    candidates: Vec<(usize, f32)>,
}

impl Int8Matrix {
    /// Quantises every row of `m`.
    pub fn from_matrix(m: &VectorMatrix) -> Self {
        let mut q = Int8Matrix {
            dims: m.dims,
            data: Vec::with_capacity(m.data.len()),
            scale: Vec::with_capacity(m.len()),
            l1: Vec::with_capacity(m.len()),
            l2: Vec::with_capacity(m.len()),
            err2: Vec::with_capacity(m.len()),
            ..Default::default()
        };
        for i in 0..m.len() {
            let row = m.row(i);
            let start = q.data.len();
            let scale = quantize(row, &mut q.data);
            q.scale.push(scale);
            q.l1.push(row.iter().map(|x| x.abs()).sum());
            q.l2.push(norm2(row));
            let err: Vec<f32> = row
                .iter()
                .zip(&q.data[start..])
                .map(|(x, v)| x - f32::from(*v) * scale)
                .collect();
            q.err2.push(norm2(&err));
        }
        let max = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(*x));
        q.max_scale = max(&q.scale);
        q.max_l1 = max(&q.l1);
        q.max_l2 = max(&q.l2);
        q.max_err2 = max(&q.err2);
        q
    }

    pub fn len(&self) -> usize {
        self.scale.len()
    }

    /// First pass over `range`: int8 scores of the allowed rows, a block of rows per kernel call.
    fn first_pass(
        &self,
        qq: &[i8],
        q_scale: f32,
        range: std::ops::Range<usize>,
        pool: usize,
        slack: f32,
        allow: &(impl Fn(usize) -> bool + Sync),
    ) -> FirstPass {
        let mut heap = BinaryHeap::with_capacity(pool + 1);
        let mut candidates = Vec::with_capacity(pool * 2);
        let mut rows = [0u32; kernel::BLOCK];
        let mut raw = [0i32; kernel::BLOCK];
        let mut cut = f32::NEG_INFINITY;
        let mut start = range.start;
        while start < range.end {
            let end = (start + kernel::BLOCK).min(range.end);
            let mut m = 0;
            for i in start..end {
                if allow(i) {
                    rows[m] = i as u32;
                    m += 1;
                }
            }
            kernel::dots(qq, &self.data, &rows[..m], &mut raw[..m]);
            for (&i, &dot) in rows[..m].iter().zip(&raw[..m]) {
                let i = i as usize;
                let s = dot as f32 * q_scale * self.scale[i];
                if s < cut {
                    continue;
                }
                candidates.push((i, s));
                if heap.len() < pool {
                    heap.push(Worst(s, i));
                } else if let Some(worst) = heap.peek()
                    && s > worst.0
                {
                    heap.pop();
                    heap.push(Worst(s, i));
                }
                if heap.len() == pool
                    && let Some(worst) = heap.peek()
                {
                    cut = worst.0 - slack;
                }
            }
            start = end;
        }
        FirstPass {
            pool: heap,
            candidates,
        }
    }

    /// [`Int8Matrix::top_k_on`] on up to [`scan_threads`] threads, the caller's included.
    #[cfg(test)]
    pub fn top_k(
        &self,
        exact: &VectorMatrix,
        query: &[f32],
        k: usize,
        allow: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        self.top_k_on(exact, query, k, scan_threads(), allow)
    }

    /// The same result as `exact.top_k(query, k, allow)` (`exact` must be the matrix this was
    /// quantised from), reading int8 rows for the scan and `f32` rows only for rescoring, on at
    /// most `threads` threads (the caller's included; 1 scans on the caller's thread only).
    pub fn top_k_on(
        &self,
        exact: &VectorMatrix,
        query: &[f32],
        k: usize,
        threads: usize,
        allow: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        let n = self.len();
        assert_eq!(
            n,
            exact.len(),
            "int8 matrix out of step with its f32 matrix"
        );
        assert_eq!(query.len(), self.dims, "query of the wrong dimension");
        if k == 0 || n == 0 {
            return Vec::new();
        }
        let mut qq = Vec::with_capacity(self.dims);
        let q_scale = quantize(query, &mut qq);
        let q_hat: Vec<f32> = qq.iter().map(|x| f32::from(*x) * q_scale).collect();
        let q_l1_hat: f32 = q_hat.iter().map(|x| x.abs()).sum();
        let q_l2_hat = norm2(&q_hat);
        let q_err2 = norm2(
            &query
                .iter()
                .zip(&q_hat)
                .map(|(a, b)| a - b)
                .collect::<Vec<f32>>(),
        );
        // x.y - x^.y^ = x.(y - y^) + y^.(x - x^): bounded both by Hoelder (L1 x Linf) and by
        // Cauchy-Schwarz (L2 x L2); the smaller holds. Plus slack for float rounding.
        let bound_of = |l1: f32, scale: f32, l2: f32, err2: f32| {
            let holder = (l1 * q_scale + q_l1_hat * scale) * 0.5;
            let cauchy = l2 * q_err2 + q_l2_hat * err2;
            holder.min(cauchy) * (1.0 + 1e-4) + 1e-4
        };
        let bound = |i: usize| bound_of(self.l1[i], self.scale[i], self.l2[i], self.err2[i]);
        // Every row's bound is at most this (each term grows with the row's values).
        let max_bound = bound_of(self.max_l1, self.max_scale, self.max_l2, self.max_err2);
        // Let t be the lowest int8 score of the final pool. Each pool row scores exactly at
        // least t - max_bound, so the k-th exact score (the bar) is at least that, and a row
        // whose int8 score is below t - 2 * max_bound can never reach the bar. A scan thread's
        // pool floor is never above t, so it may drop rows below its floor minus that slack
        // (plus a margin for float rounding).
        let slack = 2.0 * max_bound * (1.0 + 1e-3) + 1e-3;
        let pool = (k * 4).max(64);
        let threads = if n >= PARALLEL_ROWS { threads } else { 1 };
        let parts: Vec<FirstPass> = if threads <= 1 {
            vec![self.first_pass(&qq, q_scale, 0..n, pool, slack, &allow)]
        } else {
            // The caller scans the first share; one spawned thread scans each other share.
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = (1..threads)
                    .map(|t| {
                        let (qq, allow) = (&qq, &allow);
                        let range = t * per..((t + 1) * per).min(n);
                        s.spawn(move || self.first_pass(qq, q_scale, range, pool, slack, allow))
                    })
                    .collect();
                let mut parts = vec![self.first_pass(&qq, q_scale, 0..per, pool, slack, &allow)];
                parts.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("vector scan thread panicked")),
                );
                parts
            })
        };
        let mut first: BinaryHeap<Worst> = BinaryHeap::with_capacity(pool * threads);
        for part in &parts {
            first.extend(part.pool.iter().copied());
        }
        while first.len() > pool {
            first.pop();
        }
        let mut in_pool: Vec<usize> = first.iter().map(|w| w.1).collect();
        in_pool.sort_unstable();
        // Rescore the pool exactly; the k-th exact score is the bar every other row must reach.
        let mut best: Vec<(usize, f32)> = in_pool
            .iter()
            .map(|&i| (i, dot(query, exact.row(i))))
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        if best.len() == k {
            let bar = best[k - 1].1;
            for &(i, s) in parts.iter().flat_map(|p| &p.candidates) {
                if s + bound(i) >= bar && in_pool.binary_search(&i).is_err() {
                    best.push((i, dot(query, exact.row(i))));
                }
            }
            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            best.truncate(k);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip() {
        let v = vec![0.0, -1.5, 3.25, f32::MIN_POSITIVE];
        assert_eq!(blob_to_f32(&f32_to_blob(&v)), v);
    }

    #[test]
    fn top_k_matches_brute_force_on_both_paths() {
        // Deterministic pseudo-random rows; above PARALLEL_ROWS so the threaded path runs too.
        let dims = 16;
        let mut m = VectorMatrix::new(dims);
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for _ in 0..(PARALLEL_ROWS + 1000) {
            let row: Vec<f32> = (0..dims).map(|_| next()).collect();
            m.push(&row);
        }
        let q: Vec<f32> = (0..dims).map(|_| next()).collect();
        let mut expected: Vec<(usize, f32)> = (0..m.len())
            .filter(|i| i % 3 != 0)
            .map(|i| (i, dot(&q, m.row(i))))
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        expected.truncate(10);
        assert_eq!(m.top_k(&q, 10, |i| i % 3 != 0), expected);
        // The int8 first pass with exact rescoring gives exactly the same answer.
        let q8 = Int8Matrix::from_matrix(&m);
        assert_eq!(q8.top_k(&m, &q, 10, |i| i % 3 != 0), expected);
        for k in [1, 3, 100] {
            assert_eq!(q8.top_k(&m, &q, k, |_| true), m.top_k(&q, k, |_| true));
        }
        // Rows that tie with the k-th best are settled by row id on both paths.
        let mut dup = VectorMatrix::new(dims);
        for _ in 0..300 {
            dup.push(m.row(7));
            dup.push(m.row(8));
        }
        let dup8 = Int8Matrix::from_matrix(&dup);
        assert_eq!(
            dup8.top_k(&dup, &q, 5, |_| true),
            dup.top_k(&q, 5, |_| true)
        );
        let small = VectorMatrix::new(dims);
        assert!(small.top_k(&q, 10, |_| true).is_empty());
        assert!(m.top_k(&q, 0, |_| true).is_empty());
    }

    #[test]
    fn int8_top_k_is_exact_at_384_dims_with_filters() {
        // Unit vectors like the knowledge base's (384 dims), so the SIMD kernel and the error
        // bound both run as in production.
        let dims = 384;
        let mut x = 99u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut unit = |bias: f32| {
            let v: Vec<f32> = (0..dims).map(|d| next() + bias * (d % 7) as f32).collect();
            let n = norm2(&v);
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let mut m = VectorMatrix::new(dims);
        for i in 0..(PARALLEL_ROWS + 3000) {
            m.push(&unit(if i % 5 == 0 { 0.2 } else { 0.0 }));
        }
        let q8 = Int8Matrix::from_matrix(&m);
        for t in 0..5 {
            let q = unit(0.05 * t as f32);
            for k in [1, 5, 50, 200] {
                assert_eq!(q8.top_k(&m, &q, k, |_| true), m.top_k(&q, k, |_| true));
                let allow = |i: usize| i % 11 == t || i > PARALLEL_ROWS;
                let expected = m.top_k(&q, k, allow);
                for threads in [1, 2, 3] {
                    assert_eq!(q8.top_k_on(&m, &q, k, threads, allow), expected);
                }
            }
        }
        // A thousand near-copies of one row: their exact scores differ by far less than the
        // quantisation error, so int8 order among them is noise and the exact best rows lie
        // outside the first pass's pool; only the error bound brings them back.
        let base = unit(0.0);
        let mut near = VectorMatrix::new(dims);
        for i in 0..(PARALLEL_ROWS + 1000) {
            let noise = unit(0.0);
            let v: Vec<f32> = if i % 21 == 0 {
                base.iter().zip(&noise).map(|(x, e)| x + 4e-3 * e).collect()
            } else {
                noise
            };
            near.push(&v);
        }
        let near8 = Int8Matrix::from_matrix(&near);
        for k in [1, 5, 64] {
            let expected = near.top_k(&base, k, |_| true);
            assert_eq!(near8.top_k(&near, &base, k, |_| true), expected, "k = {k}");
            assert_eq!(near8.top_k_on(&near, &base, k, 1, |_| true), expected);
        }
        // Fewer allowed rows than the first pass keeps.
        let q = unit(0.0);
        assert_eq!(
            q8.top_k(&m, &q, 5, |i| i % 1000 == 3),
            m.top_k(&q, 5, |i| i % 1000 == 3)
        );
    }

    #[test]
    fn simd_kernel_equals_the_portable_loop() {
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 255) as i32 - 127
        };
        // Extremes included; dimensions with and without a tail past the last 32 bytes.
        for dims in [1, 31, 32, 33, 100, 384, 385] {
            let rows = 50;
            let mut data: Vec<i8> = (0..rows * dims).map(|_| next() as i8).collect();
            let mut q: Vec<i8> = (0..dims).map(|_| next() as i8).collect();
            data[..dims].fill(-127);
            data[dims..2 * dims].fill(127);
            q[0] = -127;
            let ids: Vec<u32> = (0..rows as u32).rev().collect();
            let mut portable = vec![0; rows];
            kernel::portable_dots(&q, &data, &ids, &mut portable);
            let naive: Vec<i32> = ids
                .iter()
                .map(|&r| {
                    let row = &data[r as usize * dims..(r as usize + 1) * dims];
                    q.iter()
                        .zip(row)
                        .map(|(a, b)| i32::from(*a) * i32::from(*b))
                        .sum()
                })
                .collect();
            assert_eq!(portable, naive, "portable kernel, {dims} dims");
            let mut dispatched = vec![0; rows];
            kernel::dots(&q, &data, &ids, &mut dispatched);
            assert_eq!(dispatched, naive, "dispatched kernel, {dims} dims");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0; rows];
                kernel::avx2_dots_checked(&q, &data, &ids, &mut avx2);
                assert_eq!(avx2, naive, "AVX2 kernel, {dims} dims");
            } else {
                eprintln!("this CPU has no AVX2: only the portable kernel was checked");
            }
        }
    }
}
