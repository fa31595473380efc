//! ScoreCL pair weights.
//!
//! From the score fields s1, s2 (n × D) of the two views at the reference
//! noise level: `S(v) = ‖s(v)‖₂/√D`, `rawᵢ = |S(v1ᵢ) − S(v2ᵢ)|^γ`,
//! `wᵢ = rawᵢ / mean(raw)` (all ones when `mean(raw) ≤ 1e-12`),
//! `wᵢ ← (1−α) + α·wᵢ`, `wᵢ ← min(wᵢ, w_max)`.
//! Weights are constants for the encoder's gradient.
//!
//! That is the default. Every step of it is a choice the paper may have
//! made differently, so each is a key:
//! - the per-view statistic ([`Statistic`]): `‖s‖/√D` (`norm`), `‖σ·s‖/√D`
//!   (`sigma_norm`) or the view's own DSM loss `½‖σ·s(v + σε) + ε‖²/D`
//!   (`dsm`), each averaged over a list of noise levels (the host's
//!   `stat_sigmas`; [σ_ref] by default);
//! - the transform of the values `dᵢ` ([`Transform`]): `power` (`dᵢ/mean`,
//!   the formula above), `rank` (average rank over the batch, mean 1),
//!   `softmax` (`m·softmax(dᵢ/(mean·T))`, mean 1) or `minmax` (a linear map
//!   of [min d, max d] onto [w_min, w_max]);
//! - what a weight multiplies ([`Apply`]): the pair's loss (`pair`:
//!   `dᵢ = |S(v1ᵢ) − S(v2ᵢ)|^γ`, n weights) or each view's own term
//!   (`view`: `d_v = S(v)^γ`, 2n weights, view 1's then view 2's).
//!
//! Values that carry no information (all equal, or any of them NaN or
//! infinite) give all ones before the α-mix, whatever the transform.
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
    /// All ones: the unweighted method (`off`; `uniform` is read too).
    #[cfg_attr(feature = "serde", serde(rename = "off", alias = "uniform"))]
    Uniform,
    /// ScoreCL: from the score difference of the two views (`on`; `score`
    /// is read too).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "on", alias = "score"))]
    Score,
    /// The score weights, randomly permuted (control).
    Shuffled,
    /// The same transform of a hand-crafted strength per view
    /// ([`augment_statistic`]) in place of the score statistic (control).
    Augment,
}

impl WeightMode {
    /// Every mode with its configuration name (`scorecl.mode`).
    pub const NAMES: [(&'static str, WeightMode); 4] = [
        ("off", WeightMode::Uniform),
        ("on", WeightMode::Score),
        ("shuffled", WeightMode::Shuffled),
        ("augment", WeightMode::Augment),
    ];

    /// Whether the weights need the score network.
    pub fn needs_score_net(self) -> bool {
        matches!(self, WeightMode::Score | WeightMode::Shuffled)
    }

    /// Its configuration name: `on`, `off`, `shuffled` or `augment`.
    pub fn name(self) -> &'static str {
        match self {
            WeightMode::Score => "on",
            WeightMode::Uniform => "off",
            WeightMode::Shuffled => "shuffled",
            WeightMode::Augment => "augment",
        }
    }

    /// The mode named `name` (also `uniform` and `score`, the older names).
    pub fn from_name(name: &str) -> Option<WeightMode> {
        match name {
            "uniform" => Some(WeightMode::Uniform),
            "score" => Some(WeightMode::Score),
            _ => Self::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| *m),
        }
    }
}

/// The per-view score statistic, evaluated at each listed noise level σ
/// and averaged over them (see [`view_statistic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Statistic {
    /// `‖s(v, σ)‖₂/√D`.
    #[default]
    Norm,
    /// `‖σ·s(v, σ)‖₂/√D`: each level's field on the scale of its target
    /// `−ε` (the same weights as `norm` at a single level).
    SigmaNorm,
    /// The view's own DSM loss `½‖σ·s(v + σε, σ) + ε‖²/D`.
    Dsm,
}

/// How the per-pair (or per-view) values `dᵢ ≥ 0` become weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Transform {
    /// `dᵢ / mean(d)`: mean 1.
    #[default]
    Power,
    /// `2·rankᵢ/(m + 1)` with `rankᵢ ∈ [1, m]` the average rank of `dᵢ`
    /// (ties share their mean rank): mean 1, independent of γ and of any
    /// monotone change of the statistic.
    Rank,
    /// `m·exp(uᵢ/T)/Σⱼ exp(uⱼ/T)` with `uᵢ = dᵢ/mean(d)`: mean 1; the
    /// temperature T sets how peaked (T → ∞: uniform).
    Softmax,
    /// `w_min + (w_max − w_min)·(dᵢ − min d)/(max d − min d)`: the range
    /// [w_min, w_max] (its mean is not 1).
    #[cfg_attr(feature = "serde", serde(rename = "minmax"))]
    MinMax,
}

/// What each weight multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Apply {
    /// The pair's loss: n weights from `|S(v1ᵢ) − S(v2ᵢ)|^γ`.
    #[default]
    Pair,
    /// Each view's own loss term (its anchor row in NT-Xent, its
    /// predictor term in SimSiam): 2n weights from `S(v)^γ`.
    View,
}

impl Apply {
    /// Weights for `n` pairs: n (`pair`) or 2n (`view`).
    pub fn count(self, n: usize) -> usize {
        match self {
            Apply::Pair => n,
            Apply::View => 2 * n,
        }
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
    /// Upper clamp (> 0; 5; `inf` disables it); the top of the `minmax`
    /// range.
    pub w_max: f32,
    /// The transform of the values (`power`).
    pub transform: Transform,
    /// The `softmax` transform's temperature T (> 0; 1).
    pub temperature: f32,
    /// The bottom of the `minmax` range (≥ 0, ≤ w_max; 0).
    pub w_min: f32,
    /// What a weight multiplies (`pair`).
    pub apply: Apply,
}

impl Default for ScoreWeightConfig {
    fn default() -> Self {
        ScoreWeightConfig {
            mode: WeightMode::Score,
            gamma: 1.0,
            alpha: 1.0,
            w_max: 5.0,
            transform: Transform::Power,
            temperature: 1.0,
            w_min: 0.0,
            apply: Apply::Pair,
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
        crate::math::positive("temperature", self.temperature)?;
        non_negative("w_min", self.w_min)?;
        if self.transform == Transform::MinMax
            && !(self.w_max.is_finite() && self.w_min <= self.w_max)
        {
            return Err(CoreError::Config {
                field: "w_max",
                allowed: "a finite value >= w_min (the top of the minmax range)",
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

/// One view's statistic at one noise level σ from its score field `s`
/// (D values) and, for [`Statistic::Dsm`], the noise `eps` that perturbed
/// the view before the network saw it (`s = s(v + σ·eps, σ)`; ignored
/// otherwise). The statistic over several levels is the mean of these.
pub fn view_statistic(kind: Statistic, s: &[f32], eps: &[f32], sigma: f32) -> Result<f32> {
    if s.is_empty() {
        return Ok(0.0);
    }
    let d = s.len() as f64;
    let sg = sigma as f64;
    Ok(match kind {
        Statistic::Norm => statistic(s),
        Statistic::SigmaNorm => {
            let ss: f64 = s.iter().map(|x| *x as f64 * *x as f64).sum();
            (libm::fabs(sg) * libm::sqrt(ss / d)) as f32
        }
        Statistic::Dsm => {
            check_len("eps", eps.len(), s.len())?;
            let mut total = 0.0f64;
            for (x, e) in s.iter().zip(eps) {
                let r = sg * *x as f64 + *e as f64;
                total += 0.5 * r * r;
            }
            (total / d) as f32
        }
    })
}

/// [`Transform`] of the values `x` (≥ 0) into `out` (same length), before
/// the α-mix and the clamp; all ones when the values carry no information
/// (all equal, mean ≤ [`MEAN_FLOOR`], or any of them non-finite).
pub fn transform(x: &[f32], cfg: &ScoreWeightConfig, out: &mut [f32]) -> Result<()> {
    check_len("weights", out.len(), x.len())?;
    transform_with(|i| x[i] as f64, cfg, out);
    Ok(())
}

/// [`transform`] of the values `value(0..out.len())`, computed in f64.
fn transform_with(value: impl Fn(usize) -> f64, cfg: &ScoreWeightConfig, out: &mut [f32]) {
    let m = out.len();
    if m == 0 {
        return;
    }
    let sum: f64 = (0..m).map(&value).sum();
    let mean = sum / m as f64;
    let constant = match cfg.transform {
        Transform::MinMax | Transform::Rank => {
            let first = value(0);
            (1..m).all(|i| value(i) == first)
        }
        _ => false,
    };
    if !(sum.is_finite() && mean > MEAN_FLOOR) || constant {
        out.iter_mut().for_each(|v| *v = 1.0);
        return;
    }
    match cfg.transform {
        Transform::Power => (0..m).for_each(|i| out[i] = (value(i) / mean) as f32),
        Transform::Rank => {
            // O(m²) comparisons, no allocation; m is a batch.
            for i in 0..m {
                let vi = value(i);
                let (mut less, mut equal) = (0usize, 0usize);
                for j in 0..m {
                    let vj = value(j);
                    if vj < vi {
                        less += 1;
                    } else if vj == vi {
                        equal += 1;
                    }
                }
                let rank = less as f64 + (equal as f64 + 1.0) / 2.0;
                out[i] = (2.0 * rank / (m as f64 + 1.0)) as f32;
            }
        }
        Transform::Softmax => {
            let t = cfg.temperature as f64;
            let u = |i: usize| value(i) / mean / t;
            let top = (0..m).map(u).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = (0..m).map(|i| libm::exp(u(i) - top)).sum();
            (0..m).for_each(|i| out[i] = (m as f64 * libm::exp(u(i) - top) / z) as f32);
        }
        Transform::MinMax => {
            let lo = (0..m).map(&value).fold(f64::INFINITY, f64::min);
            let hi = (0..m).map(&value).fold(f64::NEG_INFINITY, f64::max);
            let (a, b) = (cfg.w_min as f64, cfg.w_max as f64);
            (0..m).for_each(|i| out[i] = (a + (b - a) * (value(i) - lo) / (hi - lo)) as f32);
        }
    }
}

/// Pair weights from the per-view statistics `S(v1ᵢ)`, `S(v2ᵢ)`: n of
/// them (`apply = pair`) or 2n (`apply = view`, view 1's then view 2's).
/// `shuffle` is only drawn from in [`WeightMode::Shuffled`] (words 0…m−2).
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
    check_len("weights", out.len(), cfg.apply.count(n))?;
    if cfg.mode == WeightMode::Uniform {
        out.iter_mut().for_each(|w| *w = 1.0);
        return Ok(());
    }
    // d^γ with d^0 = 1 (also 0^0) and 0^γ = 0 for γ > 0.
    let g = cfg.gamma as f64;
    match cfg.apply {
        Apply::Pair => transform_with(
            |i| libm::pow(libm::fabs(stat_a[i] as f64 - stat_b[i] as f64), g),
            cfg,
            out,
        ),
        Apply::View => transform_with(
            |r| {
                let s = if r < n { stat_a[r] } else { stat_b[r - n] };
                libm::pow(s as f64, g)
            },
            cfg,
            out,
        ),
    }
    let alpha = cfg.alpha as f64;
    for w in out.iter_mut() {
        let v = (1.0 - alpha) + alpha * *w as f64;
        *w = (v as f32).min(cfg.w_max);
    }
    if cfg.mode == WeightMode::Shuffled {
        shuffle.shuffle(0, out);
    }
    Ok(())
}

/// Pair weights from the two views' score fields (`s.a`, `s.b`: n × D) with
/// the `norm` statistic at one level (`out`: `cfg.apply.count(n)`).
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
