//! Weighted W-MSE on the GPU (`shaders/wgsl/wmse.wgsl`, with reduce,
//! elementwise and GEMM kernels). CPU twin: scorecl-core's `wmse`; tests:
//! `host/tests/wmse.rs`.
//!
//! A chunk whose covariance is not numerically positive definite sets its
//! entry of [`Wmse::status`] (column + 1) and the loss is then meaningless
//! but finite; the caller reads the status with the loss and turns it into
//! an error ([`Wmse::check`]).

use bytemuck::{Pod, Zeroable};
use scorecl_core::wmse::WmseConfig;
use scorecl_shaders::WMSE;

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
    m: u32,
    chunks: u32,
    eps: f32,
    f: f32,
    tol_scale: f32,
    _p0: u32,
}

/// Scratch of the loss for n pairs of d features in chunks of w_size.
pub struct Wmse {
    n: usize,
    d: usize,
    m: usize,
    mean: Tensor,
    xc: Tensor,
    l: Tensor,
    /// Per chunk (both views, K = 2n / w_size): 0, or the failing
    /// Cholesky column + 1.
    pub status: Tensor,
    z: Tensor,
    terms: Tensor,
    g: Tensor,
    p: Tensor,
    a: Tensor,
    cb: Tensor,
    gbar: Tensor,
}

impl Wmse {
    /// Buffers for n pairs of d features whitened in chunks of `w_size`.
    pub fn new(gpu: &Gpu, n: usize, d: usize, w_size: usize) -> Result<Self> {
        WmseConfig { eps: 0.0, w_size }.validate()?;
        if n % w_size != 0 {
            return Err(GpuError::shape(
                "wmse",
                format!("w_size {w_size} does not divide the batch of {n}"),
            ));
        }
        let k = 2 * n / w_size;
        let t = |shape: &[usize]| gpu.tensor(shape, DType::F32);
        Ok(Wmse {
            n,
            d,
            m: w_size,
            mean: t(&[k, d])?,
            xc: t(&[2 * n, d])?,
            l: t(&[k, d, d])?,
            status: gpu.tensor(&[k], DType::U32)?,
            z: t(&[2 * n, d])?,
            terms: t(&[n])?,
            g: t(&[2 * n, d])?,
            p: t(&[k, d, d])?,
            a: t(&[k, d, d])?,
            cb: t(&[k, d, d])?,
            gbar: t(&[k, d])?,
        })
    }

    /// Loss of `z` = [z1; z2] (2n × d) with weights `w` into `loss`, ∂L/∂z
    /// into `grad`, and per-chunk factorisation status into
    /// [`Wmse::status`]. `cfg.w_size` must be the one given to `new`.
    pub fn forward_backward(
        &self,
        step: &mut Step,
        z: &Tensor,
        w: &Tensor,
        cfg: &WmseConfig,
        grad: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        cfg.validate()?;
        let (n, d, m) = (self.n, self.d, self.m);
        if cfg.w_size != m {
            return Err(GpuError::shape(
                "wmse",
                format!("w_size {} but buffers for {m}", cfg.w_size),
            ));
        }
        z.expect_len("wmse z [2n, d]", 2 * n * d)?;
        w.expect_len("wmse weights", n)?;
        grad.expect_len("wmse grad", 2 * n * d)?;
        let k = 2 * n / m;
        let gpu = step.gpu();
        let defines = gpu.subgroup_defines();
        let kern = |entry: &'static str| gpu.kernel(&WMSE, entry, defines, &[]);
        let p = Params {
            n: n as u32,
            d: d as u32,
            m: m as u32,
            chunks: k as u32,
            eps: cfg.eps,
            f: (1.0 - cfg.eps) * 2.0 / (m - 1) as f32,
            tol_scale: d as f32 * f32::EPSILON,
            _p0: 0,
        };
        // Forward: centre, covariance, factor, whiten.
        reduce(step, z, [k, m, d], Reduction::Mean, 1.0, &self.mean)?;
        add_cols(step, z, -1.0, &self.mean, d, m, &self.xc)?;
        let cov = GemmSpec {
            batch: k,
            trans_a: true,
            alpha: (1.0 - cfg.eps) / (m - 1) as f32,
            ..GemmSpec::new(d, d, m)
        };
        gemm(step, &cov, &self.xc, &self.xc, None, &self.l)?;
        step.dispatch(
            &kern("wmse_cholesky")?,
            &p,
            &[&self.l, &self.status],
            grid(k, 1),
        )?;
        step.dispatch(
            &kern("wmse_whiten")?,
            &p,
            &[&self.xc, &self.z, &self.l],
            grid(2 * n, 64),
        )?;
        step.dispatch(
            &kern("wmse_pairs")?,
            &p,
            &[&self.z, w, &self.terms, &self.g],
            grid(n, 1),
        )?;
        // Backward through the factor.
        let pm = GemmSpec {
            batch: k,
            trans_a: true,
            alpha: -1.0,
            ..GemmSpec::new(d, d, m)
        };
        gemm(step, &pm, &self.g, &self.z, None, &self.p)?;
        step.dispatch(
            &kern("wmse_sym")?,
            &p,
            &[&self.p, &self.a],
            grid(k * d * d, 256),
        )?;
        step.dispatch(
            &kern("wmse_solve_cols")?,
            &p,
            &[&self.a, &self.l],
            grid(k * d, 64),
        )?;
        step.dispatch(
            &kern("wmse_solve_rows")?,
            &p,
            &[&self.a, &self.l],
            grid(k * d, 64),
        )?;
        step.dispatch(
            &kern("wmse_symscale")?,
            &p,
            &[&self.a, &self.cb],
            grid(k * d * d, 256),
        )?;
        reduce(step, &self.g, [k, m, d], Reduction::Mean, 1.0, &self.gbar)?;
        step.dispatch(
            &kern("wmse_grad_rows")?,
            &p,
            &[&self.gbar, grad, &self.l, &self.g],
            grid(2 * n, 64),
        )?;
        let back = GemmSpec {
            batch: k,
            beta: 1.0,
            ..GemmSpec::new(m, d, d)
        };
        gemm(step, &back, &self.xc, &self.cb, None, grad)?;
        sum_all(step, &self.terms, 1.0, loss)
    }

    /// `Err(NotPositiveDefinite)` naming the first failed chunk, from the
    /// status read back after the step.
    pub fn check(&self, status: &[u32]) -> Result<()> {
        let chunks_per_view = self.n / self.m;
        match status
            .iter()
            .take(2 * chunks_per_view)
            .position(|s| *s != 0)
        {
            None => Ok(()),
            Some(c) => Err(GpuError::Core(
                scorecl_core::CoreError::NotPositiveDefinite {
                    view: c / chunks_per_view,
                    chunk: c % chunks_per_view,
                    column: status[c] as usize - 1,
                },
            )),
        }
    }
}
