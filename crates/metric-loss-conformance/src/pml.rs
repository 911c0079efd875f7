//! Checking the pair losses against pytorch-metric-learning 2.9.0 fixture records
//! (`contrastive_public*.json`, `ntxent_public*.json`, `supcon_public*.json`).
//!
//! A case's `config` is `{"class_name", "config": {PML's keyword arguments}}`; the loss is
//! built from those arguments as a config file would give them, run in the file's dtype,
//! and its loss, gradient (`grad`) and key gradient (`grad_ref_emb`) compared within
//! [`Tolerance::for_dtype`]. Cases whose `ulp_sensitive_rows` make the strict comparison
//! meaningless (identical rows at √(rounding noise), every row identical) pass loosely
//! when the loss is within the loose tolerance and the rows not flagged agree strictly,
//! and are skipped by name otherwise.

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    Workspace,
};
use metric_loss_pml::{ContrastiveLossConfig, NTXentLossConfig, SupConLossConfig};
use serde_json::Value;

use crate::compare::{gradient, scalar};
use crate::fixture::{integers, number, numbers};
use crate::{Outcome, Tolerance};

/// The PML classes this runner knows.
pub(crate) const CLASSES: &[&str] = &["ContrastiveLoss", "NTXentLoss", "SupConLoss"];

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
    let args = case["config"]["config"].clone();
    fn de<C: serde::de::DeserializeOwned>(v: Value) -> Result<C, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
    let e = |e: LossError| e.to_string();
    Ok(match case["config"]["class_name"].as_str().unwrap_or("") {
        "ContrastiveLoss" => Box::new(de::<ContrastiveLossConfig>(args)?.build().map_err(e)?),
        "NTXentLoss" => Box::new(de::<NTXentLossConfig>(args)?.build().map_err(e)?),
        "SupConLoss" => Box::new(de::<SupConLossConfig>(args)?.build().map_err(e)?),
        other => return Err(format!("unknown class_name {other:?}")),
    })
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
    match (loss_check, strict(&[])) {
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
    if loss_loose && !all_flagged && strict(&flagged).is_ok() {
        Ok(Outcome::PassedLoose)
    } else {
        Ok(Outcome::Skipped(format!(
            "ulp-sensitive in PML (rows {flagged:?}: {reasons}); its numbers there are rounding noise"
        )))
    }
}
