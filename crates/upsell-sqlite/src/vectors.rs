//! Exact nearest-neighbour search over a contiguous `f32` matrix, shared by the knowledge-base
//! index and similar-customer search, plus the little-endian BLOB encoding of vectors.

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
            std::thread::available_parallelism()
                .map(|p| p.get())
                .unwrap_or(1)
                .min(4)
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
    pub fn top_k(
        &self,
        query: &[f32],
        k: usize,
        allow: impl Fn(usize) -> bool + Sync,
    ) -> Vec<(usize, f32)> {
        self.top_k_by(query, k, allow, dot)
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
        let small = VectorMatrix::new(dims);
        assert!(small.top_k(&q, 10, |_| true).is_empty());
        assert!(m.top_k(&q, 0, |_| true).is_empty());
    }
}
