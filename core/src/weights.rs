//! ScoreCL pair weights.
//!
//! From the score fields s1, s2 (n × D) of the two views at the reference
//! noise level: `S(v) = ‖s(v)‖₂/√D`, `rawᵢ = |S(v1ᵢ) − S(v2ᵢ)|^γ`,
//! `wᵢ = rawᵢ / mean(raw)` (all ones when `mean(raw) ≤ 1e-12`),
//! `wᵢ ← (1−α) + α·wᵢ`, `wᵢ ← min(wᵢ, w_max)`.
//! Weights are constants for the encoder's gradient.
//!
//! Modes: `score` (the method), `uniform` (the baseline: all ones),
//! `shuffled` (the score weights randomly permuted across the batch: a
//! control with the same distribution but no pairing information) and
//! `augment` (a hand-crafted control: the same transform applied to a
//! strength read off the augmentation parameters instead of the score,
//! see [`augment_statistic`]).

use crate::augment::AugParams;
use crate::math::{check_len, non_negative, probability};
use crate::rng::Philox;
use crate::{CoreError, Result, Views};

/// Below this mean the raw differences are treated as all equal.
pub const MEAN_FLOOR: f64 = 1e-12;

/// How pair weights are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum WeightMode {
    /// All ones: the unweighted method.
    Uniform,
    /// ScoreCL: from the score difference of the two views.
    #[default]
    Score,
    /// The score weights, randomly permuted (control).
    Shuffled,
    /// The same transform of a hand-crafted strength per view
    /// ([`augment_statistic`]) in place of the score statistic (control).
    Augment,
}

impl WeightMode {
    /// Whether the weights need the score network.
    pub fn needs_score_net(self) -> bool {
        matches!(self, WeightMode::Score | WeightMode::Shuffled)
    }
}

/// Coefficients of the hand-crafted strength [`augment_statistic`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AugStrength {
    /// Weight of the cropped-away fraction `1 − area(crop)/area(image)`.
    pub crop: f32,
    /// Weight of the jitter magnitude
    /// `|b − 1| + |c − 1| + |s − 1| + |hue|` (0 when jitter is off).
    pub jitter: f32,
}

impl Default for AugStrength {
    fn default() -> Self {
        AugStrength {
            crop: 1.0,
            jitter: 1.0,
        }
    }
}

impl AugStrength {
    /// Checks both coefficients (finite, ≥ 0).
    pub fn validate(&self) -> Result<()> {
        non_negative("augment_crop", self.crop)?;
        non_negative("augment_jitter", self.jitter)
    }
}

/// The hand-crafted strength of one view of an `h × w` image:
/// `A(v) = crop·(1 − height·width/(h·w)) + jitter·J(v)`, with
/// `J(v) = |b − 1| + |c − 1| + |s − 1| + |hue|` when the colour jitter is
/// applied and 0 otherwise. Weights of the `augment` mode are
/// [`from_statistics`] of `A(v1)`, `A(v2)`, as the score mode's are of
/// `S(v1)`, `S(v2)`.
pub fn augment_statistic(p: &AugParams, h: u32, w: u32, coef: &AugStrength) -> f32 {
    let area = (h as f64 * w as f64).max(1.0);
    let kept = (p.height as f64 * p.width as f64 / area).min(1.0);
    let jit = if p.jitter {
        libm::fabs(p.brightness as f64 - 1.0)
            + libm::fabs(p.contrast as f64 - 1.0)
            + libm::fabs(p.saturation as f64 - 1.0)
            + libm::fabs(p.hue as f64)
    } else {
        0.0
    };
    (coef.crop as f64 * (1.0 - kept) + coef.jitter as f64 * jit) as f32
}

/// Configuration of the pair weights.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ScoreWeightConfig {
    /// Which weights.
    pub mode: WeightMode,
    /// Exponent γ on the score difference (≥ 0; 1).
    pub gamma: f32,
    /// Mix with uniform, α ∈ [0, 1] (1: pure score weights).
    pub alpha: f32,
    /// Upper clamp (> 0; 5; `inf` disables it).
    pub w_max: f32,
}

impl Default for ScoreWeightConfig {
    fn default() -> Self {
        ScoreWeightConfig {
            mode: WeightMode::Score,
            gamma: 1.0,
            alpha: 1.0,
            w_max: 5.0,
        }
    }
}

impl ScoreWeightConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        non_negative("gamma", self.gamma)?;
        probability("alpha", self.alpha)?;
        if self.w_max.is_nan() || self.w_max <= 0.0 {
            return Err(CoreError::Config {
                field: "w_max",
                allowed: "a value > 0 (inf: no clamp)",
            });
        }
        Ok(())
    }
}

/// The score statistic `S = ‖s‖₂/√D` of one score field.
pub fn statistic(s: &[f32]) -> f32 {
    if s.is_empty() {
        return 0.0;
    }
    let ss: f64 = s.iter().map(|x| *x as f64 * *x as f64).sum();
    libm::sqrt(ss / s.len() as f64) as f32
}

/// Pair weights from the per-view statistics `S(v1ᵢ)`, `S(v2ᵢ)`.
/// `shuffle` is only drawn from in [`WeightMode::Shuffled`] (words 0…n−2).
pub fn from_statistics(
    stat_a: &[f32],
    stat_b: &[f32],
    cfg: &ScoreWeightConfig,
    shuffle: &Philox,
    out: &mut [f32],
) -> Result<()> {
    cfg.validate()?;
    let n = stat_a.len();
    check_len("stat_b", stat_b.len(), n)?;
    check_len("weights", out.len(), n)?;
    if cfg.mode == WeightMode::Uniform {
        out.iter_mut().for_each(|w| *w = 1.0);
        return Ok(());
    }
    let mut sum = 0.0f64;
    for i in 0..n {
        let diff = libm::fabs(stat_a[i] as f64 - stat_b[i] as f64);
        let raw = libm::pow(diff, cfg.gamma as f64);
        out[i] = raw as f32;
        sum += raw;
    }
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    let alpha = cfg.alpha as f64;
    for w in out.iter_mut() {
        let v = if mean > MEAN_FLOOR && mean.is_finite() {
            *w as f64 / mean
        } else {
            1.0
        };
        let v = (1.0 - alpha) + alpha * v;
        *w = (v as f32).min(cfg.w_max);
    }
    if cfg.mode == WeightMode::Shuffled {
        shuffle.shuffle(0, out);
    }
    Ok(())
}

/// Pair weights from the two views' score fields (`s.a`, `s.b`: n × D).
pub fn score_weights(
    s: Views<'_>,
    cfg: &ScoreWeightConfig,
    shuffle: &Philox,
    out: &mut [f32],
    stats: &mut [f32],
) -> Result<()> {
    let n = s.n;
    check_len("stats (2n)", stats.len(), 2 * n)?;
    let (sa, sb) = stats.split_at_mut(n);
    for i in 0..n {
        sa[i] = statistic(s.row(0, i));
        sb[i] = statistic(s.row(1, i));
    }
    from_statistics(sa, sb, cfg, shuffle, out)
}
