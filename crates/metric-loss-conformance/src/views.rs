//! Checking the two-view losses against TF Similarity 0.17.1's fixture records
//! (`multinegrank_public.json`, `simclr_public.json`, `simsiam_public.json`,
//! `barlow_public.json`, `vicreg_public.json`).
//!
//! A case's loss is built from its `kwargs` (what TF's constructor received: TF's own
//! `get_config` drops MultiNegativesRankLoss's `scale`) and run in float32 on `za`, `zb`
//! and the sample weight. Compared, as the fixtures' spec suggests: every entry of
//! `per_example_loss`, `weighted_per_example_loss` and `loss` within
//! `tol · (1 + max(|v|, M))`, M being `max_abs_scaled_similarity` (times the largest
//! weight) for MultiNegativesRankLoss and 0 otherwise; `grad_za` and `grad_zb` within
//! `tol · (1 + max|g|)` per input. Rows in `ulp_sensitive_rows` are compared with the loose
//! tolerance. Where TF's outputs hold NaN or ±∞ on finite input, this project returns a
//! finite value or a typed error: the case is a named deviation.

use metric_loss_core::{
    Embeddings, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight, Workspace,
};
use metric_loss_views::{
    BarlowConfig, MultiNegativesRankLossConfig, SimCLRLossConfig, SimSiamLossConfig, VicRegConfig,
};
use serde_json::Value;

use crate::compare::gradient;
use crate::fixture::{integers, number, numbers};
use crate::{Outcome, Tolerance};

/// The two-view classes this runner knows.
pub(crate) const CLASSES: &[&str] = &[
    "MultiNegativesRankLoss",
    "SimCLRLoss",
    "SimSiamLoss",
    "Barlow",
    "VicReg",
];

/// Checks one record; `class` is the config's class name, or the file's loss when the
/// constructor raised (no config then).
pub(crate) fn run_case(case: &Value, class: Option<&str>) -> Outcome {
    check(case, class).unwrap_or_else(Outcome::Failed)
}

fn build(class: &str, kwargs: &Value) -> Result<Box<dyn MetricLoss>, String> {
    fn de<C: serde::de::DeserializeOwned>(v: &Value) -> Result<C, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }
    let e = |e: metric_loss_core::LossError| e.to_string();
    Ok(match class {
        "MultiNegativesRankLoss" => Box::new(
            de::<MultiNegativesRankLossConfig>(kwargs)?
                .build()
                .map_err(e)?,
        ),
        "SimCLRLoss" => Box::new(de::<SimCLRLossConfig>(kwargs)?.build().map_err(e)?),
        "SimSiamLoss" => Box::new(de::<SimSiamLossConfig>(kwargs)?.build().map_err(e)?),
        "Barlow" => Box::new(de::<BarlowConfig>(kwargs)?.build().map_err(e)?),
        "VicReg" => Box::new(de::<VicRegConfig>(kwargs)?.build().map_err(e)?),
        other => return Err(format!("no two-view loss named {other:?}")),
    })
}

/// One call's inputs.
struct Call {
    za: Vec<f32>,
    zb: Vec<f32>,
    shape_a: (usize, usize),
    shape_b: (usize, usize),
    weights: Weights,
}

enum Weights {
    None,
    Scalar(f32),
    PerExample(Vec<f32>),
}

impl Weights {
    fn get(&self, row: usize) -> f64 {
        match self {
            Weights::None => 1.0,
            Weights::Scalar(w) => f64::from(*w),
            Weights::PerExample(w) => w.get(row).map_or(f64::NAN, |v| f64::from(*v)),
        }
    }

    fn max_abs(&self) -> f64 {
        match self {
            Weights::None => 1.0,
            Weights::Scalar(w) => f64::from(w.abs()),
            Weights::PerExample(w) => w.iter().fold(0.0, |m, v| m.max(f64::from(v.abs()))),
        }
    }
}

/// The inputs, or `Err` with the reason the call cannot be formed here.
fn inputs(case: &Value) -> Result<Call, String> {
    let shape = |key: &str| -> Result<(usize, usize), String> {
        match integers(&case[key]).unwrap_or_default()[..] {
            [r, c] => Ok((r as usize, c as usize)),
            ref s => Err(format!("{key} is {s:?}: each view is a matrix")),
        }
    };
    let floats = |v: &Value| -> Vec<f32> {
        numbers(v)
            .unwrap_or_default()
            .into_iter()
            .map(|x| x as f32)
            .collect()
    };
    let weights = match &case["sample_weight"] {
        Value::Null => Weights::None,
        w if w.is_number() => Weights::Scalar(number(w).unwrap_or(f64::NAN) as f32),
        w if integers(&case["sample_weight_shape"]).is_some_and(|s| s.len() == 2) => {
            return Err(format!(
                "per-entry sample weights of shape {}: SampleWeight holds one weight per example ({})",
                case["sample_weight_shape"],
                w.as_array().map_or(0, Vec::len)
            ))
        }
        w => Weights::PerExample(floats(w)),
    };
    Ok(Call {
        za: floats(&case["za"]),
        zb: floats(&case["zb"]),
        shape_a: shape("shape_a")?,
        shape_b: shape("shape_b")?,
        weights,
    })
}

fn evaluate(loss: &dyn MetricLoss, call: &Call) -> Result<LossOutput<f32>, String> {
    fn view(x: &[f32], (r, c): (usize, usize)) -> Result<Embeddings<'_, f32>, String> {
        Embeddings::from_row_major(x, r, c).map_err(|e| e.to_string())
    }
    let mut input = LossInput::views(view(&call.za, call.shape_a)?, view(&call.zb, call.shape_b)?);
    input = match &call.weights {
        Weights::None => input,
        Weights::Scalar(w) => input.with_sample_weight(SampleWeight::Scalar(*w)),
        Weights::PerExample(w) => input.with_sample_weight(SampleWeight::PerExample(w)),
    };
    let mut out = LossOutput::new();
    loss.compute_into(&input, &mut Workspace::new(), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Whether any of TF's outputs is NaN or ±∞.
fn tf_non_finite(case: &Value) -> bool {
    [
        "loss",
        "per_example_loss",
        "weighted_per_example_loss",
        "grad_za",
        "grad_zb",
    ]
    .iter()
    .any(|k| {
        numbers(&case[*k])
            .unwrap_or_default()
            .iter()
            .any(|v| !v.is_finite())
    })
}

fn check(case: &Value, class: Option<&str>) -> Result<Outcome, String> {
    let class = class.ok_or("no class name in the case or the file")?;
    let built = build(class, &case["kwargs"]);
    let call = inputs(case);
    if !case["error"].is_null() {
        let tf = &case["error"]["message"];
        return Ok(match (built, call) {
            (Err(_), _) | (_, Err(_)) => Outcome::Passed,
            (Ok(loss), Ok(call)) => match evaluate(loss.as_ref(), &call) {
                Err(_) => Outcome::Passed,
                Ok(_) => Outcome::Failed(format!("TF raises ({tf}) but this crate succeeded")),
            },
        });
    }
    let non_finite = tf_non_finite(case);
    let note = case["note"].as_str().unwrap_or("");
    let loss = match built {
        Ok(loss) => loss,
        Err(e) if non_finite => {
            return Ok(Outcome::Deviation(format!(
                "TF returns NaN / inf ({note}); rejected at build: {e}"
            )))
        }
        Err(e) => return Err(format!("build failed: {e}")),
    };
    let call = match call {
        Ok(call) => call,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let out = match evaluate(loss.as_ref(), &call) {
        Ok(out) => out,
        Err(e) if non_finite => {
            return Ok(Outcome::Deviation(format!(
                "TF returns NaN / inf ({note}); a typed error here: {e}"
            )))
        }
        Err(e) => return Err(format!("call failed: {e}")),
    };
    if non_finite {
        return Ok(Outcome::Deviation(format!(
            "TF returns NaN / inf ({note}); finite here: loss {}",
            out.loss
        )));
    }
    compare(case, &out, &call)
}

/// |Δ| ≤ `tol · (1 + max(|v|, m))`, `m` being the magnitude the value was computed from
/// (0 but for MultiNegativesRankLoss's cancellation).
fn value(what: &str, ours: f64, theirs: f64, m: f64, tol: f64) -> Result<(), String> {
    let err = (ours - theirs).abs() / (1.0 + theirs.abs().max(m));
    if err <= tol {
        Ok(())
    } else {
        Err(format!(
            "{what}: ours {ours} vs TF {theirs} (rel {err:.3e} > {tol:.0e}, M = {m})"
        ))
    }
}

/// Ours against TF's, skipping the rows in `flagged` (per-example rows and gradient rows).
fn agree(
    case: &Value,
    out: &LossOutput<f32>,
    call: &Call,
    tol: Tolerance,
    flagged: &[usize],
) -> Result<(), String> {
    let widen = |v: &[f32]| v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>();
    let m = number(&case["max_abs_scaled_similarity"]).unwrap_or(0.0) * call.weights.max_abs();
    let per_example = widen(&out.per_example);
    // Entries per example: MultiNegativesRankLoss's output is n×k, the others' [n] or [].
    let per_row = integers(&case["per_example_loss_shape"])
        .and_then(|s| s.get(1).copied())
        .unwrap_or(1)
        .max(1) as usize;
    let row_of = |e: usize| {
        if per_example.len() == 1 {
            0
        } else {
            e / per_row
        }
    };
    let values = |what: &str, theirs: &[f64], ours: &dyn Fn(usize) -> f64| -> Result<(), String> {
        if theirs.len() != per_example.len() {
            return Err(format!(
                "{what}: {} values, TF has {}",
                per_example.len(),
                theirs.len()
            ));
        }
        for (e, t) in theirs.iter().enumerate() {
            if per_example.len() > 1 && flagged.contains(&row_of(e)) {
                continue;
            }
            value(&format!("{what}[{e}]"), ours(e), *t, m, tol.loss)?;
        }
        Ok(())
    };
    let weighted = |e: usize| per_example[e] * call.weights.get(row_of(e));
    values(
        "per_example_loss",
        &numbers(&case["per_example_loss"]).unwrap_or_default(),
        &|e| per_example[e],
    )?;
    if !case["weighted_per_example_loss"].is_null() {
        let theirs = numbers(&case["weighted_per_example_loss"]).unwrap_or_default();
        values("weighted_per_example_loss", &theirs, &weighted)?;
    }
    if case["loss"].is_array() {
        values(
            "loss",
            &numbers(&case["loss"]).unwrap_or_default(),
            &weighted,
        )?;
    } else if flagged.is_empty() {
        let theirs = number(&case["loss"]).unwrap_or(f64::NAN);
        value("loss", f64::from(out.loss), theirs, m, tol.loss)?;
    }
    for (what, ours, key, dims) in [
        ("grad_za", &out.grad_queries, "grad_za", call.shape_a.1),
        ("grad_zb", &out.grad_keys, "grad_zb", call.shape_b.1),
    ] {
        let theirs = numbers(&case[key]).unwrap_or_default();
        gradient(what, &widen(ours), &theirs, dims, flagged, tol.grad)?;
    }
    Ok(())
}

fn compare(case: &Value, out: &LossOutput<f32>, call: &Call) -> Result<Outcome, String> {
    let strict = Tolerance::for_dtype("float32");
    let flagged: Vec<usize> = integers(&case["ulp_sensitive_rows"])
        .unwrap_or_default()
        .into_iter()
        .map(|r| r as usize)
        .collect();
    if flagged.is_empty() {
        return agree(case, out, call, strict, &[]).map(|()| Outcome::Passed);
    }
    // Flagged rows: the others strictly, then everything with the loose tolerance.
    let loose = agree(case, out, call, strict, &flagged)
        .and_then(|()| agree(case, out, call, Tolerance::ulp_sensitive(), &[]));
    Ok(match loose {
        Ok(()) => Outcome::PassedLoose,
        Err(e) => Outcome::Skipped(format!(
            "ulp-sensitive in TF (rows {flagged:?}: {}); its numbers there are rounding noise ({e})",
            case["ulp_note"].as_str().unwrap_or("")
        )),
    })
}
