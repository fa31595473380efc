//! Score-network kernels (`shaders/wgsl/score.wgsl`): FiLM conditioning and
//! nearest ×2 upsampling. CPU twins: [`cpu`]; tests:
//! `host/tests/score_ops.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_shaders::SCORE;

use crate::error::Result;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
}

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
    let k = step.gpu().kernel(&SCORE, "film", &[], &[])?;
    step.dispatch(
        &k,
        &params(n, c, h, w),
        &[x, gb, y],
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
    let k = gpu.kernel(&SCORE, "film_backward", &[], &[])?;
    step.dispatch(&k, &p, &[gb, dy, dx], grid(n * c * h * w, 256))?;
    let k = gpu.kernel(&SCORE, "film_grad", gpu.subgroup_defines(), &[])?;
    step.dispatch(&k, &p, &[x, dy, dgb], grid(n * c, 1))
}

/// Nearest ×2 upsampling of [n, c, h, w] into [n, c, 2h, 2w].
pub fn up2(step: &mut Step, x: &Tensor, [n, c, h, w]: [usize; 4], y: &Tensor) -> Result<()> {
    x.expect_len("up2 x", n * c * h * w)?;
    y.expect_len("up2 y", n * c * 4 * h * w)?;
    let k = step.gpu().kernel(&SCORE, "up2", &[], &[])?;
    step.dispatch(
        &k,
        &params(n, c, h, w),
        &[x, y],
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
    let k = step.gpu().kernel(&SCORE, "up2_backward", &[], &[])?;
    step.dispatch(&k, &params(n, c, h, w), &[dy, dx], grid(n * c * h * w, 256))
}

/// CPU twins.
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
