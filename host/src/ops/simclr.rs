//! Weighted NT-Xent on the GPU (`shaders/wgsl/simclr.wgsl`, with rows and
//! GEMM kernels). CPU twin: scorecl-core's `simclr`; tests:
//! `host/tests/simclr.rs`.

use bytemuck::Zeroable;
use scorecl_core::simclr::SimClrConfig;
use scorecl_shaders::SIMCLR;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::rows;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        n: u32,
        /// Weights bound: n (per pair) or 2n (per view); row r reads w[r % wn].
        wn: u32,
        inv_tau: f32,
        _p1: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

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

    /// The loss of `z` (= [z1; z2], 2n × d) with weights `w` (n per pair, or
    /// 2n per view: anchor row r takes w[r]) into
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
        let wn = super::view_weights_len("simclr weights", w, n)?;
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
            wn: wn as u32,
            inv_tau,
            ..Zeroable::zeroed()
        };
        let k = gpu.kernel(&SIMCLR, "simclr_rows", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            crate::bind![S = &self.s, w, lse = &self.lse, terms = &self.terms],
            grid(r, 1),
        )?;
        let k = gpu.kernel(&SIMCLR, "simclr_grad", defines, &[])?;
        step.dispatch(
            &k,
            &p,
            crate::bind![
                S = &self.s,
                w,
                terms = &self.terms,
                lse_in = &self.lse,
                G = &self.g,
                loss
            ],
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

/// Native CPU twins of `simclr_rows` and `simclr_grad`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{max, need, rows_mut, sum, Invocation, KernelFn, SharedMut};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "simclr_rows" => rows,
            "simclr_grad" => grad,
            _ => return None,
        })
    }

    fn partner(r: usize, n: usize) -> usize {
        if r < n {
            r + n
        } else {
            r - n
        }
    }

    fn rows(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (s, w, lse, terms) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32_mut(3)?);
        let (n, wn) = (p.n as usize, p.wn.max(1) as usize);
        let rows = 2 * n;
        need(
            inv,
            &[
                ("S", s.len(), rows * rows),
                ("w", w.len(), wn),
                ("lse", lse.len(), rows),
                ("terms", terms.len(), rows),
            ],
        )?;
        let terms = SharedMut::new(terms);
        rows_mut(lse, rows, 1, rows, |r, o| {
            let row = &s[r * rows..(r + 1) * rows];
            let off = |c: usize| if c != r { row[c] } else { -f32::MAX };
            let mx = max(rows, off);
            let total = sum(rows, |c| if c != r { (row[c] - mx).exp() } else { 0.0 });
            let l = mx + total.ln();
            o[0] = l;
            terms.set(r, w[r % wn] * (l - row[partner(r, n)]) / rows as f32);
        });
        Ok(())
    }

    fn grad(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (s, w, terms, lse) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32(3)?);
        let (g, loss) = (inv.f32_mut(4)?, inv.f32_mut(5)?);
        let (n, wn) = (p.n as usize, p.wn.max(1) as usize);
        let rows = 2 * n;
        need(
            inv,
            &[
                ("S", s.len(), rows * rows),
                ("w", w.len(), wn),
                ("terms", terms.len(), rows),
                ("lse", lse.len(), rows),
                ("G", g.len(), rows * rows),
                ("loss", loss.len(), 1),
            ],
        )?;
        // The loss: Σ_r terms_r in row order, as invocation 0 sums it.
        let mut total = 0.0f32;
        for t in terms.iter().take(rows) {
            total += t;
        }
        loss[0] = total;
        let inv_rows = 1.0 / rows as f32;
        rows_mut(g, rows, rows, rows, |r, gr| {
            let ar = w[r % wn] * inv_rows;
            let pr = partner(r, n);
            for (c, o) in gr.iter_mut().enumerate() {
                if c == r {
                    *o = 0.0;
                    continue;
                }
                let ac = w[c % wn] * inv_rows;
                let sv = s[r * rows + c];
                let mut v = ar * (sv - lse[r]).exp() + ac * (sv - lse[c]).exp();
                if c == pr {
                    // Both ℓ_r and ℓ_{p(r)} hold the positive (2a_r for pair
                    // weights, exactly).
                    v -= ar + ac;
                }
                *o = v * p.inv_tau;
            }
        });
        Ok(())
    }
}
