//! VICReg (Bardes et al., 2022): a 3-layer projector, and the weighted
//! invariance term with the variance and covariance terms of each view's
//! batch (`ops::vicreg`, core `vicreg`).

use scorecl_core::vicreg::VicRegConfig;

use super::{bn, lin, Heads};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::MlpLayer::Relu;
use crate::ops::vicreg::VicReg;
use crate::step::Step;
use crate::tensor::Tensor;
use crate::train::config::VicRegSection;

pub(super) fn heads(c: &VicRegSection, feat: usize) -> Heads {
    let (h, o) = (c.proj_hidden_dim, c.proj_output_dim);
    Heads {
        projector: vec![
            lin(feat, h, true),
            bn(h),
            Relu,
            lin(h, h, true),
            bn(h),
            Relu,
            lin(h, o, true),
        ],
        predictor: None,
        out_dim: o,
    }
}

pub(super) struct Loss {
    op: VicReg,
    cfg: VicRegConfig,
}

impl Loss {
    pub(super) fn new(gpu: &Gpu, c: &VicRegSection, n: usize, d: usize) -> Result<Loss> {
        Ok(Loss {
            op: VicReg::new(gpu, n, d)?,
            cfg: VicRegConfig {
                sim_coeff: c.sim_coeff,
                std_coeff: c.std_coeff,
                cov_coeff: c.cov_coeff,
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
