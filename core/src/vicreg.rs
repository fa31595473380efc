//! Weighted VICReg (facebookresearch/vicreg formulation).
//!
//! * invariance `repr = (1/(n·d)) Σᵢ wᵢ ‖z1ᵢ − z2ᵢ‖²` (the only weighted term);
//! * variance: per view, centred, `std_j = sqrt(var_j + 1e-4)` with the
//!   unbiased variance, `std_loss = mean(relu(1 − std_x))/2 + mean(relu(1 − std_y))/2`;
//! * covariance: `C = XcᵀXc/(n−1)`, `cov_loss = Σ offdiag(C_x)²/d + Σ offdiag(C_y)²/d`;
//! * `L = sim_coeff·repr + std_coeff·std_loss + cov_coeff·cov_loss`.
//!
//! Gradient for view x, row i, column j:
//! `2 sim wᵢ (xᵢⱼ − yᵢⱼ)/(n d) − std [std_j < 1] xcᵢⱼ / (2 d (n−1) std_j)
//!  + 4 cov Σ_{k≠j} xcᵢₖ C_kj / (d (n−1))`.
//!
//! The centring adds nothing: both last terms already have zero column mean.

use crate::math::{check_scratch, check_weights, non_negative, weight};
use crate::{CoreError, GradPair, Result, Views};

/// The variance term's epsilon inside the square root.
pub const STD_EPS: f64 = 1e-4;

/// Configuration of VICReg.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct VicRegConfig {
    /// Invariance coefficient λ (25).
    pub sim_coeff: f32,
    /// Variance coefficient μ (25).
    pub std_coeff: f32,
    /// Covariance coefficient ν (1).
    pub cov_coeff: f32,
}

impl Default for VicRegConfig {
    fn default() -> Self {
        VicRegConfig {
            sim_coeff: 25.0,
            std_coeff: 25.0,
            cov_coeff: 1.0,
        }
    }
}

impl VicRegConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        non_negative("sim_coeff", self.sim_coeff)?;
        non_negative("std_coeff", self.std_coeff)?;
        non_negative("cov_coeff", self.cov_coeff)
    }
}

/// The loss and its three unscaled terms, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VicRegLoss {
    /// `sim_coeff·invariance + std_coeff·variance + cov_coeff·covariance`.
    pub loss: f32,
    /// Weighted invariance term (repr).
    pub invariance: f32,
    /// Variance term (std_loss).
    pub variance: f32,
    /// Covariance term (cov_loss).
    pub covariance: f32,
}

/// Scratch length (f32 elements) [`loss`] needs.
pub fn scratch_len(d: usize) -> usize {
    d * d + 2 * d
}

/// Weighted VICReg; gradients for both views written when given.
pub fn loss(
    z: Views<'_>,
    weights: Option<&[f32]>,
    cfg: &VicRegConfig,
    mut grads: Option<GradPair<'_>>,
    scratch: &mut [f32],
) -> Result<VicRegLoss> {
    cfg.validate()?;
    let (n, d) = (z.n, z.d);
    if n < 2 {
        return Err(CoreError::Config {
            field: "n",
            allowed: "at least 2 rows (unbiased variance)",
        });
    }
    check_weights(weights, n)?;
    check_scratch("vicreg::loss", scratch.len(), scratch_len(d))?;
    if let Some(g) = &grads {
        g.check(n * d)?;
    }
    let (cov, rest) = scratch.split_at_mut(d * d);
    let (mean, rest) = rest.split_at_mut(d);
    let std = &mut rest[..d];
    let (nf, df) = (n as f64, d as f64);

    let mut repr = 0.0f64;
    for i in 0..n {
        let w = weight(weights, i);
        let s: f64 = z
            .row(0, i)
            .iter()
            .zip(z.row(1, i))
            .map(|(x, y)| (*x as f64 - *y as f64) * (*x as f64 - *y as f64))
            .sum();
        repr += w * s;
    }
    repr /= nf * df;
    if let Some(g) = grads.as_mut() {
        let k = 2.0 * cfg.sim_coeff as f64 / (nf * df);
        for i in 0..n {
            let w = weight(weights, i);
            for j in 0..d {
                let diff = z.a[i * d + j] as f64 - z.b[i * d + j] as f64;
                g.a[i * d + j] = (k * w * diff) as f32;
                g.b[i * d + j] = (-k * w * diff) as f32;
            }
        }
    }

    let mut std_loss = 0.0f64;
    let mut cov_loss = 0.0f64;
    for v in 0..2 {
        let x = if v == 0 { z.a } else { z.b };
        for (j, mu) in mean.iter_mut().enumerate() {
            *mu = ((0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / nf) as f32;
        }
        let xc = |i: usize, j: usize| x[i * d + j] as f64 - mean[j] as f64;
        for j in 0..d {
            for k in 0..=j {
                let c = ((0..n).map(|i| xc(i, j) * xc(i, k)).sum::<f64>() / (nf - 1.0)) as f32;
                cov[j * d + k] = c;
                cov[k * d + j] = c;
            }
        }
        for j in 0..d {
            let s = libm::sqrt(cov[j * d + j] as f64 + STD_EPS);
            std[j] = s as f32;
            // relu(1 − s) as PyTorch: a NaN std stays NaN.
            if s < 1.0 || s.is_nan() {
                std_loss += (1.0 - s) / (2.0 * df);
            }
            for k in 0..d {
                if k != j {
                    let c = cov[j * d + k] as f64;
                    cov_loss += c * c / df;
                }
            }
        }
        if let Some(g) = grads.as_mut() {
            let gv: &mut [f32] = if v == 0 { g.a } else { g.b };
            let ks = cfg.std_coeff as f64 / (2.0 * df * (nf - 1.0));
            let kc = 4.0 * cfg.cov_coeff as f64 / (df * (nf - 1.0));
            for i in 0..n {
                for j in 0..d {
                    let mut t = 0.0f64;
                    if (std[j] as f64) < 1.0 || std[j].is_nan() {
                        t -= ks * xc(i, j) / std[j] as f64;
                    }
                    let mut s = 0.0f64;
                    for k in (0..d).filter(|&k| k != j) {
                        s += xc(i, k) * cov[k * d + j] as f64;
                    }
                    t += kc * s;
                    gv[i * d + j] = (gv[i * d + j] as f64 + t) as f32;
                }
            }
        }
    }
    let total = cfg.sim_coeff as f64 * repr
        + cfg.std_coeff as f64 * std_loss
        + cfg.cov_coeff as f64 * cov_loss;
    Ok(VicRegLoss {
        loss: total as f32,
        invariance: repr as f32,
        variance: std_loss as f32,
        covariance: cov_loss as f32,
    })
}
