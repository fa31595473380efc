//! Denoising score matching on the GPU (`shaders/wgsl/dsm.wgsl`). CPU twin:
//! scorecl-core's `dsm` and `rng`; tests: `host/tests/dsm.rs`.

use bytemuck::Zeroable;
use scorecl_core::dsm::SigmaSchedule;
use scorecl_core::rng::Philox;
use scorecl_shaders::DSM;

use crate::error::Result;
use crate::kernel_params;
use crate::ops::reduce::sum_all;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        noise_key: [u32; 2],
        noise_stream: [u32; 2],
        sigma_key: [u32; 2],
        sigma_stream: [u32; 2],
        n: u32,
        dim: u32,
        levels: u32,
        first: u32,
        half: u32,
        global: u32,
        _p0: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// The schedule's levels, as the table `dsm_perturb` reads (computed by the
/// core, so the GPU uses exactly the same σ values).
pub fn sigma_table(schedule: &SigmaSchedule) -> Vec<f32> {
    (0..schedule.levels).map(|k| schedule.sigma(k)).collect()
}

/// Noises the n × `dim` images `x`: per sample a level drawn from the
/// `sigmas` stream (uniform word i, [`SigmaSchedule::level_for`]), per
/// element a normal from the `noise` stream (number i·dim + k).
/// Writes `x_noisy`, the noise `eps` and the per-sample `sigma`.
#[allow(clippy::too_many_arguments)]
pub fn perturb(
    step: &mut Step,
    x: &Tensor,
    dim: usize,
    table: &Tensor,
    noise: &Philox,
    sigmas: &Philox,
    x_noisy: &Tensor,
    eps: &Tensor,
    sigma: &Tensor,
) -> Result<()> {
    perturb_shard(
        step, x, dim, table, noise, sigmas, x_noisy, eps, sigma, None,
    )
}

/// [`perturb`] of one rank's samples of a data-parallel run: local sample
/// i (of the view-stacked layout) draws as the global sample
/// `shard.global_index(i)` would, so the ranks together draw what one
/// device draws for the whole batch. `None`: the samples are the batch.
#[allow(clippy::too_many_arguments)]
pub fn perturb_shard(
    step: &mut Step,
    x: &Tensor,
    dim: usize,
    table: &Tensor,
    noise: &Philox,
    sigmas: &Philox,
    x_noisy: &Tensor,
    eps: &Tensor,
    sigma: &Tensor,
    shard: Option<crate::dist::Shard>,
) -> Result<()> {
    let n = sigma.len();
    x.expect_len("dsm x", n * dim)?;
    x_noisy.expect_len("dsm x_noisy", n * dim)?;
    eps.expect_len("dsm eps", n * dim)?;
    let p = Params {
        noise_key: noise.key,
        noise_stream: noise.stream,
        sigma_key: sigmas.key,
        sigma_stream: sigmas.stream,
        n: n as u32,
        dim: dim as u32,
        levels: table.len() as u32,
        first: shard.map_or(0, |s| s.first() as u32),
        half: shard.map_or(0, |s| s.local as u32),
        global: shard.map_or(0, |s| s.global() as u32),
        _p0: [0; 2],
    };
    let k = step
        .gpu()
        .kernel(&DSM, "dsm_perturb", step.gpu().subgroup_defines(), &[])?;
    step.dispatch(
        &k,
        &p,
        crate::bind![x, sigma_table = table, x_noisy, eps, sigma],
        grid(n * dim, 256),
    )
}

/// DSM loss `(1/n) Σ ½‖σᵢsᵢ + εᵢ‖²` into the one-element `loss`, and its
/// gradient with respect to the score into `grad`; `terms` (n) is scratch.
#[allow(clippy::too_many_arguments)]
pub fn loss(
    step: &mut Step,
    score: &Tensor,
    eps: &Tensor,
    sigma: &Tensor,
    dim: usize,
    terms: &Tensor,
    grad: &Tensor,
    loss: &Tensor,
) -> Result<()> {
    let n = sigma.len();
    score.expect_len("dsm score", n * dim)?;
    eps.expect_len("dsm eps", n * dim)?;
    grad.expect_len("dsm grad", n * dim)?;
    terms.expect_len("dsm terms", n)?;
    loss.expect_len("dsm loss", 1)?;
    let p = Params {
        n: n as u32,
        dim: dim as u32,
        ..Zeroable::zeroed()
    };
    let k = step
        .gpu()
        .kernel(&DSM, "dsm_loss", step.gpu().subgroup_defines(), &[])?;
    step.dispatch(
        &k,
        &p,
        crate::bind![score, noise = eps, sig = sigma, terms, grad],
        grid(n, 1),
    )?;
    sum_all(step, terms, 1.0, loss)
}

/// Native CPU twins of `dsm_perturb` and `dsm_loss`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn, SharedMut};
    use scorecl_core::rng::{unit_f32, Philox};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "dsm_perturb" => perturb,
            "dsm_loss" => loss,
            _ => return None,
        })
    }

    fn perturb(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, table) = (inv.f32(0)?, inv.f32(1)?);
        let (x_noisy, eps, sigma) = (inv.f32_mut(2)?, inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (n, dim, levels) = (p.n as usize, p.dim as usize, p.levels as usize);
        let nd = n * dim;
        need(
            inv,
            &[
                ("x", x.len(), nd),
                ("sigma_table", table.len(), levels.max(1)),
                ("x_noisy", x_noisy.len(), nd),
                ("eps", eps.len(), nd),
                ("sigma", sigma.len(), n),
            ],
        )?;
        let noise = Philox {
            key: p.noise_key,
            stream: p.noise_stream,
        };
        let sigmas = Philox {
            key: p.sigma_key,
            stream: p.sigma_stream,
        };
        let (eps, sigma) = (SharedMut::new(eps), SharedMut::new(sigma));
        let (first, half, global) = (p.first as usize, p.half as usize, p.global as usize);
        rows_mut(x_noisy, n, dim, dim * 8, |i, xr| {
            // The global sample (a data-parallel run's rank), as the kernel.
            let g = match half {
                0 => i,
                _ => (i / half) * global + first + i % half,
            };
            // SigmaSchedule::level_for on uniform word g.
            let u = unit_f32(sigmas.u32_at(g as u32 as u64));
            let level =
                ((u.clamp(0.0, 1.0) * levels as f32) as usize).min(levels.saturating_sub(1));
            let s = table[level];
            // SAFETY (slice): row i of eps belongs to this task.
            let er = eps.slice(i * dim, dim);
            // The kernel's index is a 32-bit word count: the row at once
            // (each Philox block once) where it does not wrap.
            if ((g + 1) * dim) as u64 <= 1 << 32 {
                noise.fill_normal((g * dim) as u64, er);
            } else {
                for (k, e) in er.iter_mut().enumerate() {
                    *e = noise.normal_at((g * dim + k) as u32 as u64);
                }
            }
            for ((o, &xv), &e) in xr.iter_mut().zip(&x[i * dim..(i + 1) * dim]).zip(&*er) {
                *o = xv + s * e;
            }
            sigma.set(i, s);
        });
        Ok(())
    }

    fn loss(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (score, noise, sig) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let (terms, grad) = (inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (n, dim) = (p.n as usize, p.dim as usize);
        let nd = n * dim;
        need(
            inv,
            &[
                ("score", score.len(), nd),
                ("noise", noise.len(), nd),
                ("sigma", sig.len(), n),
                ("terms", terms.len(), n),
                ("grad", grad.len(), nd),
            ],
        )?;
        let inv_n = 1.0 / n as f32;
        let terms = SharedMut::new(terms);
        rows_mut(grad, n, dim, dim, |i, gr| {
            let s = sig[i];
            let base = i * dim;
            for (k, g) in gr.iter_mut().enumerate() {
                let r = s * score[base + k] + noise[base + k];
                *g = s * r * inv_n;
            }
            let total = sum(dim, |k| {
                let r = s * score[base + k] + noise[base + k];
                0.5 * r * r
            });
            terms.set(i, total * inv_n);
        });
        Ok(())
    }
}
