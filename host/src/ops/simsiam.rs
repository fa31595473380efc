//! Weighted SimSiam on the GPU (`shaders/wgsl/simsiam.wgsl`). CPU twin:
//! scorecl-core's `simsiam`; tests: `host/tests/simsiam.rs`.

use bytemuck::{Pod, Zeroable};
use scorecl_shaders::SIMSIAM;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::reduce::sum_all;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    d: u32,
    _p: [u32; 2],
}

/// Scratch of the loss for n pairs.
pub struct SimSiam {
    n: usize,
    d: usize,
    terms: Tensor,
}

impl SimSiam {
    /// Buffers for n pairs of d features.
    pub fn new(gpu: &Gpu, n: usize, d: usize) -> Result<Self> {
        Ok(SimSiam {
            n,
            d,
            terms: gpu.tensor(&[n], DType::F32)?,
        })
    }

    /// Loss of predictions `p` = [p1; p2] against targets `z` = [z1; z2]
    /// (both 2n × d) with weights `w`; ∂L/∂p into `grad` (z gets none).
    pub fn forward_backward(
        &self,
        step: &mut Step,
        p: &Tensor,
        z: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        let (n, d) = (self.n, self.d);
        p.expect_len("simsiam p [2n, d]", 2 * n * d)?;
        z.expect_len("simsiam z [2n, d]", 2 * n * d)?;
        w.expect_len("simsiam weights", n)?;
        grad.expect_len("simsiam grad", 2 * n * d)?;
        let gpu = step.gpu();
        let defines = gpu.subgroup_defines();
        let k = gpu.kernel(&SIMSIAM, "simsiam_pairs", defines, &[])?;
        let params = Params {
            n: n as u32,
            d: d as u32,
            ..Zeroable::zeroed()
        };
        step.dispatch(&k, &params, &[p, z, w, grad, &self.terms], grid(n, 1))?;
        sum_all(step, &self.terms, 1.0, loss)
    }
}
