//! Running one `TripletLoss` fixture case.

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, MetricLossExt, SampleWeight, StrategyRole,
};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};
use serde_json::Value;

use crate::compare::{grad_row, scalar, Tolerance};
use crate::fixture::{integers, number, numbers};
use crate::Outcome;

/// The outputs of one evaluation, widened to f64.
struct Outputs {
    per_example: Vec<f64>,
    loss: f64,
    grad: Vec<f64>,
}

/// The loss a case's `config` (and `tfsim_kwargs`, on the legacy-API cases) describes,
/// read by this project's rules (spec, "decisions").
fn config_of(case: &Value) -> TripletLossConfig {
    let c = case
        .get("tfsim_kwargs")
        .filter(|v| v.is_object())
        .unwrap_or(&case["config"]);
    let text = |key: &str, default: &str| c[key].as_str().unwrap_or(default).to_owned();
    let soft_margin =
        c["soft_margin"].as_bool().unwrap_or(false) || case["config"]["margin"].is_null();
    TripletLossConfig {
        distance: text("distance", "cosine").into(),
        positive_mining_strategy: text("positive_mining_strategy", "hard"),
        negative_mining_strategy: text("negative_mining_strategy", "semi-hard"),
        soft_margin,
        margin: if soft_margin {
            c.get("margin").and_then(number).or(Some(1.0))
        } else {
            c.get("margin").and_then(number)
        },
        ..TripletLossConfig::default()
    }
}

fn evaluate<T: Float>(loss: &TripletLoss, case: &Value) -> Result<Outputs, LossError> {
    let labels = integers(&case["labels"]).unwrap_or_default();
    let flat: Vec<T> = numbers(&case["embeddings"])
        .unwrap_or_default()
        .into_iter()
        .map(T::from_f64)
        .collect();
    let shape = integers(&case["shape"]).unwrap_or_default();
    let (rows, dims) = (
        shape.first().copied().unwrap_or(0) as usize,
        shape.get(1).copied().unwrap_or(0) as usize,
    );
    let weights: Option<Vec<T>> =
        numbers(&case["sample_weight"]).map(|w| w.into_iter().map(T::from_f64).collect());
    let x = Embeddings::from_row_major(&flat, rows, dims)?;
    let mut input = LossInput::new(Batch::new(&labels, x)?);
    if let Some(w) = &weights {
        input = input.with_sample_weight(SampleWeight::PerExample(w));
    }
    let out = loss.compute(&input)?;
    Ok(Outputs {
        per_example: out.per_example.iter().map(|v| v.to_f64()).collect(),
        loss: out.loss.to_f64(),
        grad: out.grad_queries.iter().map(|v| v.to_f64()).collect(),
    })
}

fn run_dtype(loss: &TripletLoss, case: &Value, dtype: &str) -> Result<Outputs, LossError> {
    if dtype == "float64" {
        evaluate::<f64>(loss, case)
    } else {
        evaluate::<f32>(loss, case)
    }
}

/// Compares our outputs with the case's; `Ok(true)` when only loose tolerances on
/// `ulp_sensitive_anchors` rows were needed.
fn compare(case: &Value, ours: &Outputs, tol: Tolerance) -> Result<bool, String> {
    compare_with(case, ours, tol, false)
}

/// Strict comparison first; the loose tolerance on flagged rows only if that fails.
/// `Ok(true)` when the loose tolerance was needed.
fn compare_with(
    case: &Value,
    ours: &Outputs,
    tol: Tolerance,
    float32_overflow: bool,
) -> Result<bool, String> {
    match compare_rows(case, ours, tol, float32_overflow, &[]) {
        Ok(()) => Ok(false),
        Err(strict) => {
            let flagged = integers(&case["ulp_sensitive_anchors"]).unwrap_or_default();
            if flagged.is_empty() {
                return Err(strict);
            }
            compare_rows(case, ours, tol, float32_overflow, &flagged).map(|()| true)
        }
    }
}

/// `float32_overflow`: the reference is float32 and we computed in float64, so a
/// soft-margin +∞ in the reference (e⁻ˣ overflowing float32 for x < −88.7) is, in float64,
/// a finite value below e⁻⁸⁸ — accepted as such.
fn compare_rows(
    case: &Value,
    ours: &Outputs,
    tol: Tolerance,
    float32_overflow: bool,
    flagged: &[i64],
) -> Result<(), String> {
    let loose = Tolerance::ulp_sensitive();
    let per_example = numbers(&case["per_example_loss"]).ok_or("case has no per_example_loss")?;
    let grad = numbers(&case["grad"]).ok_or("case has no grad")?;
    let loss = case
        .get("loss")
        .and_then(number)
        .ok_or("case has no loss")?;
    if per_example.len() != ours.per_example.len() || grad.len() != ours.grad.len() {
        return Err(format!(
            "shape: ours {} losses / {} gradient values vs TF {} / {}",
            ours.per_example.len(),
            ours.grad.len(),
            per_example.len(),
            grad.len()
        ));
    }
    let n = per_example.len();
    let dims = grad.len().checked_div(n).unwrap_or(0);
    for (i, (a, b)) in ours.per_example.iter().zip(&per_example).enumerate() {
        if float32_overflow && *b == f64::INFINITY && a.is_finite() && *a < 1e-38 {
            continue;
        }
        let t = if flagged.contains(&(i as i64)) {
            loose.loss
        } else {
            tol.loss
        };
        scalar(&format!("per_example_loss[{i}]"), *a, *b, t)?;
    }
    let loss_tol = if flagged.is_empty() {
        tol.loss
    } else {
        loose.loss
    };
    if !(float32_overflow && loss == f64::INFINITY && ours.loss.is_finite()) {
        scalar("loss", ours.loss, loss, loss_tol)?;
    }
    let scale = 1.0 + grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for i in 0..n {
        let t = if flagged.is_empty() {
            tol.grad
        } else {
            loose.grad
        };
        grad_row(
            i,
            &ours.grad[i * dims..(i + 1) * dims],
            &grad[i * dims..(i + 1) * dims],
            scale,
            t,
        )?;
    }
    Ok(())
}

/// Whether our error is the one this project's rules expect for a TF error case.
fn expected_error(case: &Value, err: &LossError) -> Result<(), String> {
    let message = case["error"]["message"].as_str().unwrap_or_default();
    let ok = match err {
        LossError::InvalidStrategy {
            role: StrategyRole::Positive,
            ..
        } => message.contains("Invalid positive mining strategy"),
        LossError::InvalidStrategy {
            role: StrategyRole::Negative,
            ..
        } => message.contains("Invalid negative mining strategy"),
        LossError::UnknownDistance { .. } => message.contains("Metric not supported"),
        LossError::LengthMismatch { .. } => message.contains("Incompatible shapes"),
        // 0.16's rule, which the project keeps: soft margin with a margin other than 1.0.
        LossError::MarginWithSoftMargin { .. } => message.contains("soft_margin"),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "our error `{err}` does not correspond to TF's `{message}`"
        ))
    }
}

/// The case in `cases` with the same inputs and the soft-margin version of `case`'s config.
fn soft_twin<'a>(case: &Value, cases: &'a [Value]) -> Option<&'a Value> {
    let c = &case["config"];
    cases.iter().find(|o| {
        let oc = &o["config"];
        o.get("error").is_none()
            && oc["margin"].is_null()
            && oc["distance"] == c["distance"]
            && oc["positive_mining_strategy"] == c["positive_mining_strategy"]
            && oc["negative_mining_strategy"] == c["negative_mining_strategy"]
            && o["labels"] == case["labels"]
            && o["embeddings"] == case["embeddings"]
            && o["sample_weight"] == case["sample_weight"]
    })
}

/// The float32 case with this name, when its inputs are this case's up to float32 rounding
/// (the float64 file scales its large-scale inputs in float64, so they can differ by an ulp).
fn float32_twin<'a>(case: &Value, float32: &'a [Value]) -> Option<&'a Value> {
    let twin = float32.iter().find(|o| o["name"] == case["name"])?;
    let ours = numbers(&case["embeddings"])?;
    let theirs = numbers(&twin["embeddings"])?;
    let same_inputs = twin["labels"] == case["labels"]
        && ours.len() == theirs.len()
        && ours
            .iter()
            .zip(&theirs)
            .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs()));
    same_inputs.then_some(twin)
}

/// Runs one case of a triplet fixture file. `cases` is the whole file (for twin lookups)
/// and `float32` the cases of the float32 file, when known (for the f64 euclidean cases
/// TF Similarity cannot compute).
pub(crate) fn run_case(case: &Value, dtype: &str, cases: &[Value], float32: &[Value]) -> Outcome {
    let tol = Tolerance::for_dtype(dtype);
    let config = config_of(case);
    let tf_error = case.get("error").filter(|e| e.is_object());
    let is_error_group = case["group"] == "error";
    let built = config.build();

    if let Some(tf_error) = tf_error {
        if !is_error_group {
            // TF Similarity's float64 euclidean TypeError: we support it. Compare against
            // the float32 reference of the same inputs, at float32 tolerances.
            let Ok(loss) = built else {
                return Outcome::Failed(format!(
                    "TF could not run it ({}), and neither could we",
                    tf_error["type"]
                ));
            };
            return match (run_dtype(&loss, case, dtype), float32_twin(case, float32)) {
                (Err(e), _) => Outcome::Failed(format!("we reject it: {e}")),
                (Ok(ours), Some(twin)) => match compare_with(twin, &ours, Tolerance::for_dtype("float32"), true) {
                    Ok(_) => Outcome::Passed,
                    Err(e) => Outcome::Failed(format!("against the float32 reference: {e}")),
                },
                (Ok(_), None) => Outcome::Skipped(
                    "TF Similarity raises TypeError for euclidean in float64 and no float32 case has the same inputs"
                        .into(),
                ),
            };
        }
        if case["name"] == "error/legacy_soft_margin_kwarg" {
            // soft_margin=True with margin 1.0 is a valid soft-margin loss here.
            let Ok(loss) = built else {
                return Outcome::Failed(format!(
                    "expected a valid soft-margin loss, got {:?}",
                    built.err()
                ));
            };
            let Some(twin) = soft_twin(case, cases) else {
                // No TF case has these inputs with margin=None: the decision says the legacy
                // spelling is the same loss, so it must give bit-identical numbers to it.
                let modern = TripletLossConfig {
                    soft_margin: false,
                    margin: None,
                    ..config
                };
                let same = match (modern.build(), run_dtype(&loss, case, dtype)) {
                    (Ok(m), Ok(a)) => run_dtype(&m, case, dtype).is_ok_and(|b| {
                        a.per_example == b.per_example && a.loss == b.loss && a.grad == b.grad
                    }),
                    _ => false,
                };
                return if same {
                    Outcome::Passed
                } else {
                    Outcome::Failed("soft_margin=true differs from margin=None".into())
                };
            };
            return match run_dtype(&loss, case, dtype)
                .map_err(|e| e.to_string())
                .and_then(|o| compare(twin, &o, tol))
            {
                Ok(_) => Outcome::Passed,
                Err(e) => Outcome::Failed(format!("against {}: {e}", twin["name"])),
            };
        }
        let err = match built {
            Err(e) => e,
            Ok(loss) => match run_dtype(&loss, case, dtype) {
                Err(e) => e,
                Ok(_) => {
                    return Outcome::Failed("TF raised an error but we returned numbers".into())
                }
            },
        };
        return match expected_error(case, &err) {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(e),
        };
    }

    let loss = match built {
        Ok(loss) => loss,
        Err(e) => return Outcome::Failed(format!("construction failed: {e}")),
    };
    match run_dtype(&loss, case, dtype) {
        Err(e) => Outcome::Failed(format!("evaluation failed: {e}")),
        Ok(ours) => match compare(case, &ours, tol) {
            Ok(false) => Outcome::Passed,
            Ok(true) => Outcome::PassedLoose,
            Err(e) => match known_rounding_flip(case, dtype) {
                Some(reason) => Outcome::Skipped(format!("{reason} ({e})")),
                None => Outcome::Failed(e),
            },
        },
    }
}

/// Cases whose result is decided by the last bit of a distance, listed by name: where we
/// disagree with TF on them, the case is skipped with this reason instead of failing.
/// Every entry is also in the case's `ulp_sensitive_anchors`.
fn known_rounding_flip(case: &Value, dtype: &str) -> Option<&'static str> {
    const FLIPS: [(&str, &str, &str); 1] = [(
        "float64",
        "edge_all_same_label/inner_product/hard/semi-hard/",
        "in float64 TF's masked_max round trip (d − a) + a lands an ulp below d, \
             which flips the semi-hard column-0 test D[i,0] > t for an anchor without negatives; \
             whether it flips depends on the last bit of the matrix product",
    )];
    let name = case["name"].as_str()?;
    let flagged = integers(&case["ulp_sensitive_anchors"]).is_some_and(|a| !a.is_empty());
    FLIPS
        .iter()
        .find(|(d, prefix, _)| *d == dtype && name.starts_with(prefix))
        .filter(|_| flagged)
        .map(|(_, _, reason)| *reason)
}
