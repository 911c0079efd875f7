//! Property tests: bad input never panics and never yields a non-finite number without an
//! error; and the loss's invariants (permutation, weight scaling, hinge ≥ 0, f32 ≈ f64,
//! finite differences) over random shapes, labels and configurations.
//!
//! Case counts are modest for CI; raise them with `PROPTEST_CASES=N`.

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLossExt, Reduction,
    SampleWeight,
};
use metric_loss_distances::DistanceKind;
use metric_loss_testkit::{cases, nasty};
use metric_loss_triplet::{Margin, TripletLoss, TripletLossConfig};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Finite but possibly huge or tiny values.
fn finite_extreme() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -3.0..3.0f64,
        1 => Just(0.0),
        1 => Just(1e-40),
        1 => Just(1e30),
        1 => Just(-1e30),
        1 => Just(1e19),
        1 => Just(-1e19),
        1 => Just(3e38),
        1 => -1e300..1e300f64,
    ]
}

fn label() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0..3i64,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ]
}

/// Labels for `n` examples: arbitrary, all equal, or all distinct.
fn labels(n: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        4 => prop::collection::vec(label(), n),
        1 => label().prop_map(move |l| vec![l; n]),
        1 => Just((0..n as i64).map(|i| i64::MAX - i).collect::<Vec<_>>()),
    ]
}

fn distance() -> impl Strategy<Value = DistanceKind> {
    prop::sample::select(DistanceKind::ALL.to_vec())
}

/// A valid configuration of every distance × strategy × margin kind × reduction.
fn config() -> impl Strategy<Value = TripletLossConfig> {
    (
        distance(),
        prop::sample::select(vec!["easy", "hard"]),
        prop::sample::select(vec!["easy", "hard", "semi-hard"]),
        prop_oneof![
            // Hinge margins, including negative and huge ones.
            3 => prop_oneof![-2.0..2.0f64, Just(0.0), Just(1e30), Just(-1e30), Just(f64::MAX)]
                .prop_map(|m| (false, Some(m), false)),
            1 => Just((true, Some(1.0), false)),
            1 => Just((true, None, true)),
            1 => Just((false, None, false)),
        ],
        prop::sample::select(Reduction::NAMES.to_vec()),
        any::<bool>(),
    )
        .prop_map(
            |(d, pos, neg, (soft, margin, stable), reduction, exclude)| TripletLossConfig {
                distance: d.name().into(),
                positive_mining_strategy: pos.into(),
                negative_mining_strategy: neg.into(),
                soft_margin: soft,
                margin,
                reduction: reduction.into(),
                exclude_degenerate_anchors: exclude,
                stable_soft_margin: stable,
                ..TripletLossConfig::default()
            },
        )
}

#[derive(Debug, Clone)]
enum Weights {
    None,
    Scalar(f64),
    PerExample(Vec<f64>),
}

fn weights(n: usize) -> impl Strategy<Value = Weights> {
    let w = prop_oneof![4 => -2.0..2.0f64, 1 => Just(0.0), 1 => Just(-1.0), 1 => nasty()];
    prop_oneof![
        1 => Just(Weights::None),
        1 => w.clone().prop_map(Weights::Scalar),
        3 => prop::collection::vec(w.clone(), n).prop_map(Weights::PerExample),
        // Wrong length.
        1 => prop::collection::vec(w, 0..n + 3).prop_map(Weights::PerExample),
    ]
}

/// One set of examples: labels, row-major values, declared rows and columns (the buffer
/// and the label vector may disagree with them).
#[derive(Debug, Clone)]
struct Set {
    labels: Vec<i64>,
    data: Vec<f64>,
    rows: usize,
    cols: usize,
}

fn set(rows: usize, cols: usize, values: BoxedStrategy<f64>) -> impl Strategy<Value = Set> {
    let exact = (
        labels(rows),
        prop::collection::vec(values.clone(), rows * cols),
    )
        .prop_map(move |(labels, data)| Set {
            labels,
            data,
            rows,
            cols,
        });
    // Mismatched buffer length or label count.
    let skewed = (
        prop::collection::vec(label(), 0..rows + 2),
        prop::collection::vec(values, 0..rows * cols + 3),
    )
        .prop_map(move |(labels, data)| Set {
            labels,
            data,
            rows,
            cols,
        });
    prop_oneof![6 => exact, 1 => skewed]
}

#[derive(Debug, Clone)]
struct Case {
    config: TripletLossConfig,
    queries: Set,
    keys: Option<Set>,
    weights: Weights,
    gradient: bool,
    remove_diagonal: bool,
}

fn case(values: BoxedStrategy<f64>) -> impl Strategy<Value = Case> {
    (0usize..7, 0usize..5, 0usize..7, 0usize..5, any::<bool>()).prop_flat_map(
        move |(n, dims, m, kdims, separate)| {
            let kdims = if kdims == 4 { dims } else { kdims };
            let keys = if separate {
                set(m, kdims, values.clone()).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (
                config(),
                set(n, dims, values.clone()),
                keys,
                weights(n),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(
                    |(config, queries, keys, weights, gradient, remove_diagonal)| Case {
                        config,
                        queries,
                        keys,
                        weights,
                        gradient,
                        remove_diagonal,
                    },
                )
        },
    )
}

fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|x| T::from_f64(*x)).collect()
}

/// Runs a case in precision `T`. Errors from building the views are returned too.
fn run<T: Float>(loss: &TripletLoss, c: &Case) -> Result<LossOutput<T>, LossError> {
    let qd: Vec<T> = cast(&c.queries.data);
    let q = Batch::new(
        &c.queries.labels,
        Embeddings::from_row_major(&qd, c.queries.rows, c.queries.cols)?,
    )?;
    let kd: Vec<T> = c.keys.as_ref().map(|k| cast(&k.data)).unwrap_or_default();
    let wv: Vec<T> = match &c.weights {
        Weights::PerExample(w) => cast(w),
        _ => Vec::new(),
    };
    let mut input = LossInput::new(q).remove_diagonal(c.remove_diagonal);
    if let Some(k) = &c.keys {
        let kb = Batch::new(&k.labels, Embeddings::from_row_major(&kd, k.rows, k.cols)?)?;
        input = input.with_keys(kb);
    }
    input = input.with_sample_weight(match &c.weights {
        Weights::None => SampleWeight::None,
        Weights::Scalar(w) => SampleWeight::Scalar(T::from_f64(*w)),
        Weights::PerExample(_) => SampleWeight::PerExample(&wv),
    });
    if !c.gradient {
        input = input.without_gradient();
    }
    loss.compute(&input)
}

/// The contract on a successful call: right shapes, finite numbers (the reference soft
/// margin's documented +∞ aside), hinge and soft-plus non-negative.
fn check_output<T: Float>(loss: &TripletLoss, c: &Case, out: &LossOutput<T>) {
    let n = c.queries.rows;
    let dims = c.queries.cols;
    assert_eq!(out.per_example.len(), n, "per_example length");
    if c.gradient {
        assert_eq!(out.grad_queries.len(), n * dims, "grad_queries length");
        match &c.keys {
            Some(k) => assert_eq!(out.grad_keys.len(), k.rows * k.cols, "grad_keys length"),
            None => assert!(out.grad_keys.is_empty()),
        }
    } else {
        assert!(out.grad_queries.is_empty() && out.grad_keys.is_empty());
    }
    let soft_reference = loss.margin() == Margin::Soft;
    for (i, l) in out.per_example.iter().enumerate() {
        if soft_reference && l.to_f64() == f64::INFINITY {
            continue; // Documented: TF Similarity's soft-plus overflows for x ≲ −88.7 (f32).
        }
        assert!(l.is_finite(), "per_example[{i}] = {l} ({})", T::DTYPE);
        assert!(l.to_f64() >= 0.0, "per_example[{i}] = {l} < 0");
    }
    let inf_examples = out.per_example.iter().any(|l| !l.is_finite());
    assert!(
        out.loss.is_finite() || (soft_reference && inf_examples && !out.loss.to_f64().is_nan()),
        "loss = {} ({}) with per_example {:?}",
        out.loss,
        T::DTYPE,
        out.per_example
    );
    for (i, g) in out.grad_queries.iter().chain(&out.grad_keys).enumerate() {
        assert!(g.is_finite(), "gradient entry {i} = {g} ({})", T::DTYPE);
    }
}

fn check_case<T: Float>(c: &Case) {
    let loss = match c.config.build() {
        Ok(loss) => loss,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    match run::<T>(&loss, c) {
        Ok(out) => check_output(&loss, c, &out),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Robustness: arbitrary input
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(384))]

    /// Any shapes, labels, special values, weights and configuration: Ok with finite
    /// outputs, or a typed error. Never a panic.
    #[test]
    fn arbitrary_input_is_ok_and_finite_or_an_error(c in case(nasty().boxed())) {
        check_case::<f32>(&c);
        check_case::<f64>(&c);
    }

    /// Finite but extreme values (±1e30, 3e38, subnormals, up to ±1e300): overflow is an
    /// error (`NonFiniteDistance`), never a silent ±∞ or NaN.
    #[test]
    fn extreme_finite_values_are_ok_and_finite_or_an_error(c in case(finite_extreme().boxed())) {
        check_case::<f32>(&c);
        check_case::<f64>(&c);
    }

    /// The stable soft margin never overflows: wherever the loss succeeds it is finite,
    /// even where TF Similarity's reference soft-plus is +∞.
    #[test]
    fn stable_soft_margin_never_overflows(mut c in case(finite_extreme().boxed())) {
        c.config.soft_margin = true;
        c.config.margin = None;
        c.config.stable_soft_margin = true;
        let loss = c.config.build().unwrap();
        prop_assert_eq!(loss.margin(), Margin::SoftStable);
        if let Ok(out) = run::<f32>(&loss, &c) {
            check_output(&loss, &c, &out);
        }
        if let Ok(out) = run::<f64>(&loss, &c) {
            check_output(&loss, &c, &out);
        }
    }

    /// Arbitrary configuration strings and margins: build is Ok or a typed error.
    #[test]
    fn arbitrary_config_strings_build_or_error(
        d in prop_oneof![".*", prop::sample::select(DistanceKind::accepted_names()).prop_map(String::from)],
        pos in prop_oneof![".*", Just("hard".to_string())],
        neg in prop_oneof![".*", Just("semi-hard".to_string())],
        reduction in prop_oneof![".*", Just("auto".to_string())],
        soft in any::<bool>(),
        margin in prop::option::of(nasty()),
        stable in any::<bool>(),
    ) {
        let config = TripletLossConfig {
            distance: d.into(),
            positive_mining_strategy: pos,
            negative_mining_strategy: neg,
            reduction: reduction.into(),
            soft_margin: soft,
            margin,
            stable_soft_margin: stable,
            ..TripletLossConfig::default()
        };
        match config.build() {
            Ok(loss) => {
                // get_config round-trips.
                prop_assert_eq!(loss.config().unwrap().build().unwrap(), loss);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Invariants on well-conditioned data
// ---------------------------------------------------------------------------------------

/// Well-conditioned data: every anchor has a positive and a negative, values are normal
/// numbers of order 1, rows of cosine batches have norm 0.9 (self-distance off the clamp).
#[derive(Debug, Clone)]
struct Nice {
    config: TripletLossConfig,
    labels: Vec<i64>,
    x: Vec<f64>,
    n: usize,
    dims: usize,
    weights: Vec<f64>,
}

fn nice(min_n: usize) -> impl Strategy<Value = Nice> {
    (min_n..9usize, 1usize..6, config()).prop_flat_map(|(n, dims, mut config)| {
        // Finite margins of order 1 (huge margins make every comparison meaningless).
        if !config.soft_margin && config.margin.is_some() {
            config.margin = Some(0.3);
        }
        let d = DistanceKind::from_name(config.distance.name().unwrap()).unwrap();
        // snr needs rows that vary: two columns at least, and a ramp added below.
        let dims = if d == DistanceKind::Snr {
            dims.max(2)
        } else {
            dims
        };
        (
            Just(config),
            prop::collection::vec(0..2i64, n),
            prop::collection::vec(-1.0..1.0f64, n * dims),
            prop::collection::vec(0.1..2.0f64, n),
        )
            .prop_map(move |(config, mut labels, mut x, weights)| {
                // Two classes with two members each at least.
                if labels.len() >= 4 {
                    labels[..4].copy_from_slice(&[0, 0, 1, 1]);
                }
                if d == DistanceKind::Snr {
                    for row in x.chunks_exact_mut(dims) {
                        row.iter_mut().enumerate().for_each(|(t, v)| *v += t as f64);
                    }
                }
                if d == DistanceKind::Cosine {
                    for row in x.chunks_exact_mut(dims) {
                        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-3);
                        row.iter_mut().for_each(|v| *v *= 0.9 / norm);
                    }
                }
                Nice {
                    config,
                    labels,
                    x,
                    n,
                    dims,
                    weights,
                }
            })
    })
}

/// The f64 distance matrix of a nice batch.
fn distances(kind: DistanceKind, x: &[f64], n: usize, dims: usize) -> Vec<f64> {
    use metric_loss_core::Distance;
    let e = Embeddings::from_row_major(x, n, dims).unwrap();
    let mut d = vec![0.0; n * n];
    kind.matrix(e, e, true, &mut Vec::new(), &mut d).unwrap();
    d
}

/// True when the mining decisions and the hinge kink are at least `gap` away from a tie:
/// off-diagonal entries of each row pairwise distinct by `gap`, no entry within `gap` of a
/// clamp, every pᵢ − qᵢ + m at least `gap` from 0, every per-coordinate difference (for
/// manhattan) at least `gap` from 0, and no zero-variance row (snr).
fn well_separated(c: &Nice, gap: f64) -> bool {
    let kind = DistanceKind::from_name(c.config.distance.name().unwrap()).unwrap();
    if kind == DistanceKind::Snr {
        for row in c.x.chunks_exact(c.dims) {
            let mu = row.iter().sum::<f64>() / c.dims as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / c.dims as f64;
            if var < 0.05 {
                return false;
            }
        }
    }
    let d = distances(kind, &c.x, c.n, c.dims);
    for i in 0..c.n {
        let row = &d[i * c.n..(i + 1) * c.n];
        for j in 0..c.n {
            if j == i {
                continue;
            }
            if row[j].abs() < gap {
                return false;
            }
            for l in j + 1..c.n {
                if l != i && (row[j] - row[l]).abs() < gap * (1.0 + row[j].abs()) {
                    return false;
                }
            }
            if kind == DistanceKind::Manhattan {
                let (a, b) = (
                    &c.x[i * c.dims..(i + 1) * c.dims],
                    &c.x[j * c.dims..(j + 1) * c.dims],
                );
                if a.iter().zip(b).any(|(p, q)| (p - q).abs() < gap) {
                    return false;
                }
            }
        }
    }
    // The hinge kink.
    let loss = c.config.build().unwrap();
    if let Margin::Hinge(m) = loss.margin() {
        let out = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        // per-example 0 means x + m < 0; check |x + m| via the loss at m ± gap.
        for (i, l) in out.per_example.iter().enumerate() {
            if *l > 0.0 && *l < gap {
                return false;
            }
            // A zero loss close to the kink: probe with a larger margin.
            if *l == 0.0 {
                let probe = TripletLossConfig {
                    margin: Some(m + gap),
                    ..c.config.clone()
                }
                .build()
                .unwrap();
                let p = eval::<f64>(&probe, &c.labels, &c.x, c.dims, &c.weights);
                if p.per_example[i] > 0.0 {
                    return false;
                }
            }
        }
    }
    true
}

fn eval<T: Float>(
    loss: &TripletLoss,
    labels: &[i64],
    x: &[f64],
    dims: usize,
    w: &[f64],
) -> LossOutput<T> {
    let xt: Vec<T> = cast(x);
    let wt: Vec<T> = cast(w);
    let q = Batch::new(
        labels,
        Embeddings::from_row_major(&xt, labels.len(), dims).unwrap(),
    )
    .unwrap();
    loss.compute(&LossInput::new(q).with_sample_weight(SampleWeight::PerExample(&wt)))
        .unwrap()
}

fn close(a: f64, b: f64, tol: f64, scale: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + scale)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

proptest! {
    #![proptest_config(cases(96))]

    /// Permuting the batch permutes per-example losses and gradient rows (tie-free data).
    #[test]
    fn permuting_the_batch_permutes_the_outputs(
        c in nice(4),
        seed in any::<u64>(),
    ) {
        prop_assume!(well_separated(&c, 1e-6));
        let loss = c.config.build().unwrap();
        // A permutation from the seed (Fisher-Yates).
        let mut perm: Vec<usize> = (0..c.n).collect();
        let mut s = seed | 1;
        for i in (1..c.n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            perm.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let labels_p: Vec<i64> = perm.iter().map(|&p| c.labels[p]).collect();
        let w_p: Vec<f64> = perm.iter().map(|&p| c.weights[p]).collect();
        let x_p: Vec<f64> = perm.iter().flat_map(|&p| c.x[p * c.dims..(p + 1) * c.dims].to_vec()).collect();
        let a = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        let b = eval::<f64>(&loss, &labels_p, &x_p, c.dims, &w_p);
        let g = max_abs(&a.grad_queries);
        prop_assert!(close(a.loss, b.loss, 1e-9, a.loss.abs()), "loss {} vs {}", a.loss, b.loss);
        for (i, &p) in perm.iter().enumerate() {
            prop_assert!(close(b.per_example[i], a.per_example[p], 1e-9, a.per_example[p].abs()));
            for t in 0..c.dims {
                let (gb, ga) = (b.grad_queries[i * c.dims + t], a.grad_queries[p * c.dims + t]);
                prop_assert!(close(gb, ga, 1e-9, g), "grad row {i} <- {p}: {gb} vs {ga}");
            }
        }
    }

    /// Scaling every sample weight by c scales the loss and the gradient by c, and leaves
    /// per-example losses alone.
    #[test]
    fn scaling_the_weights_scales_loss_and_gradient(
        c in nice(4),
        factor in prop_oneof![-3.0..3.0f64, Just(0.0), Just(1e-3), Just(1e3)],
    ) {
        let loss = c.config.build().unwrap();
        let scaled: Vec<f64> = c.weights.iter().map(|w| w * factor).collect();
        let a = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        let b = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &scaled);
        prop_assert_eq!(&a.per_example, &b.per_example);
        // The reference soft-plus's documented +inf: c · inf is not a number to compare.
        prop_assume!(a.loss.is_finite());
        prop_assert!(close(b.loss, factor * a.loss, 1e-12, (factor * a.loss).abs()), "{} vs {}", b.loss, factor * a.loss);
        let g = max_abs(&a.grad_queries) * factor.abs();
        for (gb, ga) in b.grad_queries.iter().zip(&a.grad_queries) {
            prop_assert!(close(*gb, factor * ga, 1e-12, g), "{gb} vs {}", factor * ga);
        }
    }

    /// f32 and f64 agree to f32 precision on well-conditioned data.
    #[test]
    fn f32_and_f64_agree(c in nice(4)) {
        prop_assume!(well_separated(&c, 1e-3));
        // The euclidean expansion cancels in f32 for close points: keep every
        // off-diagonal distance of order 1.
        let kind = DistanceKind::from_name(c.config.distance.name().unwrap()).unwrap();
        if matches!(kind, DistanceKind::Euclidean | DistanceKind::SquaredEuclidean) {
            let d = distances(kind, &c.x, c.n, c.dims);
            prop_assume!((0..c.n * c.n).all(|e| e / c.n == e % c.n || d[e] > 0.1));
        }
        let loss = c.config.build().unwrap();
        let a = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        let b = eval::<f32>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        prop_assert!(close(b.loss as f64, a.loss, 1e-4, a.loss.abs()), "loss {} vs {}", b.loss, a.loss);
        for (l32, l64) in b.per_example.iter().zip(&a.per_example) {
            prop_assert!(close(*l32 as f64, *l64, 1e-4, l64.abs()), "{l32} vs {l64}");
        }
        let g = max_abs(&a.grad_queries);
        for (g32, g64) in b.grad_queries.iter().zip(&a.grad_queries) {
            prop_assert!(close(*g32 as f64, *g64, 1e-4, g), "{g32} vs {g64}");
        }
    }

    /// The analytic gradient matches central finite differences in f64, away from ties,
    /// clamps and kinks, for random shapes, every distance, strategy and margin.
    #[test]
    fn gradient_matches_central_differences(c in nice(4)) {
        prop_assume!(well_separated(&c, 1e-4));
        let loss = c.config.build().unwrap();
        let out = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        let h = 1e-7;
        let g = max_abs(&out.grad_queries);
        for i in 0..c.x.len() {
            let (mut up, mut down) = (c.x.clone(), c.x.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (eval::<f64>(&loss, &c.labels, &up, c.dims, &c.weights).loss
                - eval::<f64>(&loss, &c.labels, &down, c.dims, &c.weights).loss)
                / (2.0 * h);
            prop_assert!(close(fd, out.grad_queries[i], 1e-5, g), "coordinate {i}: fd {fd} vs analytic {}", out.grad_queries[i]);
        }
    }

    /// The hinge loss is never negative and is zero exactly where p − q + m < 0; the soft
    /// margins are positive.
    #[test]
    fn per_example_losses_are_non_negative(c in nice(1)) {
        let loss = c.config.build().unwrap();
        let out = eval::<f64>(&loss, &c.labels, &c.x, c.dims, &c.weights);
        for l in &out.per_example {
            // +inf only for the reference soft-plus (TF Similarity's ln(e^−x + 1) + x overflows), e.g. snr rows of tiny
            // variance give huge distances.
            let documented = loss.margin() == Margin::Soft && *l == f64::INFINITY;
            prop_assert!(*l >= 0.0 && (l.is_finite() || documented), "{l}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regression tests for findings of the property tests and `cargo xtask fuzz`
// ---------------------------------------------------------------------------------------

/// One case in both precisions, asserting the contract.
fn regression(c: &Case) {
    check_case::<f32>(c);
    check_case::<f64>(c);
}

fn one_set(labels: &[i64], data: &[f64], rows: usize, cols: usize) -> Set {
    Set {
        labels: labels.to_vec(),
        data: data.to_vec(),
        rows,
        cols,
    }
}

fn base_case(config: TripletLossConfig, queries: Set) -> Case {
    Case {
        config,
        queries,
        keys: None,
        weights: Weights::None,
        gradient: true,
        remove_diagonal: true,
    }
}

/// Finding: queries but an empty key set panicked in mining (semi-hard indexed column 0 of
/// an empty row; other strategies routed the gradient to key 0), and in every loss of
/// metric-loss-losses. Now `LossInput::validate` gives `EmptyKeys`.
#[test]
fn regression_empty_key_set_is_an_error() {
    for neg in ["easy", "hard", "semi-hard"] {
        let config = TripletLossConfig::default().negative_mining_strategy(neg);
        let mut c = base_case(config.clone(), one_set(&[0], &[1.0], 1, 1));
        c.keys = Some(one_set(&[], &[], 0, 1));
        let loss = config.build().unwrap();
        let err = run::<f64>(&loss, &c).unwrap_err();
        assert!(matches!(err, LossError::EmptyKeys { queries: 1 }), "{err}");
        assert!(err.to_string().contains("key set is empty"), "{err}");
        regression(&c);
    }
}

/// Finding: with no queries, `grad_keys` had `keys x query width` entries instead of
/// `keys x key width` (here and in metric-loss-losses). Widths must now match whenever
/// there are keys; a huge declared query width with no rows allocates nothing.
#[test]
fn regression_key_width_must_match_even_without_queries() {
    let mut c = base_case(TripletLossConfig::default(), one_set(&[], &[], 0, 2));
    c.keys = Some(one_set(&[0], &[0.0], 1, 1));
    let err = run::<f32>(&c.config.build().unwrap(), &c).unwrap_err();
    assert!(
        matches!(
            err,
            LossError::DimensionMismatch {
                queries: 2,
                keys: 1
            }
        ),
        "{err}"
    );
    let mut c = base_case(
        TripletLossConfig::default(),
        one_set(&[], &[], 0, usize::MAX),
    );
    c.keys = Some(one_set(&[0, 1], &[0.5, 0.25], 2, 1));
    assert!(run::<f64>(&c.config.build().unwrap(), &c).is_err());
    let mut c = base_case(TripletLossConfig::default(), one_set(&[], &[], 0, 1));
    c.keys = Some(one_set(&[0, 1], &[0.5, 0.25], 2, 1));
    let out = run::<f64>(&c.config.build().unwrap(), &c).unwrap();
    assert_eq!(out.grad_keys, vec![0.0, 0.0]);
}

/// Finding: a finite hinge margin beyond f32's range (f64::MAX) gave a per-example loss of
/// +inf in f32 without an error. Now `NonFiniteResult`.
#[test]
fn regression_margin_beyond_f32_range_is_an_error_not_inf() {
    let config = TripletLossConfig::default()
        .positive_mining_strategy("easy")
        .negative_mining_strategy("easy")
        .margin(f64::MAX);
    let c = base_case(config.clone(), one_set(&[0], &[0.0], 1, 1));
    let err = run::<f32>(&config.build().unwrap(), &c).unwrap_err();
    assert!(
        matches!(
            err,
            LossError::NonFiniteResult {
                what: "per-example loss",
                ..
            }
        ),
        "{err}"
    );
    regression(&c);
}

/// Finding: a finite sample weight times a finite per-example loss overflowed the reduced
/// loss to +inf (inner product of ±1e30 rows, weight f64::MAX). Now `NonFiniteResult`.
#[test]
fn regression_weight_times_loss_overflow_is_an_error() {
    let config = TripletLossConfig::default()
        .distance("inner_product")
        .positive_mining_strategy("easy")
        .negative_mining_strategy("easy")
        .margin(0.0);
    let mut c = base_case(config.clone(), one_set(&[0, 0], &[-1e30, -1e19], 2, 1));
    c.weights = Weights::PerExample(vec![f64::MAX, 0.0]);
    let err = run::<f64>(&config.build().unwrap(), &c).unwrap_err();
    assert!(
        matches!(err, LossError::NonFiniteResult { what: "loss", .. }),
        "{err}"
    );
    regression(&c);
}

/// The reference soft margin's +inf (TF Similarity's ln(e^−x + 1) + x overflows) is the one documented non-finite
/// output; the stable soft margin gives a finite value on the same input.
#[test]
fn reference_soft_margin_inf_is_documented_and_stable_one_is_finite() {
    let soft = TripletLossConfig::default()
        .distance("squared_euclidean")
        .soft_margin(true)
        .negative_mining_strategy("easy");
    let x = [0.0, 0.0, 10.0, 20.0];
    let c = base_case(soft.clone(), one_set(&[0, 0, 1, 2], &x, 4, 1));
    let out = run::<f32>(&soft.clone().build().unwrap(), &c).unwrap();
    assert!(out.per_example.contains(&f32::INFINITY));
    assert!(out.loss == f32::INFINITY);
    let stable = soft.stable_soft_margin(true);
    let c = base_case(stable.clone(), c.queries.clone());
    let out = run::<f32>(&stable.build().unwrap(), &c).unwrap();
    assert!(out.per_example.iter().all(|v| v.is_finite()) && out.loss.is_finite());
    regression(&c);
}
