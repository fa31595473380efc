//! Softmax cross-entropy on the GPU (`shaders/wgsl/xent.wgsl`). CPU twin:
//! scorecl-core's `xent::softmax_xent`; test: `host/tests/linear_probe.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_shaders::XENT;

use crate::error::Result;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
    scale: f32,
    y_off: u32,
}

/// Per-row losses `loss[r] = logsumexp(z_r) − z_r[y_r]` of `logits`
/// `[rows, classes]` (`y_r = labels[y_off + r]`, u32), and `grad = scale · (softmax − onehot)`
/// (`scale = 1/rows` gives the gradient of the mean).
#[allow(clippy::too_many_arguments)]
pub fn xent(
    step: &mut Step,
    logits: &Tensor,
    labels: &Tensor,
    y_off: usize,
    rows: usize,
    classes: usize,
    scale: f32,
    loss: &Tensor,
    grad: &Tensor,
) -> Result<()> {
    logits.expect_len("xent logits", rows * classes)?;
    if labels.len() < y_off + rows {
        return Err(crate::GpuError::shape(
            "xent labels",
            format!(
                "{} labels, rows {y_off}..{} asked",
                labels.len(),
                y_off + rows
            ),
        ));
    }
    loss.expect_len("xent loss", rows)?;
    grad.expect_len("xent grad", rows * classes)?;
    let k = step.gpu().kernel(&XENT, "xent", &[], &[])?;
    let p = Params {
        rows: rows as u32,
        classes: classes as u32,
        scale,
        y_off: y_off as u32,
    };
    step.dispatch(&k, &p, &[logits, labels, loss, grad], grid(rows, 64))
}
