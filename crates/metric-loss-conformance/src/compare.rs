//! Tolerances and comparisons.

/// How close our numbers must be to the fixture's.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Per-example and reduced losses: |Δ| ≤ `loss · (1 + |v|)`.
    pub loss: f64,
    /// Gradients: max|Δ| ≤ `grad · (1 + max|g|)`.
    pub grad: f64,
}

impl Tolerance {
    /// 1e-5 / 1e-4 in float32, 1e-10 / 1e-10 in float64.
    pub fn for_dtype(dtype: &str) -> Self {
        if dtype == "float64" {
            Tolerance {
                loss: 1e-10,
                grad: 1e-10,
            }
        } else {
            Tolerance {
                loss: 1e-5,
                grad: 1e-4,
            }
        }
    }

    /// For rows the fixture marks `ulp_sensitive_anchors`, where an independent
    /// implementation may legitimately differ: the euclidean self-distance noise reaches
    /// about 1e-2 and a cosine gradient row can move by 2‖xᵢ‖wᵢ/n.
    pub fn ulp_sensitive() -> Self {
        Tolerance {
            loss: 5e-2,
            grad: 5e-1,
        }
    }
}

/// Compares two scalars; non-finite values must match exactly.
pub(crate) fn scalar(what: &str, ours: f64, theirs: f64, tol: f64) -> Result<(), String> {
    if !theirs.is_finite() || !ours.is_finite() {
        let same = (theirs.is_nan() && ours.is_nan()) || theirs == ours;
        return if same {
            Ok(())
        } else {
            Err(format!("{what}: ours {ours} vs TF {theirs}"))
        };
    }
    let err = (ours - theirs).abs() / (1.0 + theirs.abs());
    if err <= tol {
        Ok(())
    } else {
        Err(format!(
            "{what}: ours {ours} vs TF {theirs} (rel {err:.3e} > {tol:.0e})"
        ))
    }
}

/// Compares two gradient rows against a scale of `1 + max|g|` over the whole gradient.
pub(crate) fn grad_row(
    row: usize,
    ours: &[f64],
    theirs: &[f64],
    scale: f64,
    tol: f64,
) -> Result<(), String> {
    for (c, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let err = (a - b).abs() / scale;
        if err.is_nan() || err > tol {
            return Err(format!(
                "grad[{row}][{c}]: ours {a} vs TF {b} (rel {err:.3e} > {tol:.0e})"
            ));
        }
    }
    Ok(())
}

/// The worst gradient row error: `Ok` or the first row beyond `tol`, skipping `flagged`.
pub(crate) fn gradient(
    what: &str,
    ours: &[f64],
    theirs: &[f64],
    dims: usize,
    flagged: &[usize],
    tol: f64,
) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            ours.len(),
            theirs.len()
        ));
    }
    let scale = 1.0 + theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (row, (a, b)) in ours
        .chunks(dims.max(1))
        .zip(theirs.chunks(dims.max(1)))
        .enumerate()
    {
        if !flagged.contains(&row) {
            grad_row(row, a, b, scale, tol).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    Ok(())
}
