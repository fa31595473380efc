//! Softmax cross-entropy (the linear probe's loss, PyTorch's
//! `F.cross_entropy` with mean reduction) with its exact gradient, and
//! top-k accuracy.

use crate::math::check_len;
use crate::{CoreError, Result};

fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    if classes == 0 {
        return Err(CoreError::Config {
            field: "classes",
            allowed: "at least 1",
        });
    }
    for (index, &label) in labels.iter().enumerate() {
        if label as usize >= classes {
            return Err(CoreError::Label {
                index,
                label,
                classes,
            });
        }
    }
    Ok(())
}

/// Mean over rows of `logsumexp(z_r) − z_r[y_r]` for `logits` `[n,
/// classes]`; `grad` (same shape) receives its gradient,
/// `(softmax(z_r) − onehot(y_r)) / n`. Accumulates in f64.
pub fn softmax_xent(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    grad: &mut [f32],
) -> Result<f32> {
    check_labels(labels, classes)?;
    let n = labels.len();
    check_len("logits", logits.len(), n * classes)?;
    check_len("grad", grad.len(), n * classes)?;
    if n == 0 {
        return Ok(0.0);
    }
    let mut total = 0.0f64;
    let inv_n = 1.0 / n as f64;
    for r in 0..n {
        let z = &logits[r * classes..(r + 1) * classes];
        let m = z.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b)) as f64;
        let sum: f64 = z.iter().map(|v| libm::exp(*v as f64 - m)).sum();
        let y = labels[r] as usize;
        total += m + libm::log(sum) - z[y] as f64;
        for c in 0..classes {
            let p = libm::exp(z[c] as f64 - m) / sum;
            let g = p - if c == y { 1.0 } else { 0.0 };
            grad[r * classes + c] = (g * inv_n) as f32;
        }
    }
    Ok((total * inv_n) as f32)
}

/// Whether the label of a row is among its `k` largest logits: fewer than
/// `k` classes have a logit strictly greater than the label's (ties count
/// in the label's favour).
pub fn in_top_k(row: &[f32], label: u32, k: usize) -> bool {
    let z = row[label as usize];
    row.iter().filter(|v| **v > z).count() < k
}

/// Rows of `logits` `[n, classes]` whose label is in their top `k`.
pub fn top_k_correct(logits: &[f32], labels: &[u32], classes: usize, k: usize) -> Result<usize> {
    check_labels(labels, classes)?;
    check_len("logits", logits.len(), labels.len() * classes)?;
    Ok(labels
        .iter()
        .enumerate()
        .filter(|(r, l)| in_top_k(&logits[r * classes..(r + 1) * classes], **l, k))
        .count())
}
