//! The score network's U-Net kernels (`shaders/wgsl/unet.wgsl`): FiLM conditioning and
//! nearest ×2 upsampling. CPU twins: [`cpu`]; tests:
//! `host/tests/unet.rs`.

use scorecl_shaders::UNET;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        n: u32,
        c: u32,
        h: u32,
        w: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn params(n: usize, c: usize, h: usize, w: usize) -> Params {
    Params {
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
    }
}

/// `y = x·(1 + γ) + β` per sample and channel; `gb` is [n, 2c] (γ then β).
pub fn film(
    step: &mut Step,
    x: &Tensor,
    gb: &Tensor,
    [n, c, h, w]: [usize; 4],
    y: &Tensor,
) -> Result<()> {
    x.expect_len("film x", n * c * h * w)?;
    gb.expect_len("film scale and shift", n * 2 * c)?;
    y.expect_len("film y", n * c * h * w)?;
    let k = step.gpu().kernel(&UNET, "film", &[], &[])?;
    step.dispatch(
        &k,
        &params(n, c, h, w),
        crate::bind![x, gb, y],
        grid(n * c * h * w, 256),
    )
}

/// Backward of [`film`]: `dx` and `dgb` (overwritten, [n, 2c]).
#[allow(clippy::too_many_arguments)]
pub fn film_backward(
    step: &mut Step,
    x: &Tensor,
    gb: &Tensor,
    dy: &Tensor,
    dims: [usize; 4],
    dx: &Tensor,
    dgb: &Tensor,
) -> Result<()> {
    let [n, c, h, w] = dims;
    dy.expect_len("film dy", n * c * h * w)?;
    dx.expect_len("film dx", n * c * h * w)?;
    dgb.expect_len("film dgb", n * 2 * c)?;
    let gpu = step.gpu();
    let p = params(n, c, h, w);
    let k = gpu.kernel(&UNET, "film_backward", &[], &[])?;
    step.dispatch(&k, &p, crate::bind![gb, dy, dx], grid(n * c * h * w, 256))?;
    let k = gpu.kernel(&UNET, "film_grad", gpu.subgroup_defines(), &[])?;
    step.dispatch(&k, &p, crate::bind![x, dy, dgb], grid(n * c, 1))
}

/// Nearest ×2 upsampling of [n, c, h, w] into [n, c, 2h, 2w].
pub fn up2(step: &mut Step, x: &Tensor, [n, c, h, w]: [usize; 4], y: &Tensor) -> Result<()> {
    x.expect_len("up2 x", n * c * h * w)?;
    y.expect_len("up2 y", n * c * 4 * h * w)?;
    let k = step.gpu().kernel(&UNET, "up2", &[], &[])?;
    step.dispatch(
        &k,
        &params(n, c, h, w),
        crate::bind![x, y],
        grid(n * c * 4 * h * w, 256),
    )
}

/// Backward of [`up2`] (`dims` are the small sizes).
pub fn up2_backward(
    step: &mut Step,
    dy: &Tensor,
    [n, c, h, w]: [usize; 4],
    dx: &Tensor,
) -> Result<()> {
    dy.expect_len("up2 dy", n * c * 4 * h * w)?;
    dx.expect_len("up2 dx", n * c * h * w)?;
    let k = step.gpu().kernel(&UNET, "up2_backward", &[], &[])?;
    step.dispatch(
        &k,
        &params(n, c, h, w),
        crate::bind![dy, dx],
        grid(n * c * h * w, 256),
    )
}

/// CPU twins.
#[cfg(feature = "reference")]
pub mod cpu {
    /// [`super::film`].
    pub fn film(x: &[f32], gb: &[f32], [_, c, h, w]: [usize; 4]) -> Vec<f32> {
        let hw = h * w;
        x.iter()
            .enumerate()
            .map(|(t, v)| {
                let (n, ch) = (t / (c * hw), (t / hw) % c);
                v * (1.0 + gb[n * 2 * c + ch]) + gb[n * 2 * c + c + ch]
            })
            .collect()
    }

    /// (dx, dgb) of [`super::film`].
    pub fn film_backward(
        x: &[f32],
        gb: &[f32],
        dy: &[f32],
        [n, c, h, w]: [usize; 4],
    ) -> (Vec<f32>, Vec<f32>) {
        let hw = h * w;
        let mut dgb = vec![0.0f64; n * 2 * c];
        let dx = dy
            .iter()
            .enumerate()
            .map(|(t, g)| {
                let (nn, ch) = (t / (c * hw), (t / hw) % c);
                dgb[nn * 2 * c + ch] += *g as f64 * x[t] as f64;
                dgb[nn * 2 * c + c + ch] += *g as f64;
                g * (1.0 + gb[nn * 2 * c + ch])
            })
            .collect();
        (dx, dgb.into_iter().map(|v| v as f32).collect())
    }

    /// [`super::up2`].
    pub fn up2(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
        let mut y = vec![0.0; n * c * 4 * h * w];
        for plane in 0..n * c {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    y[plane * 4 * h * w + oy * 2 * w + ox] =
                        x[plane * h * w + (oy / 2) * w + ox / 2];
                }
            }
        }
        y
    }

    /// [`super::up2_backward`].
    pub fn up2_backward(dy: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
        let mut dx = vec![0.0; n * c * h * w];
        for plane in 0..n * c {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    dx[plane * h * w + (oy / 2) * w + ox / 2] +=
                        dy[plane * 4 * h * w + oy * 2 * w + ox];
                }
            }
        }
        dx
    }
}

/// Native CPU twins of `film`, `film_backward`, `film_grad`, `up2` and
/// `up2_backward`, a plane per parallel task.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn, SharedMut};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "film" => film,
            "film_backward" => film_backward,
            "film_grad" => film_grad,
            "up2" => up2,
            "up2_backward" => up2_backward,
            _ => return None,
        })
    }

    fn dims(p: &Params) -> (usize, usize, usize) {
        (p.n as usize, p.c as usize, (p.h * p.w) as usize)
    }

    fn film(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, gb, y) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let (n, c, hw) = dims(&p);
        need(
            inv,
            &[
                ("x", x.len(), n * c * hw),
                ("gb", gb.len(), 2 * n * c),
                ("y", y.len(), n * c * hw),
            ],
        )?;
        rows_mut(y, n * c, hw, hw, |pl, o| {
            let (s, ch) = (pl / c, pl % c);
            let (g, b) = (gb[s * 2 * c + ch], gb[s * 2 * c + c + ch]);
            let xs = &x[pl * hw..(pl + 1) * hw];
            o.iter_mut()
                .zip(xs)
                .for_each(|(v, xv)| *v = xv * (1.0 + g) + b);
        });
        Ok(())
    }

    fn film_backward(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (gb, dy, dx) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let (n, c, hw) = dims(&p);
        need(
            inv,
            &[
                ("gb", gb.len(), 2 * n * c),
                ("dy", dy.len(), n * c * hw),
                ("dx", dx.len(), n * c * hw),
            ],
        )?;
        rows_mut(dx, n * c, hw, hw, |pl, o| {
            let (s, ch) = (pl / c, pl % c);
            let g = gb[s * 2 * c + ch];
            let d = &dy[pl * hw..(pl + 1) * hw];
            o.iter_mut().zip(d).for_each(|(v, dv)| *v = dv * (1.0 + g));
        });
        Ok(())
    }

    fn film_grad(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, dy, dgb) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let (n, c, hw) = dims(&p);
        need(
            inv,
            &[
                ("x", x.len(), n * c * hw),
                ("dy", dy.len(), n * c * hw),
                ("dgb", dgb.len(), 2 * n * c),
            ],
        )?;
        let dgb = SharedMut::new(dgb);
        crate::native::for_each(n * c, 2 * hw, |pl| {
            let (s, ch) = (pl / c, pl % c);
            let base = pl * hw;
            dgb.set(s * 2 * c + ch, sum(hw, |q| dy[base + q] * x[base + q]));
            dgb.set(s * 2 * c + c + ch, sum(hw, |q| dy[base + q]));
        });
        Ok(())
    }

    fn up2(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, y) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (n, c, hw) = dims(&p);
        let w = p.w as usize;
        need(
            inv,
            &[("x", x.len(), n * c * hw), ("y", y.len(), 4 * n * c * hw)],
        )?;
        rows_mut(y, n * c, 4 * hw, 4 * hw, |pl, o| {
            let src = &x[pl * hw..(pl + 1) * hw];
            for (t, v) in o.iter_mut().enumerate() {
                let (oy, ox) = (t / (2 * w), t % (2 * w));
                *v = src[(oy / 2) * w + ox / 2];
            }
        });
        Ok(())
    }

    fn up2_backward(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (dy, dx) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (n, c, hw) = dims(&p);
        let w = p.w as usize;
        need(
            inv,
            &[
                ("dy", dy.len(), 4 * n * c * hw),
                ("dx", dx.len(), n * c * hw),
            ],
        )?;
        let ow = 2 * w;
        rows_mut(dx, n * c, hw, 4 * hw, |pl, o| {
            let d = &dy[pl * 4 * hw..(pl + 1) * 4 * hw];
            for (t, v) in o.iter_mut().enumerate() {
                let (hh, ww) = (t / w, t % w);
                let b = 2 * hh * ow + 2 * ww;
                *v = d[b] + d[b + 1] + d[b + ow] + d[b + ow + 1];
            }
        });
        Ok(())
    }
}
