//! Checking PML's losses against pytorch-metric-learning 2.9.0 fixture records: the pair
//! losses (`contrastive_public*.json`, `ntxent_public*.json`, `supcon_public*.json`) and the
//! losses with a learnable matrix (`arcface_public*.json`, `cosface_public*.json`,
//! `subcenter_arcface_public*.json`, `proxy_anchor_public*.json`).
//!
//! A case's `config` is `{"class_name", "config": {PML's keyword arguments}}` (positional
//! `ctor_args` become `num_classes, embedding_size` where PML's signature takes them); the
//! loss is built from those arguments as a config file would give them, its `parameters`
//! set, run in the file's dtype, and its loss, gradient (`grad`), key gradient
//! (`grad_ref_emb`) and parameter gradient (`grad_parameters`) compared within
//! [`Tolerance::for_dtype`]. Cases whose `ulp_sensitive_rows` make the strict comparison
//! meaningless (identical rows at √(rounding noise), every row identical) pass loosely
//! when the loss is within the loose tolerance and the rows not flagged agree strictly,
//! and are skipped by name otherwise.

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    Workspace,
};
use metric_loss_pml::{
    ArcFaceLossConfig, ContrastiveLossConfig, CosFaceLossConfig, NTXentLossConfig,
    ProxyAnchorLossConfig, SubCenterArcFaceLossConfig, SupConLossConfig,
};
use serde_json::Value;

use crate::compare::{gradient, scalar};
use crate::fixture::{integers, number, numbers};
use crate::{Outcome, Tolerance};

/// The PML classes this runner knows.
pub(crate) const CLASSES: &[&str] = &[
    "ContrastiveLoss",
    "NTXentLoss",
    "SupConLoss",
    "ArcFaceLoss",
    "CosFaceLoss",
    "SubCenterArcFaceLoss",
    "ProxyAnchorLoss",
];

/// The classes whose constructor takes `num_classes, embedding_size` positionally
/// (`SubCenterArcFaceLoss` requires keywords).
const POSITIONAL: &[&str] = &["ArcFaceLoss", "CosFaceLoss", "ProxyAnchorLoss"];

/// Checks one record of a PML fixture file.
pub(crate) fn run_case(case: &Value, dtype: &str) -> Outcome {
    let outcome = if dtype == "float64" {
        check::<f64>(case, dtype)
    } else {
        check::<f32>(case, dtype)
    };
    outcome.unwrap_or_else(Outcome::Failed)
}

fn build(case: &Value) -> Result<Box<dyn MetricLoss>, String> {
    let class = case["config"]["class_name"].as_str().unwrap_or("");
    let mut args = case["config"]["config"].clone();
    if let (Some(positional), Some(map)) = (case["ctor_args"].as_array(), args.as_object_mut()) {
        if POSITIONAL.contains(&class) {
            for (name, value) in ["num_classes", "embedding_size"].iter().zip(positional) {
                map.insert((*name).to_owned(), value.clone());
            }
        }
    }
    fn de<C: serde::de::DeserializeOwned>(v: Value) -> Result<C, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
    let e = |e: LossError| e.to_string();
    Ok(match class {
        "ContrastiveLoss" => Box::new(de::<ContrastiveLossConfig>(args)?.build().map_err(e)?),
        "NTXentLoss" => Box::new(de::<NTXentLossConfig>(args)?.build().map_err(e)?),
        "SupConLoss" => Box::new(de::<SupConLossConfig>(args)?.build().map_err(e)?),
        "ArcFaceLoss" => Box::new(de::<ArcFaceLossConfig>(args)?.build().map_err(e)?),
        "CosFaceLoss" => Box::new(de::<CosFaceLossConfig>(args)?.build().map_err(e)?),
        "SubCenterArcFaceLoss" => {
            Box::new(de::<SubCenterArcFaceLossConfig>(args)?.build().map_err(e)?)
        }
        "ProxyAnchorLoss" => Box::new(de::<ProxyAnchorLossConfig>(args)?.build().map_err(e)?),
        other => return Err(format!("unknown class_name {other:?}")),
    })
}

/// The case's `parameters` (`{"W": {"values": ...}}` or `{"proxies": ...}`), flattened
/// row-major, with the gradient PML computed for them; `None` for a loss without.
fn parameters(case: &Value) -> Option<(Vec<f64>, Vec<f64>, usize)> {
    let (name, p) = case["parameters"].as_object()?.iter().next()?;
    let cols = integers(&p["shape"])?.get(1).copied()? as usize;
    let want = numbers(&case["grad_parameters"][name.as_str()]).unwrap_or_default();
    Some((numbers(&p["values"])?, want, cols))
}

/// One call's inputs in `T`.
struct Call<T> {
    labels: Vec<i64>,
    x: Vec<T>,
    rows: usize,
    dims: usize,
    keys: Option<(Vec<i64>, Vec<T>, usize)>,
}

/// The inputs, or `Err` with the reason this crate cannot even form the call (PML's
/// `labels=None`, 2-D labels, 3-D embeddings, `ref_labels=None`).
fn inputs<T: Float>(case: &Value) -> Result<Call<T>, String> {
    let shape = integers(&case["shape"]).unwrap_or_default();
    if shape.len() != 2 {
        return Err(format!(
            "embeddings of shape {shape:?}: a matrix is required"
        ));
    }
    let labels = integers(&case["labels"]).ok_or("labels are required (a list of integers)")?;
    if let Some(dtype) = case["labels_dtype"].as_str().filter(|d| *d != "int64") {
        return Err(format!("{dtype} labels: labels are i64 here"));
    }
    let floats = |v: &Value| -> Vec<T> {
        numbers(v)
            .unwrap_or_default()
            .into_iter()
            .map(T::from_f64)
            .collect()
    };
    let keys = match case.get("ref_emb") {
        None => None,
        Some(r) => {
            let ref_labels = integers(&case["ref_labels"])
                .ok_or("ref_emb without ref_labels: keys carry their own labels")?;
            let ref_shape = integers(&case["ref_shape"]).unwrap_or_default();
            Some((
                ref_labels,
                floats(r),
                *ref_shape.get(1).unwrap_or(&0) as usize,
            ))
        }
    };
    Ok(Call {
        labels,
        x: floats(&case["embeddings"]),
        rows: shape[0] as usize,
        dims: shape[1] as usize,
        keys,
    })
}

fn evaluate<T: Float>(loss: &dyn MetricLoss, call: &Call<T>) -> Result<LossOutput<T>, LossError> {
    let batch = Batch::new(
        &call.labels,
        Embeddings::from_row_major(&call.x, call.rows, call.dims)?,
    )?;
    let mut input = LossInput::new(batch);
    if let Some((labels, x, dims)) = &call.keys {
        let rows = x.len().checked_div(*dims).unwrap_or(0);
        let keys = Batch::new(labels, Embeddings::from_row_major(x, rows, *dims)?)?;
        // PML removes nothing once ref labels are passed.
        input = input.with_keys(keys).remove_diagonal(false);
    }
    let mut out = LossOutput::new();
    loss.compute_into(&input, &mut Workspace::new(), &mut out)?;
    Ok(out)
}

fn check<T: Float>(case: &Value, dtype: &str) -> Result<Outcome, String> {
    let built = build(case);
    let call = inputs::<T>(case);
    if !case["error"].is_null() {
        let pml = &case["error"]["message"];
        return Ok(match (built, call) {
            (Err(_), _) | (_, Err(_)) => Outcome::Passed,
            (Ok(loss), Ok(call)) => match evaluate(loss.as_ref(), &call) {
                Err(_) => Outcome::Passed,
                Ok(_) => Outcome::Failed(format!("PML fails ({pml}) but this crate succeeded")),
            },
        });
    }
    let loss = match built {
        Ok(loss) => loss,
        Err(e) if case["config"]["config"]["temperature"].as_f64() == Some(0.0) => {
            return Ok(Outcome::Deviation(format!(
                "PML divides by a temperature of 0 (loss {}); rejected at build: {e}",
                case["loss"]
            )))
        }
        Err(e) => return Err(format!("build failed: {e}")),
    };
    let call = match call {
        Ok(call) => call,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    if let Some((values, _, _)) = parameters(case) {
        loss.set_parameters(&values)
            .map_err(|e| format!("setting the parameters failed: {e}"))?;
    }
    let out = evaluate(loss.as_ref(), &call).map_err(|e| format!("call failed: {e}"))?;
    compare(case, &out, &call, Tolerance::for_dtype(dtype))
}

fn compare<T: Float>(
    case: &Value,
    out: &LossOutput<T>,
    call: &Call<T>,
    tol: Tolerance,
) -> Result<Outcome, String> {
    let widen = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
    let grad = widen(&out.grad_queries);
    let key_grad = widen(&out.grad_keys);
    let want_grad = numbers(&case["grad"]).unwrap_or_default();
    let want_key_grad = numbers(&case["grad_ref_emb"]).unwrap_or_default();
    let param_grad = widen(&out.grad_parameters);
    let params = parameters(case);
    let parameter_gradient = |tol: f64| match &params {
        Some((_, want, cols)) => gradient("grad_parameters", &param_grad, want, *cols, &[], tol),
        None => Ok(()),
    };
    let loss = number(&case["loss"]).unwrap_or(f64::NAN);
    let strict = |flagged: &[usize]| -> Result<(), String> {
        gradient("grad", &grad, &want_grad, call.dims, flagged, tol.grad)?;
        if call.keys.is_some() {
            gradient(
                "grad_ref_emb",
                &key_grad,
                &want_key_grad,
                call.dims,
                &[],
                tol.grad,
            )?;
        }
        Ok(())
    };
    let loss_check = scalar("loss", out.loss.to_f64(), loss, tol.loss);
    let strict_all = || strict(&[]).and_then(|()| parameter_gradient(tol.grad));
    match (loss_check, strict_all()) {
        (Ok(()), Ok(())) => return Ok(Outcome::Passed),
        (Err(e), _) | (_, Err(e))
            if integers(&case["ulp_sensitive_rows"])
                .unwrap_or_default()
                .is_empty() =>
        {
            return Err(e)
        }
        _ => {}
    }
    let flagged: Vec<usize> = integers(&case["ulp_sensitive_rows"])
        .unwrap_or_default()
        .into_iter()
        .map(|r| r as usize)
        .collect();
    let loose = Tolerance::ulp_sensitive();
    let reasons = case["ulp_sensitive_reasons"].to_string();
    let all_flagged = flagged.len() >= call.rows;
    let loss_loose = scalar("loss", out.loss.to_f64(), loss, loose.loss).is_ok();
    // The parameters' gradient sums over every row, the flagged ones included.
    let parameters_loose = parameter_gradient(loose.grad).is_ok();
    if loss_loose && !all_flagged && strict(&flagged).is_ok() && parameters_loose {
        Ok(Outcome::PassedLoose)
    } else {
        Ok(Outcome::Skipped(format!(
            "ulp-sensitive in PML (rows {flagged:?}: {reasons}); its numbers there are rounding noise"
        )))
    }
}
