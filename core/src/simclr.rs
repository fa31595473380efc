//! Weighted NT-Xent, the SimCLR loss.
//!
//! Inputs z1, z2 (n × d, not normalised), temperature τ, weights w: one per
//! pair (n; both anchors of pair i take wᵢ) or one per view (2n; anchor r
//! takes w_r). Below, `w_r` means `w[r mod len(w)]`.
//! The 2n rows `z = [z1; z2]` are L2-normalised (`F.normalize`); for each
//! row r, `ℓ_r` is the cross-entropy of its positive `p(r) = r ± n` against
//! the 2n − 1 other rows on `s_rc = û_r·û_c / τ`:
//!
//! `ℓ_r = −s_{r,p(r)} + log Σ_{c≠r} exp(s_rc)`,
//! `L = (1/2n) Σ_r w_r ℓ_r` (with pair weights: `(1/2n) Σᵢ wᵢ (ℓᵢ + ℓᵢ₊ₙ)`).
//!
//! Gradient, with `a_r = w_r / 2n` and `P_rc` the row softmax:
//! `∂L/∂û_r = (1/τ) Σ_{c≠r} (a_r P_rc + a_c P_cr) û_c − ((a_r + a_{p(r)}) / τ) û_{p(r)}`,
//! then through the normalisation `∂L/∂z_r = (g − û (û·g)) / ‖z_r‖`.
//! No 2n × 2n matrix is stored: similarities are recomputed in the backward
//! pass, so the scratch is O(n·d).

use crate::math::{
    check_scratch, check_view_weights, clamped_norm, dot, normalize_backward, view_weight,
};
use crate::{GradPair, Result, Views};

/// Configuration of the NT-Xent loss.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SimClrConfig {
    /// Softmax temperature τ (> 0). solo-learn's CIFAR presets use 0.2.
    pub temperature: f32,
}

impl Default for SimClrConfig {
    fn default() -> Self {
        SimClrConfig { temperature: 0.2 }
    }
}

impl SimClrConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        crate::math::positive("temperature", self.temperature)
    }
}

/// Scratch length (f32 elements) [`loss`] needs for `n` pairs of `d` features.
pub fn scratch_len(n: usize, d: usize) -> usize {
    2 * n * d + 2 * n
}

/// Weighted NT-Xent value, and its gradient written into `grads` when given.
///
/// `weights = None` is the unweighted loss (all ones).
pub fn loss(
    z: Views<'_>,
    weights: Option<&[f32]>,
    cfg: &SimClrConfig,
    grads: Option<GradPair<'_>>,
    scratch: &mut [f32],
) -> Result<f32> {
    cfg.validate()?;
    let (n, d) = (z.n, z.d);
    check_view_weights(weights, n)?;
    check_scratch("simclr::loss", scratch.len(), scratch_len(n, d))?;
    let rows = 2 * n;
    let tau = cfg.temperature as f64;
    let (u, rest) = scratch.split_at_mut(rows * d);
    let lse = &mut rest[..rows];

    // Normalised rows û.
    for r in 0..rows {
        let src = z.row(r / n, r % n);
        let norm = clamped_norm(src);
        for (dst, x) in u[r * d..(r + 1) * d].iter_mut().zip(src) {
            *dst = (*x as f64 / norm) as f32;
        }
    }
    let partner = |r: usize| if r < n { r + n } else { r - n };

    // Forward: per-row log-sum-exp with max subtraction.
    let mut total = 0.0f64;
    for r in 0..rows {
        let ur = row(u, d, r);
        let mut m = f64::NEG_INFINITY;
        for c in (0..rows).filter(|&c| c != r) {
            m = m.max(dot(ur, row(u, d, c)) / tau);
        }
        let mut s = 0.0f64;
        for c in (0..rows).filter(|&c| c != r) {
            s += libm::exp(dot(ur, row(u, d, c)) / tau - m);
        }
        let l = m + libm::log(s);
        lse[r] = l as f32;
        let pos = dot(ur, row(u, d, partner(r))) / tau;
        total += view_weight(weights, r) * (l - pos);
    }
    let value = total / rows as f64;

    if let Some(g) = grads {
        g.check(n * d)?;
        // a_r = w_r / 2n; the softmax is exp(s − lse_r).
        let coef = |r: usize| view_weight(weights, r) / rows as f64;
        for r in 0..rows {
            let ur = row(u, d, r);
            let ar = coef(r);
            let out: &mut [f32] = if r < n {
                &mut g.a[r * d..(r + 1) * d]
            } else {
                &mut g.b[(r - n) * d..(r - n + 1) * d]
            };
            out.iter_mut().for_each(|x| *x = 0.0);
            for c in (0..rows).filter(|&c| c != r) {
                let uc = row(u, d, c);
                let s = dot(ur, uc) / tau;
                let mut k =
                    ar * libm::exp(s - lse[r] as f64) + coef(c) * libm::exp(s - lse[c] as f64);
                if c == partner(r) {
                    // The positive sits in ℓ_r and in ℓ_{p(r)}.
                    k -= ar + coef(c);
                }
                let k = k / tau;
                for (o, x) in out.iter_mut().zip(uc) {
                    *o = (*o as f64 + k * *x as f64) as f32;
                }
            }
            normalize_backward(z.row(r / n, r % n), out);
        }
    }
    Ok(value as f32)
}

#[inline]
fn row(u: &[f32], d: usize, r: usize) -> &[f32] {
    &u[r * d..(r + 1) * d]
}
