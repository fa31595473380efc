//! Optimizer updates on the GPU (`shaders/wgsl/optim.wgsl`). CPU twin:
//! scorecl-core's `optim` rules; tests: `host/tests/optim.rs`.
//!
//! LARS needs the norms of the whole tensor: one kernel (`lars_norms`)
//! records both sums of squares into the tensor's slot of a scratch tensor
//! before the update, so nothing is read back; with a slot per tensor the
//! updates of different tensors share no buffer that would order them.

use bytemuck::{Pod, Zeroable};
use scorecl_core::optim::{AdamConfig, AdamStep, LarsConfig, SgdConfig};
use scorecl_shaders::OPTIM;

use crate::error::Result;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: u32,
    first: u32,
    eta: f32,
    eps: f32,
    clip: u32,
    adapt: u32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decoupled: u32,
    slot: u32,
    _p: [u32; 3],
}

fn sgd_params(n: usize, lr: f32, c: &SgdConfig, first: bool) -> Params {
    Params {
        n: n as u32,
        lr,
        momentum: c.momentum,
        dampening: c.dampening,
        weight_decay: c.weight_decay,
        nesterov: c.nesterov as u32,
        first: first as u32,
        ..Default::default()
    }
}

/// One SGD step on `p` with gradient `g` and momentum buffer `buf`.
pub fn sgd(
    step: &mut Step,
    p: &Tensor,
    g: &Tensor,
    buf: &Tensor,
    lr: f32,
    cfg: &SgdConfig,
    first: bool,
) -> Result<()> {
    cfg.validate()?;
    g.expect_len("sgd grad", p.len())?;
    buf.expect_len("sgd momentum", p.len())?;
    let k = step.gpu().kernel(&OPTIM, "sgd", &[], &[])?;
    step.dispatch(
        &k,
        &sgd_params(p.len(), lr, cfg, first),
        &[p, g, buf],
        grid(p.len(), 256),
    )
}

/// One LARS step (solo-learn); `is_1d` marks a bias or norm parameter.
/// `norms` is scratch of at least 2·(`slot` + 1) elements; the tensor's
/// squared norms go to `norms[2·slot..2·slot + 2]` (give each tensor of a
/// model its own slot).
#[allow(clippy::too_many_arguments)]
pub fn lars(
    step: &mut Step,
    p: &Tensor,
    g: &Tensor,
    buf: &Tensor,
    norms: &Tensor,
    slot: usize,
    lr: f32,
    cfg: &LarsConfig,
    is_1d: bool,
    first: bool,
) -> Result<()> {
    cfg.validate()?;
    g.expect_len("lars grad", p.len())?;
    buf.expect_len("lars momentum", p.len())?;
    norms.expect_len_at_least("lars norms", 2 * (slot + 1))?;
    let n = p.len();
    let sgd = cfg.sgd();
    let params = Params {
        eta: cfg.eta,
        eps: cfg.eps,
        clip: cfg.clip_lr as u32,
        adapt: !(is_1d && cfg.exclude_bias_n_norm) as u32,
        slot: slot as u32,
        ..sgd_params(n, lr, &sgd, first)
    };
    // [‖p‖², ‖g‖²], recorded before the update that reads them.
    let k = step.gpu().kernel(&OPTIM, "lars_norms", &[], &[])?;
    step.dispatch(&k, &params, &[p, g, norms], [1, 1, 1])?;
    let k = step.gpu().kernel(&OPTIM, "lars", &[], &[])?;
    step.dispatch(&k, &params, &[p, g, buf, norms], grid(n, 256))
}

/// One Adam/AdamW step at 1-based `t`; `m`, `v` are the moments.
#[allow(clippy::too_many_arguments)]
pub fn adam(
    step: &mut Step,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f32,
    t: u32,
    cfg: &AdamConfig,
) -> Result<()> {
    cfg.validate()?;
    for (what, x) in [("adam grad", g), ("adam m", m), ("adam v", v)] {
        x.expect_len(what, p.len())?;
    }
    let s = AdamStep::new(lr, t, cfg);
    let params = Params {
        n: p.len() as u32,
        lr,
        weight_decay: cfg.weight_decay,
        eps: cfg.eps,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        step_size: s.step_size,
        bc2_sqrt: s.bc2_sqrt,
        decoupled: cfg.decoupled as u32,
        ..Default::default()
    };
    let k = step.gpu().kernel(&OPTIM, "adam", &[], &[])?;
    step.dispatch(&k, &params, &[p, g, m, v], grid(p.len(), 256))
}
