//! Weighted W-MSE on the GPU (`shaders/wgsl/wmse.wgsl`, with reduce,
//! elementwise and GEMM kernels). CPU twin: scorecl-core's `wmse`; tests:
//! `host/tests/wmse.rs`.
//!
//! A chunk whose covariance is not numerically positive definite sets its
//! entry of [`Wmse::status`] (column + 1) and the loss is then meaningless
//! but finite; the caller reads the status with the loss and turns it into
//! an error ([`Wmse::check`]).

use scorecl_core::wmse::WmseConfig;
use scorecl_shaders::WMSE;

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
        m: u32,
        chunks: u32,
        eps: f32,
        f: f32,
        tol_scale: f32,
        _p0: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

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
            return Err(Error::shape(
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
            return Err(Error::shape(
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
            crate::bind![L = &self.l, status = &self.status],
            grid(k, 1),
        )?;
        step.dispatch(
            &kern("wmse_whiten")?,
            &p,
            crate::bind![xc = &self.xc, Z = &self.z, L_in = &self.l],
            grid(2 * n, 64),
        )?;
        step.dispatch(
            &kern("wmse_pairs")?,
            &p,
            crate::bind![z_in = &self.z, w, terms = &self.terms, G = &self.g],
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
            crate::bind![Pm = &self.p, A = &self.a],
            grid(k * d * d, 256),
        )?;
        step.dispatch(
            &kern("wmse_solve_cols")?,
            &p,
            crate::bind![A = &self.a, L_in = &self.l],
            grid(k * d, 64),
        )?;
        step.dispatch(
            &kern("wmse_solve_rows")?,
            &p,
            crate::bind![A = &self.a, L_in = &self.l],
            grid(k * d, 64),
        )?;
        step.dispatch(
            &kern("wmse_symscale")?,
            &p,
            crate::bind![A = &self.a, Cb = &self.cb],
            grid(k * d * d, 256),
        )?;
        reduce(step, &self.g, [k, m, d], Reduction::Mean, 1.0, &self.gbar)?;
        step.dispatch(
            &kern("wmse_grad_rows")?,
            &p,
            crate::bind![gbar = &self.gbar, grad, L_in = &self.l, G_in = &self.g],
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
            Some(c) => Err(Error::Core(scorecl_core::CoreError::NotPositiveDefinite {
                view: c / chunks_per_view,
                chunk: c % chunks_per_view,
                column: status[c] as usize - 1,
            })),
        }
    }
}

/// Native CPU twins of the W-MSE kernels (a chunk, row or column per
/// parallel task).
// `!(a > b)` on purpose: NaN takes the same branch as in the WGSL.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{for_each, map, max, need, rows_mut, sum, Invocation, KernelFn, SharedMut};
    use scorecl_core::NORM_EPS;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "wmse_cholesky" => cholesky,
            "wmse_whiten" => whiten,
            "wmse_pairs" => pairs,
            "wmse_sym" => sym,
            "wmse_solve_cols" => solve_cols,
            "wmse_solve_rows" => solve_rows,
            "wmse_symscale" => symscale,
            "wmse_grad_rows" => grad_rows,
            _ => return None,
        })
    }

    fn cholesky(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (l, status) = (inv.f32_mut(0)?, inv.u32_mut(1)?);
        let (d, k) = (p.d as usize, p.chunks as usize);
        need(
            inv,
            &[("L", l.len(), k * d * d), ("status", status.len(), k)],
        )?;
        let status = SharedMut::new(status);
        rows_mut(l, k, d * d, d * d * d, |c, a| {
            status.set(c, 0);
            for j in 0..d {
                a[j * d + j] += p.eps;
            }
            let max_diag = max(d, |j| a[j * d + j]);
            let tol = p.tol_scale * max_diag;
            for j in 0..d {
                let rj = j * d;
                let mut s = a[rj + j] - sum(j, |q| a[rj + q] * a[rj + q]);
                if !(s > tol) || !(max_diag > 0.0) {
                    if status.get(c) == 0 {
                        status.set(c, j as u32 + 1);
                    }
                    s = 1.0;
                }
                let pivot = s.sqrt();
                a[rj + j] = pivot;
                for i in j + 1..d {
                    let mut v = a[i * d + j];
                    for q in 0..j {
                        v -= a[i * d + q] * a[rj + q];
                    }
                    a[i * d + j] = v / pivot;
                }
            }
        });
        Ok(())
    }

    fn whiten(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (xc, z, l) = (inv.f32(0)?, inv.f32_mut(1)?, inv.f32(2)?);
        let (n, d, m) = (p.n as usize, p.d as usize, p.m.max(1) as usize);
        need(
            inv,
            &[
                ("xc", xc.len(), 2 * n * d),
                ("Z", z.len(), 2 * n * d),
                ("L", l.len(), (2 * n).div_ceil(m) * d * d),
            ],
        )?;
        rows_mut(z, 2 * n, d, d * d, |r, zr| {
            let lb = (r / m) * d * d;
            for j in 0..d {
                let mut v = xc[r * d + j];
                for q in 0..j {
                    v -= l[lb + j * d + q] * zr[q];
                }
                zr[j] = v / l[lb + j * d + j];
            }
        });
        Ok(())
    }

    fn pairs(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (z, w, terms, g) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32_mut(3)?);
        let (n, d) = (p.n as usize, p.d as usize);
        need(
            inv,
            &[
                ("Z", z.len(), 2 * n * d),
                ("w", w.len(), n),
                ("terms", terms.len(), n),
                ("G", g.len(), 2 * n * d),
            ],
        )?;
        let g = SharedMut::new(g);
        rows_mut(terms, n, 1, 5 * d, |i, t| {
            let (a, b) = (&z[i * d..(i + 1) * d], &z[(n + i) * d..(n + i + 1) * d]);
            let na_raw = sum(d, |j| a[j] * a[j]).sqrt();
            let nb_raw = sum(d, |j| b[j] * b[j]).sqrt();
            let dot = sum(d, |j| a[j] * b[j]);
            let (na, nb) = (na_raw.max(NORM_EPS), nb_raw.max(NORM_EPS));
            let cos = dot / (na * nb);
            let coef = -2.0 * w[i] / n as f32;
            let (ga, gb) = (g.slice(i * d, d), g.slice((n + i) * d, d));
            for j in 0..d {
                let va = if na_raw > NORM_EPS {
                    (b[j] / nb - cos * a[j] / na) / na
                } else {
                    (b[j] / nb) / na
                };
                let vb = if nb_raw > NORM_EPS {
                    (a[j] / na - cos * b[j] / nb) / nb
                } else {
                    (a[j] / na) / nb
                };
                ga[j] = coef * va;
                gb[j] = coef * vb;
            }
            t[0] = w[i] * (2.0 - 2.0 * cos) / n as f32;
        });
        Ok(())
    }

    fn sym(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (pm, a) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (d, k) = (p.d as usize, p.chunks as usize);
        let dd = d * d;
        need(inv, &[("P", pm.len(), k * dd), ("A", a.len(), k * dd)])?;
        map(a, k * dd, |t| {
            let base = (t / dd) * dd;
            let (j, q) = ((t % dd) / d, t % d);
            0.5 * if j >= q { pm[t] } else { pm[base + q * d + j] }
        });
        Ok(())
    }

    fn solve_cols(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (a, l) = (inv.f32_mut(0)?, inv.f32(1)?);
        let (d, k) = (p.d as usize, p.chunks as usize);
        need(inv, &[("A", a.len(), k * d * d), ("L", l.len(), k * d * d)])?;
        let a = SharedMut::new(a);
        // Each (chunk, column) task owns its column.
        for_each(k * d, d * d, |t| {
            let base = (t / d) * d * d;
            let col = t % d;
            for j in (0..d).rev() {
                let mut v = a.get(base + j * d + col);
                for q in j + 1..d {
                    v -= l[base + q * d + j] * a.get(base + q * d + col);
                }
                a.set(base + j * d + col, v / l[base + j * d + j]);
            }
        });
        Ok(())
    }

    fn solve_rows(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (a, l) = (inv.f32_mut(0)?, inv.f32(1)?);
        let (d, k) = (p.d as usize, p.chunks as usize);
        need(inv, &[("A", a.len(), k * d * d), ("L", l.len(), k * d * d)])?;
        rows_mut(a, k * d, d, d * d, |t, row| {
            let base = (t / d) * d * d;
            for j in (0..d).rev() {
                let mut v = row[j];
                for q in j + 1..d {
                    v -= l[base + q * d + j] * row[q];
                }
                row[j] = v / l[base + j * d + j];
            }
        });
        Ok(())
    }

    fn symscale(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (a, cb) = (inv.f32_mut(0)?, inv.f32_mut(1)?);
        let (d, k) = (p.d as usize, p.chunks as usize);
        let dd = d * d;
        need(inv, &[("A", a.len(), k * dd), ("Cb", cb.len(), k * dd)])?;
        let a = &*a;
        map(cb, k * dd, |t| {
            let base = (t / dd) * dd;
            let (j, q) = ((t % dd) / d, t % d);
            0.5 * p.f * (a[t] + a[base + q * d + j])
        });
        Ok(())
    }

    fn grad_rows(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (gbar, grad, l, g) = (inv.f32(0)?, inv.f32_mut(1)?, inv.f32(2)?, inv.f32(3)?);
        let (n, d, m) = (p.n as usize, p.d as usize, p.m.max(1) as usize);
        let k = (2 * n).div_ceil(m);
        need(
            inv,
            &[
                ("gbar", gbar.len(), k * d),
                ("grad", grad.len(), 2 * n * d),
                ("L", l.len(), k * d * d),
                ("G", g.len(), 2 * n * d),
            ],
        )?;
        rows_mut(grad, 2 * n, d, d * d, |r, out| {
            let c = r / m;
            let lb = c * d * d;
            for j in (0..d).rev() {
                let mut v = g[r * d + j] - gbar[c * d + j];
                for q in j + 1..d {
                    v -= l[lb + q * d + j] * out[q];
                }
                out[j] = v / l[lb + j * d + j];
            }
        });
        Ok(())
    }
}
