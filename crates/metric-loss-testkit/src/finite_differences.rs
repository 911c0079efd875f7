//! The analytic gradient of any [`MetricLoss`] against central finite differences, in f64.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
};

/// A batch to differentiate at: labels, row-major embeddings of width `dims`, optional
/// separate keys and optional sample weights.
#[derive(Debug, Clone, Copy)]
pub struct GradientPoint<'a> {
    /// One label per query.
    pub labels: &'a [i64],
    /// The queries, row-major.
    pub queries: &'a [f64],
    /// Their width.
    pub dims: usize,
    /// Separate keys (labels, row-major embeddings of width `dims`), if any.
    pub keys: Option<(&'a [i64], &'a [f64])>,
    /// One weight per query, if any.
    pub weights: Option<&'a [f64]>,
    /// Whether the pair (i, i) is kept out of the positives
    /// ([`LossInput::remove_diagonal`]; `true` unless the keys do not start with the
    /// queries).
    pub remove_diagonal: bool,
}

impl<'a> GradientPoint<'a> {
    /// The queries `queries` (row-major, width `dims`) with their labels, as their own keys,
    /// without weights.
    pub fn new(labels: &'a [i64], queries: &'a [f64], dims: usize) -> Self {
        Self {
            labels,
            queries,
            dims,
            keys: None,
            weights: None,
            remove_diagonal: true,
        }
    }

    /// Separate keys, which do not contain the queries (so the diagonal is not removed).
    pub fn with_keys(mut self, labels: &'a [i64], keys: &'a [f64]) -> Self {
        self.keys = Some((labels, keys));
        self.remove_diagonal = false;
        self
    }

    /// One weight per query.
    pub fn with_weights(mut self, weights: &'a [f64]) -> Self {
        self.weights = Some(weights);
        self
    }

    fn input<'b>(
        &self,
        queries: &'b [f64],
        keys: Option<&'b [f64]>,
    ) -> Result<LossInput<'b, f64>, LossError>
    where
        'a: 'b,
    {
        let q = Embeddings::from_row_major(queries, self.labels.len(), self.dims)?;
        let mut input = LossInput::new(Batch::new(self.labels, q)?);
        if let (Some((key_labels, _)), Some(k)) = (self.keys, keys) {
            let k = Embeddings::from_row_major(k, key_labels.len(), self.dims)?;
            input = input.with_keys(Batch::new(key_labels, k)?);
        }
        if let Some(w) = self.weights {
            input = input.with_sample_weight(SampleWeight::PerExample(w));
        }
        Ok(input.remove_diagonal(self.remove_diagonal))
    }

    fn loss(
        &self,
        loss: &dyn MetricLoss,
        queries: &[f64],
        keys: Option<&[f64]>,
    ) -> Result<f64, LossError> {
        Ok(loss
            .compute(&self.input(queries, keys)?.without_gradient())?
            .loss)
    }
}

/// Compares `loss`'s analytic gradient (queries, keys when given, and the loss's own
/// parameters when it has any, through
/// [`MetricLoss::set_parameters`](metric_loss_core::MetricLoss::set_parameters)) with
/// central differences of step `step`, entry by entry: `|analytic − numeric| ≤ tolerance · (1 +
/// |numeric|)`. Returns the first entry that disagrees, named, as the error.
///
/// Pick a point away from kinks (no ties among mined distances, no clamp hit): a finite
/// difference straddling one measures neither side.
///
/// ```
/// use metric_loss_testkit::{check_gradient, GradientPoint};
/// use metric_loss_triplet::TripletLoss;
///
/// let x = [1.0, 0.1, 0.7, 0.6, 0.1, 1.0, -0.6, -0.7];
/// let point = GradientPoint::new(&[0, 0, 1, 1], &x, 2);
/// check_gradient(&TripletLoss::default(), point, 1e-6, 1e-6).unwrap();
/// ```
///
/// # Errors
/// A message naming the entry, both values and the tolerance; or the loss's own error.
pub fn check_gradient(
    loss: &dyn MetricLoss,
    point: GradientPoint<'_>,
    step: f64,
    tolerance: f64,
) -> Result<(), String> {
    let fail = |e: LossError| format!("{}: {e}", loss.name());
    let keys = point.keys.map(|(_, k)| k);
    let analytic = loss
        .compute(&point.input(point.queries, keys).map_err(fail)?)
        .map_err(fail)?;
    let eval = |q: &[f64], k: Option<&[f64]>| point.loss(loss, q, k);
    differences(
        loss.name(),
        point.dims,
        (point.queries, keys),
        &analytic,
        &eval,
        (step, tolerance),
    )?;
    parameter_differences(
        loss,
        &analytic,
        &|| eval(point.queries, keys),
        (step, tolerance),
    )
}

/// Central differences of the loss in each of its parameters (if it has any), against
/// `analytic.grad_parameters`. The parameters are restored afterwards, also on failure.
fn parameter_differences(
    loss: &dyn MetricLoss,
    analytic: &LossOutput<f64>,
    eval: &dyn Fn() -> Result<f64, LossError>,
    (step, tolerance): (f64, f64),
) -> Result<(), String> {
    let Some(shape) = loss.parameter_shape() else {
        return Ok(());
    };
    let name = loss.name();
    let fail = |e: LossError| format!("{name}: {e}");
    let mut p = vec![0.0; shape.len()];
    loss.read_parameters(&mut p).map_err(fail)?;
    if analytic.grad_parameters.len() != p.len() {
        return Err(format!(
            "{name}: grad_parameters has {} entries, the parameters {}",
            analytic.grad_parameters.len(),
            p.len()
        ));
    }
    let original = p.clone();
    let at = |p: &[f64]| loss.set_parameters(p).and_then(|()| eval());
    let mut result = Ok(());
    for t in 0..p.len() {
        let v = p[t];
        p[t] = v + step;
        let plus = at(&p);
        p[t] = v - step;
        let minus = at(&p);
        p[t] = v;
        let (plus, minus) = match (plus, minus) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                result = Err(fail(e));
                break;
            }
        };
        let numeric = (plus - minus) / (2.0 * step);
        let got = analytic.grad_parameters[t];
        if (got - numeric).abs() > tolerance * (1.0 + numeric.abs()) {
            result = Err(format!(
                "{name}: d loss / d {}[{}][{}] is {got} analytically but {numeric} by finite \
                 differences (tolerance {tolerance})",
                shape.name,
                t / shape.cols,
                t % shape.cols
            ));
            break;
        }
    }
    loss.set_parameters(&original).map_err(fail)?;
    result
}

/// Like [`check_gradient`] for a two-view loss: views `a` and `b` (row-major, width
/// `dims`, [`LossInput::views`]), optional per-example weights; both views' gradients
/// (`grad_queries`, `grad_keys`) are checked.
///
/// # Errors
/// A message naming the entry (`queries` for view A, `keys` for view B), both values and
/// the tolerance; or the loss's own error.
pub fn check_views_gradient(
    loss: &dyn MetricLoss,
    (a, b, dims): (&[f64], &[f64], usize),
    weights: Option<&[f64]>,
    step: f64,
    tolerance: f64,
) -> Result<(), String> {
    let fail = |e: LossError| format!("{}: {e}", loss.name());
    let views = |qa: &[f64], qb: &[f64], gradient: bool| -> Result<_, LossError> {
        let rows = |x: &[f64]| x.len().checked_div(dims).unwrap_or(0);
        let mut input = LossInput::views(
            Embeddings::from_row_major(qa, rows(qa), dims)?,
            Embeddings::from_row_major(qb, rows(qb), dims)?,
        );
        if let Some(w) = weights {
            input = input.with_sample_weight(SampleWeight::PerExample(w));
        }
        if !gradient {
            input = input.without_gradient();
        }
        loss.compute(&input)
    };
    let analytic = views(a, b, true).map_err(fail)?;
    let eval = |qa: &[f64], qb: Option<&[f64]>| Ok(views(qa, qb.unwrap_or(b), false)?.loss);
    differences(
        loss.name(),
        dims,
        (a, Some(b)),
        &analytic,
        &eval,
        (step, tolerance),
    )
}

/// The loss as a function of the queries and (separate) keys.
type Eval<'e> = dyn Fn(&[f64], Option<&[f64]>) -> Result<f64, LossError> + 'e;

/// Central differences of `eval` at every entry of the queries, then of the keys, against
/// `analytic`'s gradients.
fn differences(
    name: &str,
    dims: usize,
    (queries, keys): (&[f64], Option<&[f64]>),
    analytic: &LossOutput<f64>,
    eval: &Eval<'_>,
    (step, tolerance): (f64, f64),
) -> Result<(), String> {
    let fail = |e: LossError| format!("{name}: {e}");
    let compare = |side: &str, at: usize, got: f64, plus: f64, minus: f64| {
        let numeric = (plus - minus) / (2.0 * step);
        if (got - numeric).abs() > tolerance * (1.0 + numeric.abs()) {
            Err(format!(
                "{name}: d loss / d {side}[{}][{}] is {got} analytically but {numeric} by finite \
                 differences (tolerance {tolerance})",
                at / dims,
                at % dims
            ))
        } else {
            Ok(())
        }
    };
    let mut x = queries.to_vec();
    for t in 0..x.len() {
        let v = x[t];
        x[t] = v + step;
        let plus = eval(&x, keys).map_err(fail)?;
        x[t] = v - step;
        let minus = eval(&x, keys).map_err(fail)?;
        x[t] = v;
        compare("queries", t, analytic.grad_queries[t], plus, minus)?;
    }
    if let Some(k) = keys {
        let mut k = k.to_vec();
        for t in 0..k.len() {
            let v = k[t];
            k[t] = v + step;
            let plus = eval(queries, Some(&k)).map_err(fail)?;
            k[t] = v - step;
            let minus = eval(queries, Some(&k)).map_err(fail)?;
            k[t] = v;
            compare("keys", t, analytic.grad_keys[t], plus, minus)?;
        }
    }
    Ok(())
}
