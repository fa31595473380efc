//! Optimizer updates on the GPU (`shaders/wgsl/optim.wgsl`). CPU twin:
//! scorecl-core's `optim` rules; tests: `host/tests/optim.rs`.
//!
//! LARS needs the norms of the whole tensor: one kernel (`lars_norms`)
//! records both sums of squares into the tensor's slot of a scratch tensor
//! before the update, so nothing is read back; with a slot per tensor the
//! updates of different tensors share no buffer that would order them.
//!
//! Every update also guards its tensor: an element whose gradient, updated
//! value or moments are NaN or ±inf ORs [`GUARD_GRAD`], [`GUARD_PARAM`],
//! [`GUARD_M1`] or [`GUARD_M2`] into its [`Guard`] slot, fused into the
//! pass that reads and writes them anyway; the caller reads the flags back
//! with the loss.

use scorecl_core::optim::{AdamConfig, AdamStep, LarsConfig, SgdConfig};
use scorecl_shaders::OPTIM;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

/// Guard bit: the gradient held a NaN or ±inf.
pub const GUARD_GRAD: u32 = 1;
/// Guard bit: the updated parameter did.
pub const GUARD_PARAM: u32 = 2;
/// Guard bit: the momentum buffer or Adam's first moment did.
pub const GUARD_M1: u32 = 4;
/// Guard bit: Adam's second moment did.
pub const GUARD_M2: u32 = 8;

/// Where an update reports non-finite values: its bits are OR-ed into
/// `flags[slot]` (a u32 tensor, cleared by the caller before the step).
#[derive(Clone, Copy)]
pub struct Guard<'a> {
    /// The flags, one u32 per guarded tensor.
    pub flags: &'a Tensor,
    /// This tensor's slot.
    pub slot: usize,
}

impl Guard<'_> {
    fn check(&self) -> Result<()> {
        self.flags
            .expect_len_at_least("optimizer guard flags", self.slot + 1)?;
        if self.flags.dtype() != DType::U32 {
            return Err(crate::Error::shape(
                "optimizer guard flags",
                "must be a u32 tensor",
            ));
        }
        Ok(())
    }
}

/// What guard bits `bits` say, e.g. `gradient, first moment`.
pub fn describe_guard(bits: u32) -> String {
    let names = [
        (GUARD_GRAD, "gradient"),
        (GUARD_PARAM, "updated value"),
        (GUARD_M1, "first moment"),
        (GUARD_M2, "second moment"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join(", ")
}

kernel_params! {
    #[derive(Default)]
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
        guard: u32,
        _p: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

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
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    step: &mut Step,
    p: &Tensor,
    g: &Tensor,
    buf: &Tensor,
    lr: f32,
    cfg: &SgdConfig,
    first: bool,
    guard: Guard,
) -> Result<()> {
    cfg.validate()?;
    guard.check()?;
    g.expect_len("sgd grad", p.len())?;
    buf.expect_len("sgd momentum", p.len())?;
    let k = step.gpu().kernel(&OPTIM, "sgd", &[], &[])?;
    let params = Params {
        guard: guard.slot as u32,
        ..sgd_params(p.len(), lr, cfg, first)
    };
    step.dispatch(
        &k,
        &params,
        crate::bind![p, g, buf, flags = guard.flags],
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
    guard: Guard,
) -> Result<()> {
    cfg.validate()?;
    guard.check()?;
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
        guard: guard.slot as u32,
        ..sgd_params(n, lr, &sgd, first)
    };
    // [‖p‖², ‖g‖²], recorded before the update that reads them.
    let k = step.gpu().kernel(&OPTIM, "lars_norms", &[], &[])?;
    step.dispatch(&k, &params, crate::bind![p, g, sqw = norms], [1, 1, 1])?;
    let k = step.gpu().kernel(&OPTIM, "lars", &[], &[])?;
    step.dispatch(
        &k,
        &params,
        crate::bind![p, g, buf, sq = norms, flags = guard.flags],
        grid(n, 256),
    )
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
    guard: Guard,
) -> Result<()> {
    cfg.validate()?;
    guard.check()?;
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
        guard: guard.slot as u32,
        ..Default::default()
    };
    let k = step.gpu().kernel(&OPTIM, "adam", &[], &[])?;
    step.dispatch(
        &k,
        &params,
        crate::bind![p, g, buf = m, m2 = v, flags = guard.flags],
        grid(p.len(), 256),
    )
}

/// Native CPU twins of `sgd`, `lars_norms`, `lars` and `adam`: the
/// kernels' f32 operations in their order (scorecl-core's rules).
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum_slice, Invocation, KernelFn, CHUNK};
    use rayon::prelude::*;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "sgd" => sgd,
            "lars" => lars,
            "lars_norms" => lars_norms,
            "adam" => adam,
            _ => return None,
        })
    }

    /// The kernel's `guard`: bit 0 gradient, 1 parameter, 2 and 3 moments.
    #[inline]
    fn bits(g: f32, p: f32, m: f32, v: f32) -> u32 {
        (!g.is_finite()) as u32
            | ((!p.is_finite()) as u32) << 1
            | ((!m.is_finite()) as u32) << 2
            | ((!v.is_finite()) as u32) << 3
    }

    /// ORs `bits` into the flags binding at the tensor's slot.
    fn flag(inv: &Invocation, at: usize, pr: &Params, bits: u32) -> Result<()> {
        let flags = inv.u32_mut(at)?;
        need(inv, &[("flags", flags.len(), pr.guard as usize + 1)])?;
        flags[pr.guard as usize] |= bits;
        Ok(())
    }

    /// The update's direction d_p from the gradient g and the parameter p:
    /// g (LARS without adaptation) …
    const DP_GRAD: u8 = 0;
    /// … g + wd·p (SGD) …
    const DP_DECAY: u8 = 1;
    /// … or (g + wd·p)·f (LARS, f its trust ratio times η).
    const DP_ADAPTED: u8 = 2;
    /// No momentum; the buffer's first step (it takes d_p); later steps.
    const MOM_NONE: u8 = 0;
    const MOM_FIRST: u8 = 1;
    const MOM_LATER: u8 = 2;

    /// SGD's and LARS's step with momentum (core: momentum_apply) over the
    /// parameter `p`, its gradient `g` and momentum buffer `buf`, in chunks
    /// in parallel; returns the OR of the guard bits. One loop per
    /// combination of the direction (`dp`, a `DP_*`), the momentum's state
    /// and Nesterov, on slices, so that each vectorises (the same
    /// operations in the same order per element as one general loop).
    fn momentum_update(
        pr: &Params,
        p: &mut [f32],
        buf: &mut [f32],
        g: &[f32],
        n: usize,
        dp: u8,
        f: f32,
    ) -> u32 {
        let mom = if pr.momentum == 0.0 {
            MOM_NONE
        } else if pr.first != 0 {
            MOM_FIRST
        } else {
            MOM_LATER
        };
        macro_rules! pick {
            ($($dp:ident, $mom:ident, $nest:literal);* $(;)?) => {
                match (dp, mom, pr.nesterov != 0) {
                    $(($dp, $mom, $nest) => momentum_chunk::<$dp, $mom, $nest>,)*
                    _ => unreachable!("direction {dp}, momentum {mom}"),
                }
            };
        }
        let run: ChunkFn = pick!(
            DP_GRAD, MOM_NONE, false; DP_GRAD, MOM_NONE, true;
            DP_GRAD, MOM_FIRST, false; DP_GRAD, MOM_FIRST, true;
            DP_GRAD, MOM_LATER, false; DP_GRAD, MOM_LATER, true;
            DP_DECAY, MOM_NONE, false; DP_DECAY, MOM_NONE, true;
            DP_DECAY, MOM_FIRST, false; DP_DECAY, MOM_FIRST, true;
            DP_DECAY, MOM_LATER, false; DP_DECAY, MOM_LATER, true;
            DP_ADAPTED, MOM_NONE, false; DP_ADAPTED, MOM_NONE, true;
            DP_ADAPTED, MOM_FIRST, false; DP_ADAPTED, MOM_FIRST, true;
            DP_ADAPTED, MOM_LATER, false; DP_ADAPTED, MOM_LATER, true;
        );
        let (p, buf, g) = (&mut p[..n], &mut buf[..n], &g[..n]);
        if n <= CHUNK {
            run(pr, f, p, buf, g)
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(buf.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .map(|((pc, bc), gc)| run(pr, f, pc, bc, gc))
                .reduce(|| 0, |a, b| a | b)
        }
    }

    /// One chunk of [`momentum_update`]: parameters, f, p, buf, g → guard bits.
    type ChunkFn = fn(&Params, f32, &mut [f32], &mut [f32], &[f32]) -> u32;

    /// One chunk of [`momentum_update`] for direction DP, momentum state MOM
    /// and NESTEROV.
    fn momentum_chunk<const DP: u8, const MOM: u8, const NESTEROV: bool>(
        pr: &Params,
        f: f32,
        p: &mut [f32],
        buf: &mut [f32],
        g: &[f32],
    ) -> u32 {
        let n = p.len();
        let (buf, g) = (&mut buf[..n], &g[..n]);
        let mut flags = 0;
        for ((pv, bv), &gv) in p.iter_mut().zip(buf.iter_mut()).zip(g) {
            let d_p = match DP {
                DP_GRAD => gv,
                DP_DECAY => gv + pr.weight_decay * *pv,
                _ => (gv + pr.weight_decay * *pv) * f,
            };
            let m = if MOM == MOM_NONE {
                *pv -= pr.lr * d_p;
                0.0
            } else {
                let b = if MOM == MOM_FIRST {
                    d_p
                } else {
                    *bv * pr.momentum + (1.0 - pr.dampening) * d_p
                };
                *bv = b;
                let step = if NESTEROV { d_p + pr.momentum * b } else { b };
                *pv -= pr.lr * step;
                b
            };
            flags |= bits(gv, *pv, m, 0.0);
        }
        flags
    }

    fn sgd(inv: &Invocation) -> Result<()> {
        let pr: Params = inv.params()?;
        let (p, g, buf) = (inv.f32_mut(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let n = pr.n as usize;
        need(
            inv,
            &[("p", p.len(), n), ("g", g.len(), n), ("buf", buf.len(), n)],
        )?;
        let b = momentum_update(&pr, p, buf, g, n, DP_DECAY, 1.0);
        flag(inv, 3, &pr, b)
    }

    fn lars(inv: &Invocation) -> Result<()> {
        let pr: Params = inv.params()?;
        let (p, g, buf, sq) = (inv.f32_mut(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32(3)?);
        let n = pr.n as usize;
        let slot = pr.slot as usize;
        need(
            inv,
            &[
                ("p", p.len(), n),
                ("g", g.len(), n),
                ("buf", buf.len(), n),
                ("norms", sq.len(), 2 * slot + 2),
            ],
        )?;
        let p_norm = sq[2 * slot].sqrt();
        let g_norm = sq[2 * slot + 1].sqrt();
        let adapt = pr.adapt != 0 && p_norm != 0.0 && g_norm != 0.0;
        let mut f = p_norm / (g_norm + p_norm * pr.weight_decay + pr.eps);
        f *= pr.eta;
        if pr.clip != 0 {
            f = (f / pr.lr).min(1.0);
        }
        let dp = if adapt { DP_ADAPTED } else { DP_GRAD };
        let b = momentum_update(&pr, p, buf, g, n, dp, f);
        flag(inv, 4, &pr, b)
    }

    fn lars_norms(inv: &Invocation) -> Result<()> {
        let pr: Params = inv.params()?;
        let (p, g, sqw) = (inv.f32_mut(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let n = pr.n as usize;
        let slot = pr.slot as usize;
        need(
            inv,
            &[
                ("p", p.len(), n),
                ("g", g.len(), n),
                ("norms", sqw.len(), 2 * slot + 2),
            ],
        )?;
        let p = &*p;
        let mut both = [0.0f32; 2];
        rows_mut(&mut both, 2, 1, n, |k, o| {
            let x = if k == 0 { p } else { g };
            o[0] = sum_slice(&x[..n], |v| v * v);
        });
        sqw[2 * slot] = both[0];
        sqw[2 * slot + 1] = both[1];
        Ok(())
    }

    /// One chunk of Adam's step (AdamW's decay when DECOUPLED) over slices
    /// of the parameter, gradient and both moments, so that it vectorises;
    /// returns the OR of the guard bits.
    fn adam_chunk<const DECOUPLED: bool>(
        pr: &Params,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> u32 {
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let mut flags = 0;
        for ((pv, &g0), (mv, vv)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
            let mut pp = *pv;
            let mut gv = g0;
            if DECOUPLED {
                pp *= 1.0 - pr.lr * pr.weight_decay;
            } else {
                gv += pr.weight_decay * pp;
            }
            let mm = *mv + (1.0 - pr.beta1) * (gv - *mv);
            let v2 = *vv * pr.beta2 + (1.0 - pr.beta2) * gv * gv;
            *mv = mm;
            *vv = v2;
            let denom = v2.sqrt() / pr.bc2_sqrt + pr.eps;
            *pv = pp - pr.step_size * (mm / denom);
            flags |= bits(g0, *pv, mm, v2);
        }
        flags
    }

    fn adam(inv: &Invocation) -> Result<()> {
        let pr: Params = inv.params()?;
        let (p, g, m, v) = (
            inv.f32_mut(0)?,
            inv.f32(1)?,
            inv.f32_mut(2)?,
            inv.f32_mut(3)?,
        );
        let n = pr.n as usize;
        need(
            inv,
            &[
                ("p", p.len(), n),
                ("g", g.len(), n),
                ("m", m.len(), n),
                ("v", v.len(), n),
            ],
        )?;
        let run = if pr.decoupled != 0 {
            adam_chunk::<true>
        } else {
            adam_chunk::<false>
        };
        let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
        let b = if n <= CHUNK {
            run(&pr, p, g, m, v)
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .map(|((pc, gc), (mc, vc))| run(&pr, pc, gc, mc, vc))
                .reduce(|| 0, |a, b| a | b)
        };
        flag(inv, 4, &pr, b)
    }
}
