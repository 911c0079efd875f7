//! Property tests for PN, MultiSimilarity, Circle, SoftNearestNeighbor and XBM: arbitrary
//! shapes, labels, special values and weights give Ok or a typed error, never a panic;
//! ordinary inputs give finite outputs of the right shapes.
//!
//! Case counts are modest for CI; raise them with `PROPTEST_CASES=N`.

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    SampleWeight,
};
use metric_loss_distances::DistanceKind;
use metric_loss_losses::{
    CircleLoss, MultiSimilarityLoss, PNLoss, SoftNearestNeighborLoss, WrappedLossConfig, XBMConfig,
};
use metric_loss_testkit::{cases, nasty};
use metric_loss_triplet::TripletLossConfig;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = i64> {
    prop_oneof![6 => 0..3i64, 1 => Just(i64::MIN), 1 => Just(i64::MAX)]
}

/// Every loss of the crate with default hyper-parameters on `distance`.
fn losses(distance: DistanceKind) -> Vec<Box<dyn MetricLoss>> {
    let d = distance.name();
    let mut out: Vec<Box<dyn MetricLoss>> = Vec::new();
    let mut pn = PNLoss::builder();
    pn.distance = d.into();
    out.push(Box::new(pn.build().unwrap()));
    let mut ms = MultiSimilarityLoss::builder();
    ms.distance = d.into();
    out.push(Box::new(ms.build().unwrap()));
    let mut circle = CircleLoss::builder();
    circle.distance = d.into();
    out.push(Box::new(circle.build().unwrap()));
    let mut snn = SoftNearestNeighborLoss::builder();
    snn.distance = d.into();
    out.push(Box::new(snn.build().unwrap()));
    let triplet = TripletLossConfig::default().distance(d);
    let xbm = XBMConfig::new(WrappedLossConfig::TripletLoss(triplet), 16);
    out.push(Box::new(xbm.build().unwrap()));
    out
}

#[derive(Debug, Clone)]
struct Case {
    distance: DistanceKind,
    n: usize,
    dims: usize,
    data: Vec<f64>,
    labels: Vec<i64>,
    keys: Option<(usize, usize, Vec<f64>, Vec<i64>)>,
    weights: Option<Vec<f64>>,
}

fn case(values: BoxedStrategy<f64>) -> impl Strategy<Value = Case> {
    (
        prop::sample::select(DistanceKind::ALL.to_vec()),
        0usize..6,
        0usize..4,
        0usize..6,
        0usize..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(move |(distance, n, dims, m, kd, keys, weighted)| {
            let kd = if kd == 3 { dims } else { kd };
            (
                prop::collection::vec(values.clone(), n * dims),
                prop::collection::vec(label(), n),
                prop::collection::vec(values.clone(), m * kd),
                prop::collection::vec(label(), m),
                prop::collection::vec(values.clone(), n),
            )
                .prop_map(move |(data, labels, kdata, klabels, w)| Case {
                    distance,
                    n,
                    dims,
                    data,
                    labels,
                    keys: keys.then_some((m, kd, kdata, klabels)),
                    weights: weighted.then_some(w),
                })
        })
}

fn run<T: Float>(loss: &dyn MetricLoss, c: &Case) -> Result<LossOutput<T>, LossError> {
    let cast = |v: &[f64]| v.iter().map(|x| T::from_f64(*x)).collect::<Vec<T>>();
    let (q, w) = (cast(&c.data), cast(c.weights.as_deref().unwrap_or(&[])));
    let kd = c.keys.as_ref().map(|k| cast(&k.2)).unwrap_or_default();
    let mut input = LossInput::new(Batch::new(
        &c.labels,
        Embeddings::from_row_major(&q, c.n, c.dims)?,
    )?);
    if let Some((m, kdims, _, kl)) = &c.keys {
        input = input.with_keys(Batch::new(
            kl,
            Embeddings::from_row_major(&kd, *m, *kdims)?,
        )?);
    }
    if c.weights.is_some() {
        input = input.with_sample_weight(SampleWeight::PerExample(&w));
    }
    loss.reset_state();
    loss.compute(&input)
}

fn check_shapes<T: Float>(c: &Case, out: &LossOutput<T>) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.per_example.len(), c.n);
    prop_assert_eq!(out.grad_queries.len(), c.n * c.dims);
    if let Some((m, kd, _, _)) = &c.keys {
        prop_assert_eq!(out.grad_keys.len(), m * kd);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(192))]

    /// Any shapes (0 rows, 0 columns, widths that differ, empty key sets), labels, special
    /// values and weights: Ok with outputs of the right shapes, or a typed error.
    #[test]
    fn arbitrary_input_never_panics(c in case(nasty().boxed())) {
        for loss in losses(c.distance) {
            if let Ok(out) = run::<f32>(loss.as_ref(), &c) {
                check_shapes(&c, &out)?;
            }
            if let Ok(out) = run::<f64>(loss.as_ref(), &c) {
                check_shapes(&c, &out)?;
            }
        }
    }

    /// Ordinary values (|x| ≤ 1, unit-scale, default hyper-parameters, positive weights):
    /// finite outputs.
    #[test]
    fn ordinary_inputs_give_finite_outputs(c in case((-1.0..1.0f64).boxed())) {
        let mut c = c;
        if let Some(w) = &mut c.weights {
            w.iter_mut().for_each(|v| *v = v.abs() + 0.1);
        }
        for loss in losses(c.distance) {
            if let Ok(out) = run::<f64>(loss.as_ref(), &c) {
                prop_assert!(out.loss.is_finite(), "{:?}: loss {}", loss, out.loss);
                prop_assert!(out.per_example.iter().chain(&out.grad_queries).chain(&out.grad_keys).all(|v| v.is_finite()), "{:?}", loss);
            }
        }
    }
}

/// Finding (`cargo xtask fuzz --target loss`): an empty key set with queries panicked in
/// every loss of this crate (mining indexed column 0 of an empty row, `chunks(0)`, `row(0)`
/// of empty keys). Now `LossError::EmptyKeys` from `LossInput::validate`.
#[test]
fn regression_empty_key_set_is_an_error_for_every_loss() {
    let x = [1.0f32, 0.0, 0.0, 1.0];
    let empty: [f32; 0] = [];
    for distance in DistanceKind::ALL {
        for loss in losses(distance) {
            for kdims in [0, 2] {
                let q = Batch::new(&[0, 1], Embeddings::from_row_major(&x, 2, 2).unwrap()).unwrap();
                let k =
                    Batch::new(&[], Embeddings::from_row_major(&empty, 0, kdims).unwrap()).unwrap();
                let err = loss.compute(&LossInput::new(q).with_keys(k)).unwrap_err();
                assert!(
                    matches!(err, LossError::EmptyKeys { queries: 2 }),
                    "{loss:?}: {err}"
                );
            }
        }
    }
}

// Known issue (reported, not fixed here: the crate is being developed concurrently):
// finite inputs can give ±∞ or NaN losses or gradients without an error in PN,
// MultiSimilarity, Circle and SoftNearestNeighbor (huge margins or hyper-parameters,
// embeddings of 1e19..1e30). The inputs are in `fuzz/findings/loss/`; replay one with
// `cargo xtask fuzz --target loss --replay fuzz/findings/loss/finding-N.bin`. TripletLoss
// turns such results into `LossError::NonFiniteResult`.
