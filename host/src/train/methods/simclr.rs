//! SimCLR (Chen et al., 2020): a 2-layer projector with batch norm
//! (solo-learn's), the weighted NT-Xent over the 2n views
//! (`ops::simclr`, core `simclr`).

use scorecl_core::simclr::SimClrConfig;

use super::{bn, lin, Heads};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::MlpLayer::Relu;
use crate::ops::simclr::SimClr;
use crate::step::Step;
use crate::tensor::Tensor;
use crate::train::config::SimClrSection;

pub(super) fn heads(c: &SimClrSection, feat: usize) -> Heads {
    let (h, o) = (c.proj_hidden_dim, c.proj_output_dim);
    Heads {
        projector: vec![lin(feat, h, true), bn(h), Relu, lin(h, o, true)],
        predictor: None,
        out_dim: o,
    }
}

pub(super) struct Loss {
    op: SimClr,
    cfg: SimClrConfig,
}

impl Loss {
    pub(super) fn new(gpu: &Gpu, c: &SimClrSection, n: usize, d: usize) -> Result<Loss> {
        Ok(Loss {
            op: SimClr::new(gpu, n, d)?,
            cfg: SimClrConfig {
                temperature: c.temperature,
            },
        })
    }
}

impl super::SslLoss for Loss {
    fn forward_backward(
        &self,
        s: &mut Step,
        z: &Tensor,
        _p: Option<&Tensor>,
        w: &Tensor,
        dout: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        self.op.forward_backward(s, z, w, &self.cfg, dout, loss)
    }
}
