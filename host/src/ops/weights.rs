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
