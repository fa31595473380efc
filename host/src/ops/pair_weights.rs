//! ScoreCL pair weights on the GPU (`shaders/wgsl/pair_weights.wgsl`):
//! the per-view score statistic and the pair (or view) weights made from
//! it. CPU twin: scorecl-core's `weights`; tests:
//! `host/tests/pair_weights.rs`.

use bytemuck::Zeroable;
use scorecl_core::rng::Philox;
use scorecl_core::weights::{Apply, ScoreWeightConfig, Statistic, Transform, WeightMode};
use scorecl_shaders::PAIR_WEIGHTS;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        n: u32,
        dim: u32,
        mode: u32,
        transform: u32,
        gamma: f32,
        alpha: f32,
        w_max: f32,
        per_view: u32,
        key: [u32; 2],
        stream: [u32; 2],
        temperature: f32,
        w_min: f32,
        sigma: f32,
        scale: f32,
        kind: u32,
        accumulate: u32,
        _p: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

impl Params {
    fn new(n: usize, dim: usize, cfg: &ScoreWeightConfig, shuffle: &Philox) -> Params {
        Params {
            n: n as u32,
            dim: dim as u32,
            mode: match cfg.mode {
                WeightMode::Uniform => 0,
                WeightMode::Score | WeightMode::Augment => 1,
                WeightMode::Shuffled => 2,
            },
            transform: match cfg.transform {
                Transform::Power => 0,
                Transform::Rank => 1,
                Transform::Softmax => 2,
                Transform::MinMax => 3,
            },
            gamma: cfg.gamma,
            alpha: cfg.alpha,
            w_max: cfg.w_max,
            per_view: (cfg.apply == Apply::View) as u32,
            key: shuffle.key,
            stream: shuffle.stream,
            temperature: cfg.temperature,
            w_min: cfg.w_min,
            scale: 1.0,
            ..Zeroable::zeroed()
        }
    }
}

/// Pair weights from the score fields of the two views stacked as
/// `s` = [2n, dim] (rows 0..n the first view), with the `norm` statistic
/// at the level the fields were computed at. `stats` (2n) receives
/// S(v) = ‖s(v)‖/√dim; `shuffle` is the stream of the shuffled control;
/// `weights` holds `cfg.apply.count(n)`.
pub fn pair_weights(
    step: &mut Step,
    s: &Tensor,
    dim: usize,
    cfg: &ScoreWeightConfig,
    shuffle: &Philox,
    stats: &Tensor,
    weights: &Tensor,
) -> Result<()> {
    cfg.validate()?;
    if cfg.mode != WeightMode::Uniform {
        view_statistic(
            step,
            s,
            None,
            dim,
            Statistic::Norm,
            1.0,
            (1.0, false),
            stats,
        )?;
    }
    weights_from_stats(step, cfg, shuffle, stats, weights)
}

/// One noise level's share of the per-view statistic (the core's
/// `view_statistic`): `stats[r] = (accumulate ? stats[r] : 0) +
/// scale·f(s_r)` for the 2n rows of `s` ([2n, dim], the score network's
/// output at level `sigma`); `eps` is the noise that perturbed the views
/// (read by [`Statistic::Dsm`] only, which needs it). Averaging L levels:
/// scale 1/L, accumulate after the first.
#[allow(clippy::too_many_arguments)]
pub fn view_statistic(
    step: &mut Step,
    s: &Tensor,
    eps: Option<&Tensor>,
    dim: usize,
    kind: Statistic,
    sigma: f32,
    (scale, accumulate): (f32, bool),
    stats: &Tensor,
) -> Result<()> {
    let rows = stats.len();
    if rows % 2 != 0 {
        return Err(crate::Error::shape(
            "per-view statistics",
            format!("{rows} values: two views need an even count"),
        ));
    }
    s.expect_len("score fields [2n, dim]", rows * dim)?;
    let eps = match (kind, eps) {
        (Statistic::Dsm, Some(e)) => {
            e.expect_len("DSM statistic noise [2n, dim]", rows * dim)?;
            e
        }
        (Statistic::Dsm, None) => {
            return Err(crate::Error::shape(
                "DSM statistic noise",
                "the dsm statistic needs the noise that perturbed the views".to_string(),
            ))
        }
        _ => s,
    };
    let p = Params {
        n: (rows / 2) as u32,
        dim: dim as u32,
        sigma,
        scale,
        kind: match kind {
            Statistic::Norm => 0,
            Statistic::SigmaNorm => 1,
            Statistic::Dsm => 2,
        },
        accumulate: accumulate as u32,
        ..Zeroable::zeroed()
    };
    let gpu = step.gpu();
    let k = gpu.kernel(&PAIR_WEIGHTS, "score_stat", gpu.subgroup_defines(), &[])?;
    step.dispatch(&k, &p, crate::bind![s, stat = stats, eps], grid(rows, 1))
}

/// Pair weights (`cfg.apply.count(n)`) from per-view statistics already in
/// `stats` (2n: view 1's, then view 2's), e.g. the `augment` mode's
/// hand-crafted strengths: the core's `from_statistics`.
pub fn weights_from_stats(
    step: &mut Step,
    cfg: &ScoreWeightConfig,
    shuffle: &Philox,
    stats: &Tensor,
    weights: &Tensor,
) -> Result<()> {
    cfg.validate()?;
    let n = stats.len() / 2;
    stats.expect_len("per-view statistics", 2 * n)?;
    weights.expect_len("weights", cfg.apply.count(n))?;
    let p = Params::new(n, 1, cfg, shuffle);
    let gpu = step.gpu();
    let k = gpu.kernel(&PAIR_WEIGHTS, "pair_weights", gpu.subgroup_defines(), &[])?;
    step.dispatch(&k, &p, crate::bind![stats, w = weights], [1, 1, 1])
}

/// Native CPU twins of `score_stat` and `pair_weights`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn};
    use scorecl_core::rng::Philox;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "score_stat" => score_stat,
            "pair_weights" => pair_weights,
            _ => return None,
        })
    }

    fn score_stat(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (s, stat, eps) = (inv.f32(0)?, inv.f32_mut(1)?, inv.f32(2)?);
        let (rows, dim) = (2 * p.n as usize, p.dim as usize);
        need(
            inv,
            &[
                ("s", s.len(), rows * dim),
                ("stat", stat.len(), rows),
                ("eps", eps.len(), rows * dim),
            ],
        )?;
        rows_mut(stat, rows, 1, dim, |r, o| {
            let row = &s[r * dim..(r + 1) * dim];
            let v = if p.kind == 2 {
                let e = &eps[r * dim..(r + 1) * dim];
                sum(dim, |k| {
                    let v = p.sigma * row[k] + e[k];
                    0.5 * v * v
                }) / dim as f32
            } else {
                let ms = sum(dim, |k| row[k] * row[k]) / dim as f32;
                match p.kind {
                    0 => ms.sqrt(),
                    _ => p.sigma.abs() * ms.sqrt(),
                }
            };
            let prev = if p.accumulate != 0 { o[0] } else { 0.0 };
            o[0] = prev + p.scale * v;
        });
        Ok(())
    }

    /// |d|^γ with the core's conventions: d^0 = 1 (also 0^0), 0^γ = 0.
    fn raw_weight(gamma: f32, d: f32) -> f32 {
        if gamma == 0.0 {
            1.0
        } else if d == 0.0 {
            0.0
        } else {
            d.powf(gamma)
        }
    }

    fn pair_weights(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (stats, w) = (inv.f32(0)?, inv.f32_mut(1)?);
        let n = p.n as usize;
        let m = if p.per_view != 0 { 2 * n } else { n };
        need(inv, &[("w", w.len(), m)])?;
        let w = &mut w[..m];
        if p.mode == 0 {
            w.fill(1.0);
            return Ok(());
        }
        need(inv, &[("stats", stats.len(), 2 * n)])?;
        let value = |i: usize| {
            let d = if p.per_view != 0 {
                stats[i]
            } else {
                (stats[i] - stats[n + i]).abs()
            };
            raw_weight(p.gamma, d)
        };
        let total = sum(m, value);
        let mean = total / m as f32;
        let top = (0..m).map(value).fold(f32::MIN, f32::max);
        let bottom = (0..m).map(value).fold(f32::MAX, f32::min);
        let mut informative = total.is_finite() && mean > 1e-12;
        if matches!(p.transform, 1 | 3) && top <= bottom {
            informative = false;
        }
        let u = |i: usize| value(i) / mean / p.temperature;
        let umax = top / mean / p.temperature;
        let z = if p.transform == 2 && informative {
            sum(m, |i| (u(i) - umax).exp())
        } else {
            1.0
        };
        for (i, wi) in w.iter_mut().enumerate() {
            let mut v = 1.0;
            if informative {
                let d = value(i);
                v = match p.transform {
                    0 => d / mean,
                    1 => {
                        let (mut less, mut equal) = (0u32, 0u32);
                        for j in 0..m {
                            let dj = value(j);
                            if dj < d {
                                less += 1;
                            } else if dj == d {
                                equal += 1;
                            }
                        }
                        let rank = less as f32 + (equal as f32 + 1.0) * 0.5;
                        2.0 * rank / (m as f32 + 1.0)
                    }
                    2 => m as f32 * (u(i) - umax).exp() / z,
                    _ => p.w_min + (p.w_max - p.w_min) * (d - bottom) / (top - bottom),
                };
            }
            v = (1.0 - p.alpha) + p.alpha * v;
            *wi = v.min(p.w_max);
        }
        if p.mode == 2 {
            Philox {
                key: p.key,
                stream: p.stream,
            }
            .shuffle(0, w);
        }
        Ok(())
    }
}
