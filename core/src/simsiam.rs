//! Weighted SimSiam loss (negative cosine with stop-gradient).
//!
//! `L = −(1/2n) Σᵢ [wᵢ cos(p1ᵢ, sg(z2ᵢ)) + wₙ₊ᵢ cos(p2ᵢ, sg(z1ᵢ))]` with one
//! weight per view (2n: view 1's predictor term, then view 2's), or with
//! pair weights (n) `wₙ₊ᵢ = wᵢ`: `−(1/2n) Σᵢ wᵢ [cos₁ + cos₂]`.
//! Gradients flow into the predictor outputs p1, p2 only: the projector
//! outputs z receive none (stop-gradient), so none are returned.

use crate::math::{check_view_weights, cosine, cosine_grad_into, view_weight};
use crate::{CoreError, GradPair, Result, Views};

/// Weighted SimSiam value; `grads` (for p1, p2) are overwritten when given.
pub fn loss(
    p: Views<'_>,
    z: Views<'_>,
    weights: Option<&[f32]>,
    grads: Option<GradPair<'_>>,
) -> Result<f32> {
    if p.n != z.n || p.d != z.d {
        return Err(CoreError::Shape {
            what: "z (must match p)",
            expected: p.n * p.d,
            got: z.n * z.d,
        });
    }
    let (n, d) = (p.n, p.d);
    check_view_weights(weights, n)?;
    let scale = 1.0 / (2 * n) as f64;
    let mut total = 0.0f64;
    for i in 0..n {
        total += view_weight(weights, i) * cosine(p.row(0, i), z.row(1, i))
            + view_weight(weights, n + i) * cosine(p.row(1, i), z.row(0, i));
    }
    if let Some(g) = grads {
        g.check(n * d)?;
        g.a.iter_mut().chain(g.b.iter_mut()).for_each(|x| *x = 0.0);
        for i in 0..n {
            let (c1, c2) = (
                -view_weight(weights, i) * scale,
                -view_weight(weights, n + i) * scale,
            );
            cosine_grad_into(p.row(0, i), z.row(1, i), c1, &mut g.a[i * d..(i + 1) * d]);
            cosine_grad_into(p.row(1, i), z.row(0, i), c2, &mut g.b[i * d..(i + 1) * d]);
        }
    }
    Ok((-total * scale) as f32)
}
