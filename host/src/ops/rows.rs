//! Row operations (`shaders/wgsl/rows.wgsl`): L2 normalisation forward and
//! backward (as `F.normalize`), row log-sum-exp. CPU twins: [`cpu`], the
//! normalisation backward being scorecl-core's; tests: `host/tests/rows.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::ROWS;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        rows: u32,
        d: u32,
        _p: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn kernel(step: &Step, entry: &'static str) -> Result<std::sync::Arc<crate::Kernel>> {
    let gpu = step.gpu();
    let defines = gpu.subgroup_defines();
    gpu.kernel(&ROWS, entry, defines, &[])
}

/// `y = x / max(‖x‖, 1e-12)` per row, and `norms = ‖x‖` (unclamped).
pub fn l2norm(
    step: &mut Step,
    x: &Tensor,
    rows: usize,
    d: usize,
    y: &Tensor,
    norms: &Tensor,
) -> Result<()> {
    x.expect_len("l2norm x", rows * d)?;
    y.expect_len("l2norm y", rows * d)?;
    norms.expect_len("l2norm norms", rows)?;
    let k = kernel(step, "l2norm")?;
    let p = Params {
        rows: rows as u32,
        d: d as u32,
        ..Zeroable::zeroed()
    };
    step.dispatch(&k, &p, crate::bind![x, y, norms], grid(rows, 1))
}

/// `dx = (g − y (y·g)) / ‖x‖` per row (`g / 1e-12` where the norm was
/// clamped), from the forward's `y` and `norms`.
pub fn l2norm_backward(
    step: &mut Step,
    g: &Tensor,
    y: &Tensor,
    norms: &Tensor,
    rows: usize,
    d: usize,
    dx: &Tensor,
) -> Result<()> {
    g.expect_len("l2norm_backward g", rows * d)?;
    y.expect_len("l2norm_backward y", rows * d)?;
    norms.expect_len("l2norm_backward norms", rows)?;
    dx.expect_len("l2norm_backward dx", rows * d)?;
    let k = kernel(step, "l2norm_backward")?;
    let p = Params {
        rows: rows as u32,
        d: d as u32,
        ..Zeroable::zeroed()
    };
    step.dispatch(
        &k,
        &p,
        crate::bind![g, yn = y, nrm = norms, dx],
        grid(rows, 1),
    )
}

/// `out[r] = log Σ_j exp(x[r, j])` with max subtraction.
pub fn lse(step: &mut Step, x: &Tensor, rows: usize, d: usize, out: &Tensor) -> Result<()> {
    x.expect_len("lse x", rows * d)?;
    out.expect_len("lse out", rows)?;
    let k = kernel(step, "lse")?;
    let p = Params {
        rows: rows as u32,
        d: d as u32,
        ..Zeroable::zeroed()
    };
    step.dispatch(&k, &p, crate::bind![x, out], grid(rows, 1))
}

/// CPU twins.
#[cfg(feature = "reference")]
pub mod cpu {
    /// Normalised rows and unclamped norms (f64 accumulation).
    pub fn l2norm(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0; x.len()];
        let mut norms = Vec::new();
        for (r, row) in x.chunks(d).enumerate() {
            let n = row
                .iter()
                .map(|v| *v as f64 * *v as f64)
                .sum::<f64>()
                .sqrt();
            norms.push(n as f32);
            let c = n.max(scorecl_core::NORM_EPS as f64);
            for (j, v) in row.iter().enumerate() {
                y[r * d + j] = (*v as f64 / c) as f32;
            }
        }
        (y, norms)
    }

    /// `F.normalize`'s backward per row (scorecl-core's rule).
    pub fn l2norm_backward(x: &[f32], g: &[f32], d: usize) -> Vec<f32> {
        let mut out = g.to_vec();
        for (r, row) in x.chunks(d).enumerate() {
            scorecl_core::normalize_backward(row, &mut out[r * d..(r + 1) * d]);
        }
        out
    }

    /// Row log-sum-exp in f64.
    pub fn lse(x: &[f32], d: usize) -> Vec<f32> {
        x.chunks(d)
            .map(|row| {
                let m = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v as f64));
                (m + row.iter().map(|v| (*v as f64 - m).exp()).sum::<f64>().ln()) as f32
            })
            .collect()
    }
}

/// Native CPU twins of `l2norm`, `l2norm_backward` and `lse`, a row per
/// parallel task.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{max, need, rows_mut, sum, Invocation, KernelFn, SharedMut};
    use scorecl_core::NORM_EPS;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "l2norm" => l2norm,
            "l2norm_backward" => l2norm_backward,
            "lse" => lse,
            _ => return None,
        })
    }

    fn l2norm(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, y, norms) = (inv.f32(0)?, inv.f32_mut(1)?, inv.f32_mut(2)?);
        let (rows, d) = (p.rows as usize, p.d as usize);
        need(
            inv,
            &[
                ("x", x.len(), rows * d),
                ("y", y.len(), rows * d),
                ("norms", norms.len(), rows),
            ],
        )?;
        let norms = SharedMut::new(norms);
        rows_mut(y, rows, d, d, |r, yr| {
            let xr = &x[r * d..(r + 1) * d];
            let norm = sum(d, |j| xr[j] * xr[j]).sqrt();
            let inv_n = 1.0 / norm.max(NORM_EPS);
            yr.iter_mut().zip(xr).for_each(|(o, v)| *o = v * inv_n);
            norms.set(r, norm);
        });
        Ok(())
    }

    fn l2norm_backward(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (g, yn, nrm, dx) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?, inv.f32_mut(3)?);
        let (rows, d) = (p.rows as usize, p.d as usize);
        let rd = rows * d;
        need(
            inv,
            &[
                ("g", g.len(), rd),
                ("y", yn.len(), rd),
                ("norms", nrm.len(), rows),
                ("dx", dx.len(), rd),
            ],
        )?;
        rows_mut(dx, rows, d, d, |r, out| {
            let (gr, yr) = (&g[r * d..(r + 1) * d], &yn[r * d..(r + 1) * d]);
            let norm = nrm[r];
            if norm > NORM_EPS {
                let dot = sum(d, |j| yr[j] * gr[j]);
                for j in 0..d {
                    out[j] = (gr[j] - yr[j] * dot) / norm;
                }
            } else {
                out.iter_mut().zip(gr).for_each(|(o, v)| *o = v / NORM_EPS);
            }
        });
        Ok(())
    }

    fn lse(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, out) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (rows, d) = (p.rows as usize, p.d as usize);
        need(inv, &[("x", x.len(), rows * d), ("out", out.len(), rows)])?;
        rows_mut(out, rows, 1, d, |r, o| {
            let xr = &x[r * d..(r + 1) * d];
            let m = max(d, |j| xr[j]);
            o[0] = m + sum(d, |j| (xr[j] - m).exp()).ln();
        });
        Ok(())
    }
}
