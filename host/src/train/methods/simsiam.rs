//! SimSiam (Chen & He, 2021): a 3-layer projector ending in a batch norm
//! without affine parameters, a bottleneck predictor at a constant
//! learning rate, and the weighted symmetric negative cosine between each
//! view's prediction and the other view's projection with a stop-gradient
//! (`ops::simsiam`, core `simsiam`): the gradient reaches the projector
//! only through the predictor.

use super::{bn, lin, Heads, LrPolicy};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::MlpLayer::{self, Relu};
use crate::ops::simsiam::SimSiam;
use crate::step::Step;
use crate::tensor::Tensor;
use crate::train::config::SimSiamSection;

pub(super) fn heads(c: &SimSiamSection, feat: usize) -> Heads {
    let (h, o, ph) = (c.proj_hidden_dim, c.proj_output_dim, c.pred_hidden_dim);
    Heads {
        projector: vec![
            lin(feat, h, false),
            bn(h),
            Relu,
            lin(h, h, false),
            bn(h),
            Relu,
            lin(h, o, true),
            MlpLayer::BatchNorm {
                features: o,
                affine: false,
            },
        ],
        predictor: Some((
            vec![lin(o, ph, false), bn(ph), Relu, lin(ph, o, true)],
            LrPolicy::Constant,
        )),
        out_dim: o,
    }
}

pub(super) struct Loss {
    op: SimSiam,
}

impl Loss {
    pub(super) fn new(gpu: &Gpu, n: usize, d: usize) -> Result<Loss> {
        Ok(Loss {
            op: SimSiam::new(gpu, n, d)?,
        })
    }
}

impl super::SslLoss for Loss {
    fn forward_backward(
        &self,
        s: &mut Step,
        z: &Tensor,
        p: Option<&Tensor>,
        w: &Tensor,
        dout: &Tensor,
        loss: &Tensor,
    ) -> Result<()> {
        let p = p.ok_or_else(|| Error::shape("simsiam", "no predictor output"))?;
        self.op.forward_backward(s, p, z, w, dout, loss)
    }
}
