//! Weighted NT-Xent on the GPU (`shaders/wgsl/simclr.wgsl`, with rows and
//! GEMM kernels). CPU twin: scorecl-core's `simclr`; tests:
//! `host/tests/simclr.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_core::simclr::SimClrConfig;
use scorecl_shaders::SIMCLR;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::rows;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _p0: u32,
    inv_tau: f32,
    _p1: u32,
}

/// Scratch of the loss for n pairs of d features, allocated once.
pub struct SimClr {
    n: usize,
    d: usize,
    u: Tensor,
    norms: Tensor,
    s: Tensor,
    lse: Tensor,
    terms: Tensor,
    g: Tensor,
    du: Tensor,
}

impl SimClr {
    /// Buffers for n pairs of d features.
    pub fn new(gpu: &Gpu, n: usize, d: usize) -> Result<Self> {
        let r = 2 * n;
        let t = |shape: &[usize]| gpu.tensor(shape, DType::F32);
        Ok(SimClr {
            n,
            d,
            u: t(&[r, d])?,
            norms: t(&[r])?,
            s: t(&[r, r])?,
            lse: t(&[r])?,
            terms: t(&[r])?,
            g: t(&[r, r])?,
            du: t(&[r, d])?,
        })
    }

    /// The loss of `z` (= [z1; z2], 2n × d) with pair weights `w` (n) into
    /// the one-element `loss`, and ∂L/∂z into `grad` (2n × d).
    pub fn forward_backward(
        &self,
        step: &mut Step,
        z: &Tensor,
        w: &Tensor,
        cfg: &SimClrConfig,
        grad: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        cfg.validate()?;
        let (n, d, r) = (self.n, self.d, 2 * self.n);
        z.expect_len("simclr z [2n, d]", r * d)?;
        w.expect_len("simclr weights", n)?;
        grad.expect_len("simclr grad", r * d)?;
        loss.expect_len("simclr loss", 1)?;
        let inv_tau = 1.0 / cfg.temperature;
        rows::l2norm(step, z, r, d, &self.u, &self.norms)?;
        let sim = GemmSpec {
            trans_b: true,
            alpha: inv_tau,
            ..GemmSpec::new(r, r, d)
        };
        gemm(step, &sim, &self.u, &self.u, None, &self.s)?;
        let gpu = step.gpu();
        let defines = gpu.subgroup_defines();
        let p = Params {
            n: n as u32,
            inv_tau,
            ..Zeroable::zeroed()
        };
        let k = gpu.kernel(&SIMCLR, "simclr_rows", defines, &[])?;
        step.dispatch(&k, &p, &[&self.s, w, &self.lse, &self.terms], grid(r, 1))?;
        let k = gpu.kernel(&SIMCLR, "simclr_grad", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            &[&self.s, w, &self.terms, &self.lse, &self.g, loss],
            grid(r * r, 256),
        )?;
        gemm(
            step,
            &GemmSpec::new(r, d, r),
            &self.g,
            &self.u,
            None,
            &self.du,
        )?;
        rows::l2norm_backward(step, &self.du, &self.u, &self.norms, r, d, grad)
    }
}
