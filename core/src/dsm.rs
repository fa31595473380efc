//! Denoising score matching (Vincent 2011; Song & Ermon 2019 weighting).
//!
//! For a clean image x, noise level σᵢ and standard normal noise εᵢ, the
//! score network sees `x̃ = x + σᵢ εᵢ` and outputs `sᵢ ≈ ∇ log p_σ(x̃)`,
//! whose target is `−εᵢ/σᵢ`. With the λ(σ) = σ² weighting,
//! `L = (1/n) Σᵢ ½‖σᵢ sᵢ + εᵢ‖²`, and `∂L/∂sᵢ = σᵢ (σᵢ sᵢ + εᵢ)/n`.
//!
//! The noise levels form a geometric sequence from σ_max down to σ_min.

use crate::math::{check_len, positive};
use crate::{CoreError, Result};

/// Geometric noise schedule `σ_k = σ_max (σ_min/σ_max)^(k/(levels−1))`,
/// k = 0 … levels−1 (NCSN's `exp(linspace(log σ_max, log σ_min, levels))`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SigmaSchedule {
    /// Largest noise level (1.0).
    pub sigma_max: f32,
    /// Smallest noise level (0.01); the default ScoreCL reference level.
    pub sigma_min: f32,
    /// Number of levels (10).
    pub levels: u32,
}

impl Default for SigmaSchedule {
    fn default() -> Self {
        SigmaSchedule {
            sigma_max: 1.0,
            sigma_min: 0.01,
            levels: 10,
        }
    }
}

impl SigmaSchedule {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        positive("sigma_max", self.sigma_max)?;
        positive("sigma_min", self.sigma_min)?;
        if self.sigma_min > self.sigma_max {
            return Err(CoreError::Config {
                field: "sigma_min",
                allowed: "a value <= sigma_max",
            });
        }
        if self.levels == 0 {
            return Err(CoreError::Config {
                field: "levels",
                allowed: "at least 1",
            });
        }
        Ok(())
    }

    /// Noise level k (0 is σ_max, `levels − 1` is σ_min); k is clamped.
    pub fn sigma(&self, k: u32) -> f32 {
        if self.levels <= 1 {
            return self.sigma_max;
        }
        let k = k.min(self.levels - 1);
        let t = k as f64 / (self.levels - 1) as f64;
        let (hi, lo) = (self.sigma_max as f64, self.sigma_min as f64);
        libm::exp(libm::log(hi) + t * (libm::log(lo) - libm::log(hi))) as f32
    }

    /// The level a uniform draw `u ∈ [0, 1)` selects (each equally likely).
    pub fn level_for(&self, u: f32) -> u32 {
        ((u.clamp(0.0, 1.0) * self.levels as f32) as u32).min(self.levels.saturating_sub(1))
    }
}

/// Perturbs `x` in place: `x ← x + σᵢ εᵢ` for each of the n rows.
pub fn perturb(x: &mut [f32], noise: &[f32], sigma: &[f32], dim: usize) -> Result<()> {
    let n = sigma.len();
    check_len("x", x.len(), n * dim)?;
    check_len("noise", noise.len(), n * dim)?;
    for i in 0..n {
        for k in i * dim..(i + 1) * dim {
            x[k] += sigma[i] * noise[k];
        }
    }
    Ok(())
}

/// DSM loss `(1/n) Σᵢ ½‖σᵢ sᵢ + εᵢ‖²` over n rows of `dim` values;
/// `grad` (n × dim, w.r.t. the score) is overwritten when given.
pub fn loss(
    score: &[f32],
    noise: &[f32],
    sigma: &[f32],
    dim: usize,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    let n = sigma.len();
    if n == 0 || dim == 0 {
        return Err(CoreError::Config {
            field: "n",
            allowed: "at least one row of at least one value",
        });
    }
    check_len("score", score.len(), n * dim)?;
    check_len("noise", noise.len(), n * dim)?;
    if sigma.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(CoreError::Config {
            field: "sigma",
            allowed: "finite values > 0",
        });
    }
    let mut total = 0.0f64;
    for i in 0..n {
        let s = sigma[i] as f64;
        for k in i * dim..(i + 1) * dim {
            let r = s * score[k] as f64 + noise[k] as f64;
            total += 0.5 * r * r;
        }
    }
    if let Some(g) = grad {
        check_len("grad", g.len(), n * dim)?;
        for i in 0..n {
            let s = sigma[i] as f64;
            for k in i * dim..(i + 1) * dim {
                g[k] = (s * (s * score[k] as f64 + noise[k] as f64) / n as f64) as f32;
            }
        }
    }
    Ok((total / n as f64) as f32)
}
