//! Small helpers shared by the losses: shape checks, f64-accumulated dot
//! products, and the L2 normalisation PyTorch's `F.normalize` performs.

use crate::{CoreError, Result};

/// PyTorch's `relu`: `max(x, 0)`, with NaN staying NaN (Rust's `f32::max`
/// and WGSL's `max` would return 0). The WGSL twin is `relu_of` in
/// `shaders/wgsl/include/nan.wgsl`.
#[inline]
pub fn relu(x: f32) -> f32 {
    if x.is_nan() {
        x
    } else {
        x.max(0.0)
    }
}

/// The ReLU gradient's mask as PyTorch's `threshold_backward`: the gradient
/// passes where `x > 0` or `x` is NaN.
#[inline]
pub fn relu_passes(x: f32) -> bool {
    x > 0.0 || x.is_nan()
}

/// `F.normalize`'s eps: rows are divided by `max(‖x‖, NORM_EPS)`.
pub const NORM_EPS: f32 = 1e-12;

/// Two views of one batch: `n` rows of `d` features each, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Views<'a> {
    /// First view (n × d).
    pub a: &'a [f32],
    /// Second view (n × d).
    pub b: &'a [f32],
    /// Rows (pairs).
    pub n: usize,
    /// Features per row.
    pub d: usize,
}

impl<'a> Views<'a> {
    /// Checks that both slices hold `n · d` values and that `n, d ≥ 1`.
    pub fn new(a: &'a [f32], b: &'a [f32], n: usize, d: usize) -> Result<Self> {
        if n == 0 {
            return Err(CoreError::Config {
                field: "n",
                allowed: "at least 1 row",
            });
        }
        if d == 0 {
            return Err(CoreError::Config {
                field: "d",
                allowed: "at least 1 feature",
            });
        }
        check_len("a", a.len(), n * d)?;
        check_len("b", b.len(), n * d)?;
        Ok(Views { a, b, n, d })
    }

    /// Row `i` of view `v` (0 = a, 1 = b).
    #[inline]
    pub fn row(&self, v: usize, i: usize) -> &'a [f32] {
        let src = if v == 0 { self.a } else { self.b };
        &src[i * self.d..(i + 1) * self.d]
    }
}

/// Gradient outputs for the two views (each n × d), overwritten.
#[derive(Debug)]
pub struct GradPair<'a> {
    /// Gradient with respect to the first view.
    pub a: &'a mut [f32],
    /// Gradient with respect to the second view.
    pub b: &'a mut [f32],
}

impl<'a> GradPair<'a> {
    /// Wraps two gradient slices.
    pub fn new(a: &'a mut [f32], b: &'a mut [f32]) -> Self {
        GradPair { a, b }
    }

    pub(crate) fn check(&self, len: usize) -> Result<()> {
        check_len("grad a", self.a.len(), len)?;
        check_len("grad b", self.b.len(), len)
    }
}

pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(CoreError::Shape {
            what,
            expected,
            got,
        })
    }
}

pub(crate) fn check_scratch(what: &'static str, got: usize, needed: usize) -> Result<()> {
    if got >= needed {
        Ok(())
    } else {
        Err(CoreError::Scratch { what, needed, got })
    }
}

/// Checks optional per-pair weights: `n` finite, non-negative values.
pub(crate) fn check_weights(w: Option<&[f32]>, n: usize) -> Result<()> {
    if let Some(w) = w {
        check_len("weights", w.len(), n)?;
        check_weight_values(w)?;
    }
    Ok(())
}

/// Weights of a loss with a term per view: n (one per pair, both views'
/// terms) or 2n (one per view, view 1's then view 2's); read with
/// [`view_weight`].
pub(crate) fn check_view_weights(w: Option<&[f32]>, n: usize) -> Result<()> {
    if let Some(w) = w {
        if w.len() != 2 * n {
            check_len("weights (n or 2n)", w.len(), n)?;
        }
        check_weight_values(w)?;
    }
    Ok(())
}

/// The weight of view row r (0 ≤ r < 2n): `w[r mod len]`, so pair weights
/// (len n) give both views of pair i the same weight.
#[inline]
pub(crate) fn view_weight(w: Option<&[f32]>, r: usize) -> f64 {
    w.map_or(1.0, |w| w[r % w.len()] as f64)
}

fn check_weight_values(w: &[f32]) -> Result<()> {
    if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(CoreError::Config {
            field: "weights",
            allowed: "finite values >= 0",
        });
    }
    Ok(())
}

#[inline]
pub(crate) fn weight(w: Option<&[f32]>, i: usize) -> f64 {
    w.map_or(1.0, |w| w[i] as f64)
}

/// Σ aᵢ bᵢ accumulated in f64.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// `max(‖x‖₂, NORM_EPS)` in f64.
#[inline]
pub(crate) fn clamped_norm(x: &[f32]) -> f64 {
    let n = libm::sqrt(dot(x, x));
    if n > NORM_EPS as f64 {
        n
    } else {
        NORM_EPS as f64
    }
}

/// Whether `‖x‖` exceeded `NORM_EPS` (else normalisation divides by the eps,
/// a constant, and its Jacobian is `I / eps`).
#[inline]
pub(crate) fn norm_active(x: &[f32]) -> bool {
    libm::sqrt(dot(x, x)) > NORM_EPS as f64
}

/// Back-propagates `g = dL/dû` through `û = x / max(‖x‖, eps)` in place:
/// `dL/dx = (g − û (û·g)) / ‖x‖` (or `g / eps` where the clamp is active).
pub fn normalize_backward(x: &[f32], g: &mut [f32]) {
    let norm = clamped_norm(x);
    if norm_active(x) {
        let ug = dot(x, g) / norm;
        for (gi, xi) in g.iter_mut().zip(x) {
            *gi = ((*gi as f64 - (*xi as f64 / norm) * ug) / norm) as f32;
        }
    } else {
        for gi in g.iter_mut() {
            *gi = (*gi as f64 / norm) as f32;
        }
    }
}

/// Cosine similarity as `F.normalize(a)·F.normalize(b)`.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    dot(a, b) / (clamped_norm(a) * clamped_norm(b))
}

/// Adds `coef · ∂cos(a, b)/∂a` to `ga`.
pub(crate) fn cosine_grad_into(a: &[f32], b: &[f32], coef: f64, ga: &mut [f32]) {
    let na = clamped_norm(a);
    let nb = clamped_norm(b);
    let active = norm_active(a);
    let c = dot(a, b) / (na * nb);
    for ((g, ai), bi) in ga.iter_mut().zip(a).zip(b) {
        let bh = *bi as f64 / nb;
        let d = if active {
            (bh - c * (*ai as f64 / na)) / na
        } else {
            bh / na
        };
        *g = (*g as f64 + coef * d) as f32;
    }
}

/// Validates that a float is finite and strictly positive.
pub(crate) fn positive(field: &'static str, x: f32) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(CoreError::Config {
            field,
            allowed: "a finite value > 0",
        })
    }
}

/// Validates that a float is finite and non-negative.
pub(crate) fn non_negative(field: &'static str, x: f32) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(CoreError::Config {
            field,
            allowed: "a finite value >= 0",
        })
    }
}

/// Validates a probability.
pub(crate) fn probability(field: &'static str, x: f32) -> Result<()> {
    if (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err(CoreError::Config {
            field,
            allowed: "a probability in [0, 1]",
        })
    }
}
