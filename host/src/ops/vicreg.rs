//! Weighted VICReg on the GPU (`shaders/wgsl/vicreg.wgsl`, with reduce,
//! elementwise and GEMM kernels). CPU twin: scorecl-core's `vicreg`;
//! tests: `host/tests/vicreg.rs`.

use bytemuck::Zeroable;
use scorecl_core::vicreg::VicRegConfig;
use scorecl_shaders::VICREG;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::elementwise::add_cols;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::reduce::{reduce, sum_all, Reduction};
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        n: u32,
        d: u32,
        _p0: [u32; 2],
        sim: f32,
        std_c: f32,
        cov: f32,
        _p1: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Scratch of the loss for n pairs of d features.
pub struct VicReg {
    n: usize,
    d: usize,
    mean: Tensor,
    xc: Tensor,
    c: Tensor,
    std: Tensor,
    terms: Tensor,
}

impl VicReg {
    /// Buffers for n ≥ 2 pairs of d features.
    pub fn new(gpu: &Gpu, n: usize, d: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::shape(
                "vicreg",
                "needs at least 2 pairs (unbiased variance)",
            ));
        }
        let t = |shape: &[usize]| gpu.tensor(shape, DType::F32);
        Ok(VicReg {
            n,
            d,
            mean: t(&[2, d])?,
            xc: t(&[2 * n, d])?,
            c: t(&[2, d, d])?,
            std: t(&[2 * d])?,
            terms: t(&[n + 4 * d])?,
        })
    }

    /// Loss of `z` = [x; y] (2n × d) with weights `w` into `loss`, ∂L/∂z
    /// into `grad`.
    pub fn forward_backward(
        &self,
        step: &mut Step,
        z: &Tensor,
        w: &Tensor,
        cfg: &VicRegConfig,
        grad: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        cfg.validate()?;
        let (n, d) = (self.n, self.d);
        z.expect_len("vicreg z [2n, d]", 2 * n * d)?;
        w.expect_len("vicreg weights", n)?;
        grad.expect_len("vicreg grad", 2 * n * d)?;
        let gpu = step.gpu();
        let defines = gpu.subgroup_defines();
        let p = Params {
            n: n as u32,
            d: d as u32,
            sim: cfg.sim_coeff,
            std_c: cfg.std_coeff,
            cov: cfg.cov_coeff,
            ..Zeroable::zeroed()
        };
        let k = gpu.kernel(&VICREG, "vicreg_repr", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            crate::bind![z, w, grad, terms = &self.terms],
            grid(n, 1),
        )?;
        reduce(step, z, [2, n, d], Reduction::Mean, 1.0, &self.mean)?;
        add_cols(step, z, -1.0, &self.mean, d, n, &self.xc)?;
        let cov = GemmSpec {
            batch: 2,
            trans_a: true,
            alpha: 1.0 / (n - 1) as f32,
            ..GemmSpec::new(d, d, n)
        };
        gemm(step, &cov, &self.xc, &self.xc, None, &self.c)?;
        let k = gpu.kernel(&VICREG, "vicreg_stats", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            crate::bind![terms = &self.terms, C = &self.c, stdv = &self.std],
            grid(2 * d, 1),
        )?;
        let k = gpu.kernel(&VICREG, "vicreg_std_grad", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            crate::bind![grad, xc = &self.xc, std_in = &self.std],
            grid(2 * n * d, 256),
        )?;
        let back = GemmSpec {
            batch: 2,
            alpha: 4.0 * cfg.cov_coeff / (d * (n - 1)) as f32,
            beta: 1.0,
            ..GemmSpec::new(n, d, d)
        };
        gemm(step, &back, &self.xc, &self.c, None, grad)?;
        sum_all(step, &self.terms, 1.0, loss)
    }
}

/// Native CPU twins of `vicreg_repr`, `vicreg_stats` and `vicreg_std_grad`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn, SharedMut};

    const STD_EPS: f32 = 1e-4;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "vicreg_repr" => repr,
            "vicreg_stats" => stats,
            "vicreg_std_grad" => std_grad,
            _ => return None,
        })
    }

    fn repr(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (z, w, grad, terms) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32_mut(3)?);
        let (n, d) = (p.n as usize, p.d as usize);
        need(
            inv,
            &[
                ("z", z.len(), 2 * n * d),
                ("w", w.len(), n),
                ("grad", grad.len(), 2 * n * d),
                ("terms", terms.len(), n),
            ],
        )?;
        let nd = (n * d) as f32;
        let grad = SharedMut::new(grad);
        rows_mut(terms, n, 1, 3 * d, |i, t| {
            let k = 2.0 * p.sim * w[i] / nd;
            let (x, y) = (&z[i * d..(i + 1) * d], &z[(n + i) * d..(n + i + 1) * d]);
            let (gx, gy) = (grad.slice(i * d, d), grad.slice((n + i) * d, d));
            for j in 0..d {
                let diff = x[j] - y[j];
                gx[j] = k * diff;
                gy[j] = -k * diff;
            }
            let total = sum(d, |j| (x[j] - y[j]) * (x[j] - y[j]));
            t[0] = p.sim * w[i] * total / nd;
        });
        Ok(())
    }

    fn stats(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (terms, c, stdv) = (inv.f32_mut(0)?, inv.f32_mut(1)?, inv.f32_mut(2)?);
        let (n, d) = (p.n as usize, p.d as usize);
        need(
            inv,
            &[
                ("terms", terms.len(), n + 4 * d),
                ("C", c.len(), 2 * d * d),
                ("std", stdv.len(), 2 * d),
            ],
        )?;
        let (terms, stdv) = (SharedMut::new(terms), SharedMut::new(stdv));
        let df = d as f32;
        rows_mut(c, 2 * d, d, d, |row, cr| {
            let j = row % d;
            let off = sum(d, |k| if k != j { cr[k] * cr[k] } else { 0.0 });
            let s = (cr[j] + STD_EPS).sqrt();
            stdv.set(row, s);
            terms.set(n + row, p.std_c * scorecl_core::relu(1.0 - s) / (2.0 * df));
            terms.set(n + 2 * d + row, p.cov * off / df);
            cr[j] = 0.0;
        });
        Ok(())
    }

    fn std_grad(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (grad, xc, std_in) = (inv.f32_mut(0)?, inv.f32(1)?, inv.f32(2)?);
        let (n, d) = (p.n as usize, p.d as usize);
        need(
            inv,
            &[
                ("grad", grad.len(), 2 * n * d),
                ("xc", xc.len(), 2 * n * d),
                ("std", std_in.len(), 2 * d),
            ],
        )?;
        let ks = p.std_c / (2.0 * d as f32 * n.saturating_sub(1) as f32);
        let g = SharedMut::new(grad);
        crate::native::for_each(2 * n * d, 1, |t| {
            let view = t / (n * d);
            let s = std_in[view * d + t % d];
            if scorecl_core::relu_passes(1.0 - s) {
                g.set(t, g.get(t) - ks * xc[t] / s);
            }
        });
        Ok(())
    }
}
