//! ScoreCL pair weights on the GPU (`shaders/wgsl/weights.wgsl`). CPU
//! twin: scorecl-core's `weights`; tests: `host/tests/weights.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_core::rng::Philox;
use scorecl_core::weights::{ScoreWeightConfig, WeightMode};
use scorecl_shaders::WEIGHTS;

use crate::error::Result;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    mode: u32,
    _p0: u32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
    _p1: u32,
    key: [u32; 2],
    stream: [u32; 2],
}

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
            gamma: cfg.gamma,
            alpha: cfg.alpha,
            w_max: cfg.w_max,
            key: shuffle.key,
            stream: shuffle.stream,
            ..Zeroable::zeroed()
        }
    }
}

/// Pair weights (n) from the score fields of the two views stacked as
/// `s` = [2n, dim] (rows 0..n the first view). `stats` (2n) receives
/// S(v) = ‖s(v)‖/√dim; `shuffle` is the stream of the shuffled control.
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
    let n = weights.len();
    s.expect_len("score fields [2n, dim]", 2 * n * dim)?;
    stats.expect_len("score statistics", 2 * n)?;
    if cfg.mode != WeightMode::Uniform {
        let p = Params::new(n, dim, cfg, shuffle);
        let gpu = step.gpu();
        let k = gpu.kernel(&WEIGHTS, "score_stat", gpu.subgroup_defines(), &[])?;
        step.dispatch(&k, &p, &[s, stats], grid(2 * n, 1))?;
    }
    weights_from_stats(step, cfg, shuffle, stats, weights)
}

/// Pair weights (n) from per-view statistics already in `stats` (2n: view
/// 1's, then view 2's), e.g. the `augment` mode's hand-crafted strengths:
/// the same transform as [`pair_weights`] (the core's `from_statistics`).
pub fn weights_from_stats(
    step: &mut Step,
    cfg: &ScoreWeightConfig,
    shuffle: &Philox,
    stats: &Tensor,
    weights: &Tensor,
) -> Result<()> {
    cfg.validate()?;
    let n = weights.len();
    stats.expect_len("per-view statistics", 2 * n)?;
    let p = Params::new(n, 1, cfg, shuffle);
    let gpu = step.gpu();
    let k = gpu.kernel(&WEIGHTS, "pair_weights", gpu.subgroup_defines(), &[])?;
    step.dispatch(&k, &p, &[stats, weights], [1, 1, 1])
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
        let (s, stat) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (rows, dim) = (2 * p.n as usize, p.dim as usize);
        need(
            inv,
            &[("s", s.len(), rows * dim), ("stat", stat.len(), rows)],
        )?;
        rows_mut(stat, rows, 1, dim, |r, o| {
            let row = &s[r * dim..(r + 1) * dim];
            o[0] = (sum(dim, |k| row[k] * row[k]) / dim as f32).sqrt();
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
        need(inv, &[("w", w.len(), n)])?;
        let w = &mut w[..n];
        if p.mode == 0 {
            w.fill(1.0);
            return Ok(());
        }
        need(inv, &[("stats", stats.len(), 2 * n)])?;
        let raw = |i: usize| raw_weight(p.gamma, (stats[i] - stats[n + i]).abs());
        let mean = sum(n, raw) / n as f32;
        for (i, wi) in w.iter_mut().enumerate() {
            let mut v = 1.0;
            if mean > 1e-12 {
                v = raw(i) / mean;
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
