//! Weighted VICReg on the GPU (`shaders/wgsl/vicreg.wgsl`, with reduce,
//! elementwise and GEMM kernels). CPU twin: scorecl-core's `vicreg`;
//! tests: `host/tests/vicreg.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_core::vicreg::VicRegConfig;
use scorecl_shaders::VICREG;

use crate::error::{GpuError, Result};
use crate::gpu::Gpu;
use crate::ops::elementwise::add_cols;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::reduce::{reduce, sum_all, Reduction};
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    d: u32,
    _p0: [u32; 2],
    sim: f32,
    std_c: f32,
    cov: f32,
    _p1: u32,
}

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
            return Err(GpuError::shape(
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
        step.dispatch(&k, &p, &[z, w, grad, &self.terms], grid(n, 1))?;
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
        step.dispatch(&k, &p, &[&self.terms, &self.c, &self.std], grid(2 * d, 1))?;
        let k = gpu.kernel(&VICREG, "vicreg_std_grad", defines, &[])?;
        step.dispatch(&k, &p, &[grad, &self.xc, &self.std], grid(2 * n * d, 256))?;
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
