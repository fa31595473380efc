//! W-MSE (Ermolov et al., 2021): a 2-layer projector, the views whitened
//! per sub-batch of `w_size` by a Cholesky factor, and the weighted MSE of
//! the whitened pairs (`ops::wmse`, core `wmse`). A sub-batch whose
//! covariance is not positive definite fails the step, naming it.

use scorecl_core::wmse::WmseConfig;

use super::{bn, lin, Heads};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::MlpLayer::Relu;
use crate::ops::wmse::Wmse;
use crate::step::{Readbacks, Step};
use crate::tensor::Tensor;
use crate::train::config::WmseSection;
use crate::train::TrainResult;

pub(super) fn heads(c: &WmseSection, feat: usize) -> Heads {
    let (h, o) = (c.proj_hidden_dim, c.proj_output_dim);
    Heads {
        projector: vec![lin(feat, h, true), bn(h), Relu, lin(h, o, true)],
        predictor: None,
        out_dim: o,
    }
}

pub(super) struct Loss {
    op: Wmse,
    cfg: WmseConfig,
}

impl Loss {
    pub(super) fn new(gpu: &Gpu, c: &WmseSection, n: usize, d: usize) -> Result<Loss> {
        Ok(Loss {
            op: Wmse::new(gpu, n, d, c.w_size)?,
            cfg: WmseConfig {
                eps: c.eps,
                w_size: c.w_size,
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

    fn readbacks(&self, s: &mut Step) -> Vec<usize> {
        vec![s.readback(&self.op.status)]
    }

    fn check(&self, r: &Readbacks, ids: &[usize]) -> TrainResult<()> {
        for &i in ids {
            self.op.check(&r.u32(i))?;
        }
        Ok(())
    }
}
