//! Weighted SimSiam on the GPU (`shaders/wgsl/simsiam.wgsl`). CPU twin:
//! scorecl-core's `simsiam`; tests: `host/tests/simsiam.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::SIMSIAM;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::reduce::sum_all;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        n: u32,
        d: u32,
        /// Weights bound: n (per pair) or 2n (per view); view row r reads
        /// w[r % wn].
        wn: u32,
        _p: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Scratch of the loss for n pairs.
pub struct SimSiam {
    n: usize,
    d: usize,
    terms: Tensor,
}

impl SimSiam {
    /// Buffers for n pairs of d features.
    pub fn new(gpu: &Gpu, n: usize, d: usize) -> Result<Self> {
        Ok(SimSiam {
            n,
            d,
            terms: gpu.tensor(&[n], DType::F32)?,
        })
    }

    /// Loss of predictions `p` = [p1; p2] against targets `z` = [z1; z2]
    /// (both 2n × d) with weights `w`; ∂L/∂p into `grad` (z gets none).
    pub fn forward_backward(
        &self,
        step: &mut Step,
        p: &Tensor,
        z: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        let (n, d) = (self.n, self.d);
        p.expect_len("simsiam p [2n, d]", 2 * n * d)?;
        z.expect_len("simsiam z [2n, d]", 2 * n * d)?;
        let wn = super::view_weights_len("simsiam weights", w, n)?;
        grad.expect_len("simsiam grad", 2 * n * d)?;
        let gpu = step.gpu();
        let defines = gpu.subgroup_defines();
        let k = gpu.kernel(&SIMSIAM, "simsiam_pairs", defines, &[])?;
        let params = Params {
            n: n as u32,
            d: d as u32,
            wn: wn as u32,
            ..Zeroable::zeroed()
        };
        step.dispatch(
            &k,
            &params,
            crate::bind![p, z, w, grad, terms = &self.terms],
            grid(n, 1),
        )?;
        sum_all(step, &self.terms, 1.0, loss)
    }
}

/// Native CPU twin of `simsiam_pairs`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn, SharedMut};
    use scorecl_core::NORM_EPS;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        match entry {
            "simsiam_pairs" => Some(pairs),
            _ => None,
        }
    }

    /// cos(p_row, z_row), and ∂/∂p of coef·cos written into `g`.
    fn pair(pr: &[f32], zr: &[f32], coef: f32, g: &mut [f32]) -> f32 {
        let d = pr.len();
        let np_raw = sum(d, |j| pr[j] * pr[j]).sqrt();
        let nz = sum(d, |j| zr[j] * zr[j]).sqrt().max(NORM_EPS);
        let np = np_raw.max(NORM_EPS);
        let c = sum(d, |j| pr[j] * zr[j]) / (np * nz);
        let clamped = np_raw <= NORM_EPS;
        for j in 0..d {
            let bh = zr[j] / nz;
            let v = if clamped {
                bh / np
            } else {
                (bh - c * pr[j] / np) / np
            };
            g[j] = coef * v;
        }
        c
    }

    fn pairs(inv: &Invocation) -> Result<()> {
        let pa: Params = inv.params()?;
        let (p, z, w) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let (grad, terms) = (inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (n, d, wn) = (pa.n as usize, pa.d as usize, pa.wn.max(1) as usize);
        need(
            inv,
            &[
                ("p", p.len(), 2 * n * d),
                ("z", z.len(), 2 * n * d),
                ("w", w.len(), wn),
                ("grad", grad.len(), 2 * n * d),
                ("terms", terms.len(), n),
            ],
        )?;
        let grad = SharedMut::new(grad);
        rows_mut(terms, n, 1, 6 * d, |i, t| {
            let coef1 = -w[i % wn] / (2 * n) as f32;
            let coef2 = -w[(n + i) % wn] / (2 * n) as f32;
            let (p1, p2) = (&p[i * d..(i + 1) * d], &p[(n + i) * d..(n + i + 1) * d]);
            let (z1, z2) = (&z[i * d..(i + 1) * d], &z[(n + i) * d..(n + i + 1) * d]);
            let c1 = pair(p1, z2, coef1, grad.slice(i * d, d));
            let c2 = pair(p2, z1, coef2, grad.slice((n + i) * d, d));
            t[0] = coef1 * c1 + coef2 * c2;
        });
        Ok(())
    }
}
