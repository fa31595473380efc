//! Pooling on NCHW tensors: max pooling (`shaders/wgsl/pool.wgsl`) and
//! global average pooling (a mean reduction, `reduce.wgsl`, and its
//! broadcast backward, `elementwise.wgsl`). CPU twins: [`cpu`]; tests:
//! `host/tests/pool.rs`.

use scorecl_shaders::POOL;

use crate::error::Result;
use crate::kernel_params;
use crate::ops::conv::ConvShape;
use crate::ops::elementwise;
use crate::ops::reduce::{reduce, Reduction};
use crate::step::{grid, Step};
use crate::tensor::Tensor;

kernel_params! {
    struct Params {
        c: u32,
        h: u32,
        w: u32,
        images: u32,
        kh: u32,
        kw: u32,
        stride: u32,
        pad: u32,
        oh: u32,
        ow: u32,
        _p0: u32,
        _p1: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// The window of `s` (`k`, `stride`, `pad`; `cout` = `cin`) over all its
/// images.
fn params(s: &ConvShape) -> Params {
    Params {
        c: s.cin as u32,
        h: s.h as u32,
        w: s.w as u32,
        images: s.n as u32,
        kh: s.k as u32,
        kw: s.k as u32,
        stride: s.stride as u32,
        pad: s.pad as u32,
        oh: s.oh() as u32,
        ow: s.ow() as u32,
        _p0: 0,
        _p1: 0,
    }
}

/// Max pooling (window `s.k`, `s.stride`, `s.pad`; `s.cout` = `s.cin`):
/// `y` and the argmax (flat index in the input plane) for the backward.
pub fn maxpool(step: &mut Step, x: &Tensor, s: &ConvShape, y: &Tensor, arg: &Tensor) -> Result<()> {
    s.check()?;
    x.expect_len("maxpool input", s.in_len())?;
    y.expect_len("maxpool output", s.out_len())?;
    arg.expect_len("maxpool argmax", s.out_len())?;
    let k = step.gpu().kernel(&POOL, "maxpool", &[], &[])?;
    step.dispatch(
        &k,
        &params(s),
        crate::bind![x, y, arg],
        grid(s.out_len(), 256),
    )
}

/// Backward of [`maxpool`].
pub fn maxpool_backward(
    step: &mut Step,
    dy: &Tensor,
    arg: &Tensor,
    s: &ConvShape,
    dx: &Tensor,
) -> Result<()> {
    dy.expect_len("maxpool output gradient", s.out_len())?;
    dx.expect_len("maxpool input gradient", s.in_len())?;
    let k = step.gpu().kernel(&POOL, "maxpool_backward", &[], &[])?;
    step.dispatch(
        &k,
        &params(s),
        crate::bind![dx, dy, arg_in = arg],
        grid(s.in_len(), 256),
    )
}

/// Global average pooling: [n, c, h·w] → [n, c].
pub fn avgpool(
    step: &mut Step,
    x: &Tensor,
    n: usize,
    c: usize,
    hw: usize,
    out: &Tensor,
) -> Result<()> {
    reduce(step, x, [n * c, hw, 1], Reduction::Mean, 1.0, out)
}

/// Backward of [`avgpool`]: dx[n, c, :] = dy[n, c] / hw.
pub fn avgpool_backward(
    step: &mut Step,
    dy: &Tensor,
    n: usize,
    c: usize,
    hw: usize,
    dx: &Tensor,
) -> Result<()> {
    elementwise::expand(step, 1.0 / hw as f32, dy, hw, dx)
        .and_then(|_| dx.expect_len("avgpool input gradient", n * c * hw))
}

/// CPU twins.
#[cfg(feature = "reference")]
pub mod cpu {
    use crate::ops::conv::ConvShape;

    /// Max pooling and its argmax (first maximum in scan order; a NaN in
    /// the window is the output, the last one, as PyTorch's CPU kernel).
    pub fn maxpool(x: &[f32], s: &ConvShape) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = (s.oh(), s.ow());
        let mut y = Vec::new();
        let mut arg = Vec::new();
        for plane in 0..s.n * s.cin {
            for i in 0..oh {
                for j in 0..ow {
                    // PyTorch's CPU kernel: −inf at the window's first
                    // in-image position; a larger value or a NaN takes it.
                    let mut best = f32::NEG_INFINITY;
                    let mut at = ((i * s.stride).saturating_sub(s.pad) * s.w
                        + (j * s.stride).saturating_sub(s.pad))
                        as u32;
                    for p in 0..s.k {
                        for q in 0..s.k {
                            let h = (i * s.stride + p) as isize - s.pad as isize;
                            let w = (j * s.stride + q) as isize - s.pad as isize;
                            if h < 0 || w < 0 || h >= s.h as isize || w >= s.w as isize {
                                continue;
                            }
                            let idx = h as usize * s.w + w as usize;
                            let v = x[plane * s.h * s.w + idx];
                            if v > best || v.is_nan() {
                                best = v;
                                at = idx as u32;
                            }
                        }
                    }
                    y.push(best);
                    arg.push(at);
                }
            }
        }
        (y, arg)
    }

    /// Backward of [`maxpool`].
    pub fn maxpool_backward(dy: &[f32], arg: &[u32], s: &ConvShape) -> Vec<f32> {
        let ohw = s.oh() * s.ow();
        let mut dx = vec![0.0f32; s.in_len()];
        for (o, g) in dy.iter().enumerate() {
            let plane = o / ohw;
            dx[plane * s.h * s.w + arg[o] as usize] += g;
        }
        dx
    }
}

/// Native CPU twins of `maxpool` and `maxpool_backward`, a plane per
/// parallel task.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, Invocation, KernelFn};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "maxpool" => maxpool,
            "maxpool_backward" => maxpool_backward,
            _ => return None,
        })
    }

    /// The window of a dispatch.
    struct Geo {
        c: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
    }

    impl Geo {
        fn of(p: &Params) -> Geo {
            Geo {
                c: p.c as usize,
                h: p.h as usize,
                w: p.w as usize,
                kh: p.kh as usize,
                kw: p.kw as usize,
                stride: p.stride.max(1) as usize,
                pad: p.pad as usize,
                oh: p.oh as usize,
                ow: p.ow as usize,
            }
        }
    }

    fn maxpool(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let g = Geo::of(&p);
        let (x, y, arg) = (inv.f32(0)?, inv.f32_mut(1)?, inv.u32_mut(2)?);
        let planes = p.images as usize * g.c;
        let ohw = g.oh * g.ow;
        need(
            inv,
            &[
                ("x", x.len(), planes * g.h * g.w),
                ("y", y.len(), planes * ohw),
                ("arg", arg.len(), planes * ohw),
            ],
        )?;
        let arg = crate::native::SharedMut::new(arg);
        rows_mut(y, planes, ohw, ohw * g.kh * g.kw, |pl, out| {
            let plane = &x[pl * g.h * g.w..(pl + 1) * g.h * g.w];
            for (t, o) in out.iter_mut().enumerate() {
                let (i, j) = (t / g.ow, t % g.ow);
                let mut best = f32::NEG_INFINITY;
                let mut at = ((i * g.stride).saturating_sub(g.pad) * g.w
                    + (j * g.stride).saturating_sub(g.pad)) as u32;
                for pp in 0..g.kh {
                    let hh = (i * g.stride + pp) as isize - g.pad as isize;
                    if hh < 0 || hh >= g.h as isize {
                        continue;
                    }
                    for q in 0..g.kw {
                        let ww = (j * g.stride + q) as isize - g.pad as isize;
                        if ww < 0 || ww >= g.w as isize {
                            continue;
                        }
                        let idx = hh as usize * g.w + ww as usize;
                        // Strictly greater: the first maximum in scan order.
                        if plane[idx] > best || plane[idx].is_nan() {
                            best = plane[idx];
                            at = idx as u32;
                        }
                    }
                }
                *o = best;
                arg.set(pl * ohw + t, at);
            }
        });
        Ok(())
    }

    fn maxpool_backward(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let g = Geo::of(&p);
        let (dx, dy, arg) = (inv.f32_mut(0)?, inv.f32(1)?, inv.u32(2)?);
        let planes = p.images as usize * g.c;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        need(
            inv,
            &[
                ("dx", dx.len(), planes * hw),
                ("dy", dy.len(), planes * ohw),
                ("arg", arg.len(), planes * ohw),
            ],
        )?;
        rows_mut(dx, planes, hw, hw * g.kh * g.kw, |pl, out| {
            for (idx, o) in out.iter_mut().enumerate() {
                let (h, w) = (idx / g.w, idx % g.w);
                let mut acc = 0.0f32;
                for pp in 0..g.kh {
                    let hs = (h + g.pad) as isize - pp as isize;
                    if hs < 0 || hs as usize % g.stride != 0 || hs as usize / g.stride >= g.oh {
                        continue;
                    }
                    for q in 0..g.kw {
                        let ws = (w + g.pad) as isize - q as isize;
                        if ws < 0 || ws as usize % g.stride != 0 || ws as usize / g.stride >= g.ow {
                            continue;
                        }
                        let o2 =
                            pl * ohw + (hs as usize / g.stride) * g.ow + ws as usize / g.stride;
                        if arg[o2] as usize == idx {
                            acc += dy[o2];
                        }
                    }
                }
                *o = acc;
            }
        });
        Ok(())
    }
}
