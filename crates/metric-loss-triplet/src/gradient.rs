//! Pushing the mined pairs' gradients down to the embeddings, rows split over threads.
//!
//! Every mined pair (anchor i, key j) at distance `value` with upstream gradient `g` adds
//! a query term to gradient row i and a key term to key-gradient row j. Taken one pair
//! after another, the terms land on rows all over the buffer, so the pairs are listed
//! first, in the order a sequential loop over the anchors visits them, and indexed by key.
//! Each output row then adds exactly its own terms, in that same order: the rows can be
//! split over threads, and the result is the sequential loop's bit for bit whatever the
//! split (a test compares them).

use metric_loss_core::{Distance, Embeddings, Float};
use metric_loss_distances::parallel::{for_each_item, for_rows_on};

/// One pair's share of the gradient.
#[derive(Debug, Clone, Copy)]
struct Term<T> {
    query: usize,
    key: usize,
    /// The pair's distance (selects the branch of the distance's clamps).
    value: T,
    /// The upstream gradient on that distance.
    g: T,
}

/// The pairs of one call, in sequential order, indexed by query and by key. Reused across
/// calls (no allocation in steady state).
#[derive(Debug, Default)]
pub(crate) struct GradientTerms<T> {
    terms: Vec<Term<T>>,
    /// Where each query's terms start in `terms` (pushed query by query), one extra entry.
    query_start: Vec<usize>,
    /// Term indices ordered by key (stably), and where each key's start.
    by_key: Vec<usize>,
    key_start: Vec<usize>,
}

impl<T: Float> GradientTerms<T> {
    /// Starts a call with `queries` anchors.
    pub(crate) fn clear(&mut self, queries: usize) {
        self.terms.clear();
        self.query_start.clear();
        self.query_start.reserve(queries + 1);
    }

    /// Starts the terms of the next query (call once per query, in order).
    pub(crate) fn next_query(&mut self) {
        self.query_start.push(self.terms.len());
    }

    /// Adds the pair (last started query, `key`) at distance `value` with gradient `g`.
    pub(crate) fn push(&mut self, key: usize, value: T, g: T) {
        let query = self.query_start.len() - 1;
        self.terms.push(Term {
            query,
            key,
            value,
            g,
        });
    }

    /// Adds every term to the gradients: `grad_q` (`n x dims`, one row per query) and,
    /// unless `same` (the keys are the queries, and `grad_q` takes both sides),
    /// `grad_k` (`m x dims`), rows split over `threads` threads. `temps` is scratch
    /// (one row per thread), kept by the caller so that steady-state calls do not allocate.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply<D: Distance<T> + ?Sized>(
        &mut self,
        threads: usize,
        distance: &D,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        same: bool,
        grad_q: &mut [T],
        grad_k: &mut [T],
        temps: &mut Vec<T>,
    ) {
        self.query_start.push(self.terms.len());
        self.index_keys(k.rows());
        let this = &*self;
        if same {
            // Each row: its terms as query and as key, merged in term order.
            let (n, dims) = (q.rows(), q.cols().max(1));
            let threads = threads.clamp(1, n.max(1));
            temps.clear();
            temps.resize(threads * dims, T::ZERO);
            let add_rows = |r0: usize, rows: &mut [T], temp: &mut [T]| {
                for (t, row) in rows.chunks_exact_mut(dims).enumerate() {
                    this.add_row(distance, q, k, r0 + t, row, temp);
                }
            };
            if threads == 1 {
                add_rows(0, grad_q, temps);
            } else {
                let chunk = n.div_ceil(threads);
                let mut items: Vec<_> = grad_q
                    .chunks_mut(chunk * dims)
                    .zip(temps.chunks_mut(dims))
                    .enumerate()
                    .map(|(c, (rows, temp))| (c * chunk, rows, temp))
                    .collect();
                for_each_item(&mut items, &|(r0, rows, temp)| add_rows(*r0, rows, temp));
            }
            return;
        }
        for_rows_on(threads, grad_q, q.cols(), |r0, rows| {
            for (t, row) in rows.chunks_exact_mut(q.cols().max(1)).enumerate() {
                for term in &this.terms[this.query_range(r0 + t)] {
                    let (qi, kj) = (q.row(term.query), k.row(term.key));
                    distance.pair_vjp_query(qi, kj, term.value, term.g, row);
                }
            }
        });
        for_rows_on(threads, grad_k, k.cols(), |r0, rows| {
            for (t, row) in rows.chunks_exact_mut(k.cols().max(1)).enumerate() {
                for &at in &this.by_key[this.key_range(r0 + t)] {
                    let term = this.terms[at];
                    let (qi, kj) = (q.row(term.query), k.row(term.key));
                    distance.pair_vjp_key(qi, kj, term.value, term.g, row);
                }
            }
        });
    }

    fn query_range(&self, r: usize) -> std::ops::Range<usize> {
        self.query_start[r]..self.query_start[r + 1]
    }

    fn key_range(&self, r: usize) -> std::ops::Range<usize> {
        self.key_start[r]..self.key_start[r + 1]
    }

    /// `by_key` and `key_start`: a counting sort of the term indices by key, stable.
    fn index_keys(&mut self, keys: usize) {
        self.key_start.clear();
        self.key_start.resize(keys + 1, 0);
        for term in &self.terms {
            self.key_start[term.key + 1] += 1;
        }
        for j in 0..keys {
            self.key_start[j + 1] += self.key_start[j];
        }
        self.by_key.clear();
        self.by_key.resize(self.terms.len(), 0);
        // `key_start[j]` serves as key j's fill cursor, then is restored.
        for (at, term) in self.terms.iter().enumerate() {
            let slot = &mut self.key_start[term.key];
            self.by_key[*slot] = at;
            *slot += 1;
        }
        for j in (1..=keys).rev() {
            self.key_start[j] = self.key_start[j - 1];
        }
        self.key_start[0] = 0;
    }

    /// Row `r` of a batch paired with itself: every term with query `r` or key `r`, in
    /// term order. A term pairing `r` with itself adds its key side through `temp` (a row,
    /// zeroed first), as the sequential loop does: `row + (0 + x)` and `row + x` differ in
    /// the sign of a zero.
    fn add_row<D: Distance<T> + ?Sized>(
        &self,
        distance: &D,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        r: usize,
        row: &mut [T],
        temp: &mut [T],
    ) {
        let as_query = self.query_range(r);
        let as_key = &self.by_key[self.key_range(r)];
        let (mut a, mut b) = (as_query.start, 0);
        loop {
            // The next term of each list (`usize::MAX`: that list is done).
            let next_query = if a < as_query.end { a } else { usize::MAX };
            let next_key = as_key.get(b).copied().unwrap_or(usize::MAX);
            let at = next_query.min(next_key);
            if at == usize::MAX {
                break;
            }
            let term = self.terms[at];
            let (qi, kj) = (q.row(term.query), k.row(term.key));
            if at == next_query {
                distance.pair_vjp_query(qi, kj, term.value, term.g, row);
                a += 1;
            }
            if at == next_key {
                if term.query == r {
                    temp.fill(T::ZERO);
                    distance.pair_vjp_key(qi, kj, term.value, term.g, temp);
                    for (t, v) in row.iter_mut().zip(temp.iter()) {
                        *t += *v;
                    }
                } else {
                    distance.pair_vjp_key(qi, kj, term.value, term.g, row);
                }
                b += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use metric_loss_distances::DistanceKind;

    use super::*;

    /// SplitMix64.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The sequential loop the rows replace: each pair's `pair_vjp` in turn, a self pair's
    /// key share through a zeroed row.
    fn sequential(
        distance: DistanceKind,
        terms: &[Term<f64>],
        q: Embeddings<'_, f64>,
        k: Embeddings<'_, f64>,
        same: bool,
        grad_q: &mut [f64],
        grad_k: &mut [f64],
    ) {
        let dims = q.cols();
        let rows = |r: usize| r * dims..(r + 1) * dims;
        for t in terms {
            let (qi, kj) = (q.row(t.query), k.row(t.key));
            if !same {
                let (gq, gk) = (&mut grad_q[rows(t.query)], &mut grad_k[rows(t.key)]);
                distance.pair_vjp(qi, kj, t.value, t.g, gq, gk);
            } else if t.query != t.key {
                // Both rows of the one buffer, updated in place.
                let (lo, hi) = (t.query.min(t.key), t.query.max(t.key));
                let (head, tail) = grad_q.split_at_mut(hi * dims);
                let (a, b) = (&mut head[rows(lo)], &mut tail[..dims]);
                let (gq, gk) = if t.query < t.key { (a, b) } else { (b, a) };
                distance.pair_vjp(qi, kj, t.value, t.g, gq, gk);
            } else {
                let mut gk = vec![0.0; dims];
                distance.pair_vjp(qi, kj, t.value, t.g, &mut grad_q[rows(t.query)], &mut gk);
                for (a, b) in grad_q[rows(t.key)].iter_mut().zip(&gk) {
                    *a += *b;
                }
            }
        }
    }

    /// Equal bit for bit, or a message naming the first entry that differs.
    fn assert_same(got: &[f64], expected: &[f64], dims: usize, what: &str) {
        if let Some(p) = (0..got.len()).find(|&p| got[p].to_bits() != expected[p].to_bits()) {
            let row = p / dims;
            panic!("{what}: row {row} differs: {} vs {}", got[p], expected[p]);
        }
    }

    /// Rows split over 1, 2 and 3 threads give the sequential loop's gradients bit for bit,
    /// for every distance, with self pairs, repeated keys, signed zeros and clamped values,
    /// for a batch against itself and against separate keys.
    #[test]
    fn split_rows_match_the_sequential_loop_bit_for_bit() {
        let mut state = 3;
        for case in 0..60 {
            let (n, m, dims) = (300 + case, 280 + 2 * case, 1 + case % 9);
            let value = |s: &mut u64| (next(s) % 2001) as f64 / 400.0 - 2.5;
            let xq: Vec<f64> = (0..n * dims).map(|_| value(&mut state)).collect();
            let xk: Vec<f64> = (0..m * dims).map(|_| value(&mut state)).collect();
            let q = Embeddings::from_row_major(&xq, n, dims).unwrap();
            let same = case % 2 == 0;
            let k = if same {
                q
            } else {
                Embeddings::from_row_major(&xk, m, dims).unwrap()
            };
            let keys = k.rows();
            let distance = DistanceKind::ALL[case % DistanceKind::ALL.len()];
            let mut listed = Vec::new();
            for i in 0..n {
                for _ in 0..next(&mut state) % 4 {
                    let key = match next(&mut state) % 5 {
                        0 if same => i,
                        1 => 7 % keys,
                        _ => (next(&mut state) % keys as u64) as usize,
                    };
                    let v = [-0.0, 0.0, 0.5, 1.25][(next(&mut state) % 4) as usize];
                    let g = [0.25, -1.5, -0.0][(next(&mut state) % 3) as usize];
                    listed.push(Term {
                        query: i,
                        key,
                        value: v,
                        g,
                    });
                }
            }
            let start = |len: usize| {
                (0..len)
                    .map(|t| [0.0, -0.0, 0.5][t % 3])
                    .collect::<Vec<f64>>()
            };
            let (mut eq, mut ek) = (start(n * dims), start(keys * dims));
            sequential(distance, &listed, q, k, same, &mut eq, &mut ek);
            for threads in [1, 2, 3] {
                let mut again = GradientTerms::default();
                again.clear(n);
                let mut at = 0;
                for i in 0..n {
                    again.next_query();
                    while at < listed.len() && listed[at].query == i {
                        again.push(listed[at].key, listed[at].value, listed[at].g);
                        at += 1;
                    }
                }
                let (mut gq, mut gk) = (start(n * dims), start(keys * dims));
                let mut temps = Vec::new();
                again.apply(threads, &distance, q, k, same, &mut gq, &mut gk, &mut temps);
                let what = format!("case {case} {distance} same={same} {threads} threads");
                assert_same(&gq, &eq, dims, &format!("queries: {what}"));
                if !same {
                    assert_same(&gk, &ek, dims, &format!("keys: {what}"));
                }
            }
        }
    }
}
