//! Leave-one-out retrieval metrics with cosine similarity: recall@k and mAP@R.
//!
//! Each example is a query against all the others. Its neighbours are ranked by cosine
//! similarity, highest first (ties by index); a neighbour is relevant when it has the
//! query's label. With R the number of relevant neighbours (the query's class size − 1):
//! - recall@k: 1 if any of the first k neighbours is relevant, else 0 (TF Similarity's
//!   `RecallAtK`);
//! - AP@R = (1/R) Σ_{i ≤ R, neighbour i relevant} precision@i (Musgrave et al., "A metric
//!   learning reality check", 2020; TF Similarity's `MapAtK` with k = R).
//!
//! Each is averaged over the queries with R ≥ 1.

/// Averages over a set of queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Retrieval {
    /// Share of queries whose nearest neighbour is relevant.
    pub(crate) recall_at_1: f64,
    /// Share of queries with a relevant neighbour among the 5 nearest.
    pub(crate) recall_at_5: f64,
    /// Mean AP@R.
    pub(crate) map_at_r: f64,
}

/// 1 if any of the first `k` ranked neighbours is relevant, else 0.
pub(crate) fn recall_at_k(relevant: &[bool], k: usize) -> f64 {
    f64::from(u8::from(relevant.iter().take(k).any(|&r| r)))
}

/// AP@R of one query: `relevant` lists the ranked neighbours, `r` is how many are relevant
/// in all. 0 when `r` is 0.
pub(crate) fn average_precision_at_r(relevant: &[bool], r: usize) -> f64 {
    if r == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, _) in relevant.iter().take(r).enumerate().filter(|(_, &rel)| rel) {
        hits += 1;
        sum += hits as f64 / (i + 1) as f64;
    }
    sum / r as f64
}

/// Leave-one-out cosine retrieval over `embeddings` (row-major, `dims` columns).
pub(crate) fn evaluate(embeddings: &[f32], dims: usize, labels: &[u32]) -> Retrieval {
    let n = labels.len();
    assert_eq!(embeddings.len(), n * dims, "evaluate: embeddings shape");
    // Unit rows, so the dot product is the cosine similarity.
    let unit: Vec<f64> = embeddings
        .chunks_exact(dims.max(1))
        .flat_map(|row| {
            let norm = row
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            row.iter().map(move |v| f64::from(*v) / norm)
        })
        .collect();
    let (mut r1, mut r5, mut map, mut queries) = (0.0, 0.0, 0.0, 0usize);
    let mut order: Vec<(f64, usize)> = Vec::with_capacity(n);
    let mut relevant = Vec::with_capacity(n);
    for q in 0..n {
        let r = labels.iter().filter(|&&l| l == labels[q]).count() - 1;
        if r == 0 {
            continue;
        }
        let qrow = &unit[q * dims..(q + 1) * dims];
        order.clear();
        order.extend((0..n).filter(|&j| j != q).map(|j| {
            let sim = qrow
                .iter()
                .zip(&unit[j * dims..(j + 1) * dims])
                .map(|(a, b)| a * b)
                .sum();
            (sim, j)
        }));
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        relevant.clear();
        relevant.extend(order.iter().map(|&(_, j)| labels[j] == labels[q]));
        r1 += recall_at_k(&relevant, 1);
        r5 += recall_at_k(&relevant, 5);
        map += average_precision_at_r(&relevant, r);
        queries += 1;
    }
    let count = queries.max(1) as f64;
    Retrieval {
        recall_at_1: r1 / count,
        recall_at_5: r5 / count,
        map_at_r: map / count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: bool = true;
    const F: bool = false;

    #[test]
    fn recall_at_k_by_hand() {
        assert_eq!(recall_at_k(&[F, F, T, F], 1), 0.0);
        assert_eq!(recall_at_k(&[F, F, T, F], 2), 0.0);
        assert_eq!(recall_at_k(&[F, F, T, F], 3), 1.0);
        assert_eq!(recall_at_k(&[T], 5), 1.0);
        assert_eq!(recall_at_k(&[], 5), 0.0);
    }

    #[test]
    fn ap_at_r_by_hand() {
        // R = 3, ranking T F T | T: (1/1 + 2/3) / 3 = 5/9; the 4th place is past R.
        assert!((average_precision_at_r(&[T, F, T, T], 3) - 5.0 / 9.0).abs() < 1e-12);
        // Musgrave et al.'s example: R = 10, relevant at 1, 3, 4 of the first 10:
        // (1 + 2/3 + 3/4) / 10.
        let ranked = [T, F, T, T, F, F, F, F, F, F, T];
        let want = (1.0 + 2.0 / 3.0 + 3.0 / 4.0) / 10.0;
        assert!((average_precision_at_r(&ranked, 10) - want).abs() < 1e-12);
        assert_eq!(average_precision_at_r(&[T, T, F], 2), 1.0);
        assert_eq!(average_precision_at_r(&[F, F, T, T], 2), 0.0);
        assert_eq!(average_precision_at_r(&[F], 0), 0.0);
    }

    #[test]
    fn leave_one_out_on_a_small_set() {
        // Two tight clusters on the x and y axes, plus an item of class 0 that sits with
        // class 1.
        let x = [
            1.0, 0.0, // 0: class 0
            0.9, 0.1, // 1: class 0
            0.0, 1.0, // 2: class 1
            0.1, 0.9, // 3: class 1
            0.05, 1.0, // 4: class 0, misplaced
        ];
        let labels = [0, 0, 1, 1, 0];
        let got = evaluate(&x, 2, &labels);
        // Query 0: ranking 1, 3, 4, 2 -> relevant T F T F, R = 2: AP = 1/2; r@1 = 1.
        // Query 1: ranking 0, 3, 4, 2 -> T F T F: AP = 1/2; r@1 = 1.
        // Query 2: ranking 4, 3, 1, 0 -> F T F F, R = 1: AP = 0; r@1 = 0, r@5 = 1.
        // Query 3: ranking 4, 2, 1, 0 -> F T F F: AP = 0; r@1 = 0.
        // Query 4: ranking 2, 3, 1, 0 -> F F T T, R = 2: AP = 0; r@1 = 0.
        assert!((got.recall_at_1 - 2.0 / 5.0).abs() < 1e-12, "{got:?}");
        assert_eq!(got.recall_at_5, 1.0);
        assert!((got.map_at_r - 1.0 / 5.0).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn perfect_clusters_score_one_and_scale_does_not_matter() {
        let x = [1.0, 0.0, 5.0, 0.1, 0.0, 2.0, 0.1, 3.0];
        let got = evaluate(&x, 2, &[7, 7, 8, 8]);
        assert_eq!(
            got,
            Retrieval {
                recall_at_1: 1.0,
                recall_at_5: 1.0,
                map_at_r: 1.0
            }
        );
    }
}
