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
fn scan_threads() -> usize {
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

    pub fn with_capacity(dims: usize, rows: usize) -> Self {
        VectorMatrix {
            dims,
            data: Vec::with_capacity(dims * rows),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dims).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
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

    /// Top `k` rows by `score(i)` among those `allow` accepts, writing every allowed row's score
    /// into `scores` (rows are split across cores like [`VectorMatrix::top_k_by`]).
    fn scan_scores(
        n: usize,
        k: usize,
        allow: &(impl Fn(usize) -> bool + Sync),
        score: impl Fn(usize) -> f32 + Sync,
        scores: &mut [f32],
    ) -> Vec<(usize, f32)> {
        let scan = |offset: usize, out: &mut [f32]| {
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for (j, slot) in out.iter_mut().enumerate() {
                let i = offset + j;
                if !allow(i) {
                    continue;
                }
                let s = score(i);
                *slot = s;
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
        };
        let threads = if n >= PARALLEL_ROWS {
            scan_threads()
        } else {
            1
        };
        let mut heap = if threads <= 1 {
            scan(0, &mut scores[..n])
        } else {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = scores[..n]
                    .chunks_mut(per)
                    .enumerate()
                    .map(|(t, part)| {
                        let scan = &scan;
                        s.spawn(move || scan(t * per, part))
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
        heap.into_iter().map(|w| (w.1, w.0)).collect()
    }

    /// Top `k` by dot product (cosine similarity for unit vectors).
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
    data: Vec<i8>,
    /// Per row: the value of one quantisation step.
    scale: Vec<f32>,
    /// Per row: the L1 norm of the original row (for the error bound).
    l1: Vec<f32>,
    /// Per row: the L2 norms of the original row and of its quantisation error.
    l2: Vec<f32>,
    err2: Vec<f32>,
}

/// Symmetric quantisation of one vector: `x ~= q * scale`, `|x - q * scale| <= scale / 2`.
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

/// Integer dot product; sixteen independent lanes so the compiler vectorises it.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
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
        q
    }

    pub fn len(&self) -> usize {
        self.scale.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    fn row(&self, i: usize) -> &[i8] {
        &self.data[i * self.dims..(i + 1) * self.dims]
    }

    /// The same result as `exact.top_k(query, k, allow)` (`exact` must be the matrix this was
    /// quantised from), reading int8 rows for the scan and `f32` rows only for rescoring.
    pub fn top_k(
        &self,
        exact: &VectorMatrix,
        query: &[f32],
        k: usize,
        allow: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        let n = self.len();
        assert_eq!(
            n,
            exact.len(),
            "int8 matrix out of step with its f32 matrix"
        );
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
        let bound = |i: usize| {
            let holder = (self.l1[i] * q_scale + q_l1_hat * self.scale[i]) * 0.5;
            let cauchy = self.l2[i] * q_err2 + q_l2_hat * self.err2[i];
            holder.min(cauchy) * (1.0 + 1e-4) + 1e-4
        };
        let approx = |i: usize| dot_i8(&qq, self.row(i)) as f32 * q_scale * self.scale[i];
        // First pass over int8 rows: approximate scores of every allowed row.
        let pool = (k * 4).max(64);
        let mut scores = vec![f32::NEG_INFINITY; n];
        let first = VectorMatrix::scan_scores(n, pool, &allow, approx, &mut scores);
        // Rescore the pool exactly; the k-th exact score is the bar every other row must reach.
        let mut best: Vec<(usize, f32)> = first
            .iter()
            .map(|&(i, _)| (i, dot(query, exact.row(i))))
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        if best.len() == k {
            let bar = best[k - 1].1;
            let in_pool: std::collections::HashSet<usize> = first.iter().map(|p| p.0).collect();
            for (i, s) in scores.iter().enumerate() {
                if *s > f32::NEG_INFINITY && s + bound(i) >= bar && !in_pool.contains(&i) {
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
        let small = VectorMatrix::new(dims);
        assert!(small.top_k(&q, 10, |_| true).is_empty());
        assert!(m.top_k(&q, 0, |_| true).is_empty());
    }
}
