//! Linear layers on the GEMM kernels: `y = x·Wᵀ + b` with PyTorch's weight
//! layout (out × in), optionally fused with a ReLU; the backward accumulates
//! the weight and bias gradients. CPU twin: [`cpu`]; tests:
//! `host/tests/linear.rs`.

use crate::error::Result;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::reduce::{reduce_add, Reduction};
use crate::step::Step;
use crate::tensor::Tensor;

/// Sizes of a linear layer applied to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows (batch).
    pub n: usize,
    /// Input features.
    pub fan_in: usize,
    /// Output features.
    pub fan_out: usize,
}

/// `y = x·Wᵀ + b` (then ReLU if `relu`); x n × in, W out × in, y n × out.
pub fn linear(
    step: &mut Step,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    s: &LinearShape,
    relu: bool,
    y: &Tensor,
) -> Result<()> {
    x.expect_len("linear input", s.n * s.fan_in)?;
    w.expect_len("linear weight", s.fan_out * s.fan_in)?;
    y.expect_len("linear output", s.n * s.fan_out)?;
    let g = GemmSpec {
        trans_b: true,
        relu,
        ..GemmSpec::new(s.n, s.fan_out, s.fan_in)
    };
    gemm(step, &g, x, w, b, y)
}

/// Backward of [`linear`] (without the ReLU): `dw += dyᵀ·x`, `db += Σ dy`
/// (if given), `dx = dy·W` (if given).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    step: &mut Step,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    s: &LinearShape,
    dw: &Tensor,
    db: Option<&Tensor>,
    dx: Option<&Tensor>,
) -> Result<()> {
    dy.expect_len("linear output gradient", s.n * s.fan_out)?;
    dw.expect_len("linear weight gradient", s.fan_out * s.fan_in)?;
    let gw = GemmSpec {
        trans_a: true,
        beta: 1.0,
        ..GemmSpec::new(s.fan_out, s.fan_in, s.n)
    };
    gemm(step, &gw, dy, x, None, dw)?;
    if let Some(db) = db {
        reduce_add(step, dy, [1, s.n, s.fan_out], Reduction::Sum, 1.0, db)?;
    }
    if let Some(dx) = dx {
        dx.expect_len("linear input gradient", s.n * s.fan_in)?;
        gemm(
            step,
            &GemmSpec::new(s.n, s.fan_in, s.fan_out),
            dy,
            w,
            None,
            dx,
        )?;
    }
    Ok(())
}

/// CPU twin (f64 accumulation).
#[cfg(feature = "reference")]
pub mod cpu {
    use super::LinearShape;

    /// `x·Wᵀ + b`.
    pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, s: &LinearShape) -> Vec<f32> {
        let mut y = vec![0.0f32; s.n * s.fan_out];
        for i in 0..s.n {
            for o in 0..s.fan_out {
                let mut acc = b.map_or(0.0, |b| b[o] as f64);
                for k in 0..s.fan_in {
                    acc += x[i * s.fan_in + k] as f64 * w[o * s.fan_in + k] as f64;
                }
                y[i * s.fan_out + o] = acc as f32;
            }
        }
        y
    }

    /// (dW, db, dx) for the output gradient `dy`.
    pub fn linear_backward(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        s: &LinearShape,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0f64; s.fan_out * s.fan_in];
        let mut db = vec![0.0f64; s.fan_out];
        let mut dx = vec![0.0f64; s.n * s.fan_in];
        for i in 0..s.n {
            for o in 0..s.fan_out {
                let g = dy[i * s.fan_out + o] as f64;
                db[o] += g;
                for k in 0..s.fan_in {
                    dw[o * s.fan_in + k] += g * x[i * s.fan_in + k] as f64;
                    dx[i * s.fan_in + k] += g * w[o * s.fan_in + k] as f64;
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        (f(dw), f(db), f(dx))
    }
}
