//! Elementwise kernels (`shaders/wgsl/elementwise.wgsl`). CPU twins: the
//! `cpu` functions below; tests: `host/tests/elementwise.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_shaders::ELEMENTWISE;

use crate::error::Result;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

/// `out = alpha·a + beta·b`.
pub fn axpby(
    step: &mut Step,
    alpha: f32,
    a: &Tensor,
    beta: f32,
    b: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let n = a.len();
    b.expect_len("axpby b", n)?;
    out.expect_len("axpby out", n)?;
    let k = step.gpu().kernel(&ELEMENTWISE, "axpby", &[], &[])?;
    let p = Params {
        n: n as u32,
        alpha,
        beta,
        _pad: 0,
    };
    step.dispatch(&k, &p, &[a, b, out], grid(n, 256))
}

/// CPU twins.
pub mod cpu {
    /// `alpha·a + beta·b`.
    pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| alpha * x + beta * y).collect()
    }
}
