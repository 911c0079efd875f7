//! Property tests for the core types: building views, batches and inputs from arbitrary
//! shapes and values gives a value or a typed error, never a panic; `validate` catches
//! every bad value; `reduce` is linear in the weights; names parse or give typed errors.
//!
//! Case counts are modest for CI; raise them with `PROPTEST_CASES=N`.

use metric_loss_core::{
    reduce, Batch, Embeddings, LossError, LossInput, LossOutput, NegativeStrategy,
    PositiveStrategy, Reduction, RowMajorBuffer, SampleWeight, Workspace,
};
use metric_loss_testkit::{cases, nasty};
use proptest::prelude::*;

/// A declared dimension: small, or absurd (the product with the rows overflows).
fn dimension() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..6,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX / 2 + 1),
        1 => any::<usize>(),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    /// `from_row_major` accepts exactly the buffers holding rows × cols values, even when
    /// rows × cols overflows.
    #[test]
    fn embeddings_accept_exactly_matching_buffers(
        data in prop::collection::vec(nasty(), 0..24),
        rows in dimension(),
        cols in dimension(),
    ) {
        match Embeddings::from_row_major(&data, rows, cols) {
            Ok(e) => {
                prop_assert_eq!(rows.checked_mul(cols), Some(data.len()));
                prop_assert_eq!((e.rows(), e.cols()), (rows, cols));
                // check_finite names the first bad value, whatever the width.
                match e.check_finite("x") {
                    Ok(()) => prop_assert!(data.iter().all(|v| v.is_finite())),
                    Err(LossError::NonFiniteEmbedding { row, col, value, .. }) => {
                        let at = data.iter().position(|v| !v.is_finite()).unwrap();
                        prop_assert_eq!((row, col), (at / cols.max(1), at % cols.max(1)));
                        prop_assert!(value.is_nan() == data[at].is_nan());
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
                if rows > 0 && cols > 0 {
                    prop_assert_eq!(e.row(rows - 1).len(), cols);
                }
            }
            Err(LossError::BufferLength { got, .. }) => {
                prop_assert_eq!(got, data.len());
                prop_assert_ne!(rows.checked_mul(cols), Some(data.len()));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// `Batch::new` needs one label per row; `LossInput::validate` accepts exactly the
    /// inputs with matching widths, at least one column when there are rows, finite
    /// values, and weights of the right length that are finite.
    #[test]
    fn validate_accepts_exactly_the_valid_inputs(
        n in 0usize..5,
        dims in 0usize..4,
        m in 0usize..5,
        kdims in 0usize..4,
        q in prop::collection::vec(nasty(), 20),
        k in prop::collection::vec(nasty(), 20),
        labels in prop::collection::vec(any::<i64>(), 0..6),
        keys in any::<bool>(),
        weights in prop_oneof![
            Just(None),
            nasty().prop_map(|w| Some(vec![w])),
            prop::collection::vec(nasty(), 0..6).prop_map(Some),
        ],
    ) {
        let qd = &q[..n * dims];
        let kd = &k[..m * kdims];
        let qe = Embeddings::from_row_major(qd, n, dims).unwrap();
        let ke = Embeddings::from_row_major(kd, m, kdims).unwrap();
        let qb = match Batch::new(&labels, qe) {
            Ok(b) => b,
            Err(e) => {
                prop_assert!(matches!(e, LossError::LengthMismatch { .. }), "{e}");
                prop_assert_ne!(labels.len(), n);
                return Ok(());
            }
        };
        let key_labels: Vec<i64> = (0..m as i64).collect();
        let kb = Batch::new(&key_labels, ke).unwrap();
        let mut input = LossInput::new(qb);
        if keys {
            input = input.with_keys(kb);
        }
        let w_owned = weights.clone().unwrap_or_default();
        let sw = match (&weights, w_owned.len()) {
            (None, _) => SampleWeight::None,
            (Some(_), 1) => SampleWeight::Scalar(w_owned[0]),
            (Some(_), _) => SampleWeight::PerExample(&w_owned),
        };
        input = input.with_sample_weight(sw);
        let expected_ok = !(dims == 0 && n > 0)
            && qd.iter().all(|v| v.is_finite())
            && (!keys
                || (!(kdims == 0 && m > 0)
                    && (kdims == dims || m == 0)
                    && (m > 0 || n == 0)
                    && kd.iter().all(|v| v.is_finite())))
            && match sw {
                SampleWeight::None => true,
                SampleWeight::Scalar(w) => w.is_finite(),
                SampleWeight::PerExample(w) => w.len() == n && w.iter().all(|v| v.is_finite()),
            };
        let got = input.validate();
        prop_assert_eq!(got.is_ok(), expected_ok, "{:?}", got);
        if let Err(e) = got {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// `reduce` is linear in the weights, ignores the per-example values of zero weights
    /// (even infinite ones), and gives 0 for an empty batch.
    #[test]
    fn reduce_is_linear_in_the_weights(
        losses in prop::collection::vec(0.0..10.0f64, 0..8),
        weights in prop::collection::vec(-2.0..2.0f64, 8),
        c in -4.0..4.0f64,
        reduction in prop::sample::select(vec![Reduction::Auto, Reduction::SumOverBatchSize, Reduction::Sum, Reduction::None]),
    ) {
        let w = &weights[..losses.len()];
        let scaled: Vec<f64> = w.iter().map(|v| v * c).collect();
        let a = reduce(&losses, &SampleWeight::PerExample(w), reduction);
        let b = reduce(&losses, &SampleWeight::PerExample(&scaled), reduction);
        prop_assert!((b - c * a).abs() <= 1e-12 * (1.0 + (c * a).abs()), "{b} vs {}", c * a);
        let mut with_inf = losses.clone();
        let mut zeroed = w.to_vec();
        if !with_inf.is_empty() {
            with_inf[0] = f64::INFINITY;
            zeroed[0] = 0.0;
            let x = reduce(&with_inf, &SampleWeight::PerExample(&zeroed), reduction);
            prop_assert!(x.is_finite());
        } else {
            prop_assert_eq!(a, 0.0);
        }
        // f32 agrees.
        let l32: Vec<f32> = losses.iter().map(|v| *v as f32).collect();
        let w32: Vec<f32> = w.iter().map(|v| *v as f32).collect();
        let a32 = reduce(&l32, &SampleWeight::PerExample(&w32), reduction);
        prop_assert!((f64::from(a32) - a).abs() <= 1e-5 * (1.0 + a.abs()));
    }

    /// Every name parses to itself or gives a typed error naming the input.
    #[test]
    fn names_parse_or_give_typed_errors(s in prop_oneof![".*", "[a-zA-Z_ -]{0,20}"]) {
        match s.parse::<Reduction>() {
            Ok(r) => prop_assert_eq!(r.name(), s.trim().to_ascii_lowercase()),
            Err(e) => prop_assert!(matches!(e, LossError::UnknownReduction { .. }), "{e}"),
        }
        match s.parse::<PositiveStrategy>() {
            Ok(p) => prop_assert_eq!(p.name(), s.as_str()),
            Err(e) => prop_assert!(matches!(e, LossError::InvalidStrategy { .. }), "{e}"),
        }
        match s.parse::<NegativeStrategy>() {
            Ok(p) => prop_assert_eq!(p.name(), s.as_str()),
            Err(e) => prop_assert!(matches!(e, LossError::InvalidStrategy { .. }), "{e}"),
        }
    }

    /// `RowMajorBuffer` transposes nalgebra's column-major storage exactly, and
    /// `LossOutput::reset` sizes every buffer, reusing its allocation.
    #[test]
    fn buffers_have_the_declared_shapes(
        rows in 0usize..6,
        cols in 0usize..6,
        values in prop::collection::vec(nasty(), 36),
        m in 0usize..4,
        gradient in any::<bool>(),
    ) {
        let matrix = nalgebra::DMatrix::from_fn(rows, cols, |i, j| values[i * 6 + j]);
        let mut buffer = RowMajorBuffer::default();
        let view = buffer.copy_from(&matrix);
        prop_assert_eq!((view.rows(), view.cols()), (rows, cols));
        for i in 0..rows {
            for j in 0..cols {
                prop_assert_eq!(view.row(i)[j].to_bits(), values[i * 6 + j].to_bits());
            }
        }
        let mut out = LossOutput::<f32>::new();
        out.reset(rows, m, cols, gradient);
        prop_assert_eq!(out.per_example.len(), rows);
        prop_assert_eq!(out.grad_queries.len(), if gradient { rows * cols } else { 0 });
        prop_assert_eq!(out.grad_keys.len(), if gradient { m * cols } else { 0 });
        let mut ws = Workspace::new();
        ws.get::<Vec<f32>>().extend([1.0, 2.0]);
        prop_assert_eq!(ws.get::<Vec<f32>>().len(), 2);
        ws.clear();
        prop_assert!(ws.get::<Vec<f32>>().is_empty());
    }
}
