//! The self-supervised methods, one file each: its heads (projector, and a
//! predictor with its learning-rate policy) and its weighted loss on the
//! two views' head outputs, with the gradient the backward pass starts
//! from. The trainer (`train/trainer.rs`) keeps only the step's order.
//!
//! A new method is one file here (heads + an [`SslLoss`]), an arm in
//! [`heads`] and [`loss`], its `Method` variant and `[section]` in
//! `train/config.rs`. A method with an EMA target (BYOL, MoCo) keeps the
//! target in its loss object and updates it in [`SslLoss::after_update`].

mod simclr;
mod simsiam;
mod vicreg;
mod wmse;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::nn::MlpLayer;
use crate::step::{Readbacks, Step};
use crate::tensor::Tensor;
use crate::train::config::{Method, TrainConfig};
use crate::train::TrainResult;

/// How a parameter group's learning rate follows the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LrPolicy {
    /// Warm-up then cosine (the schedule's rate at the step).
    Schedule,
    /// The schedule's base rate throughout (SimSiam's predictor, as the
    /// paper and solo-learn's `fixed_lr` predictor).
    Constant,
}

/// A method's heads on top of the encoder's features.
pub(crate) struct Heads {
    /// The projector's layers (`projector.*`).
    pub(crate) projector: Vec<MlpLayer>,
    /// The predictor's layers (`predictor.*`), on the projector's output,
    /// and its learning-rate policy.
    pub(crate) predictor: Option<(Vec<MlpLayer>, LrPolicy)>,
    /// The width of the projector's (and predictor's) output.
    pub(crate) out_dim: usize,
}

impl Heads {
    /// Every layer, the projector's then the predictor's (for the size
    /// checks before allocation).
    pub(crate) fn layers(&self) -> Vec<MlpLayer> {
        let pred = self.predictor.iter().flat_map(|(l, _)| l.iter().cloned());
        self.projector.iter().cloned().chain(pred).collect()
    }
}

/// A linear layer.
pub(crate) fn lin(fan_in: usize, fan_out: usize, bias: bool) -> MlpLayer {
    MlpLayer::Linear {
        fan_in,
        fan_out,
        bias,
    }
}

/// A batch norm with its affine parameters.
pub(crate) fn bn(features: usize) -> MlpLayer {
    MlpLayer::BatchNorm {
        features,
        affine: true,
    }
}

/// A method's weighted loss on the heads' outputs of a batch of `n` pairs.
pub(crate) trait SslLoss {
    /// Records the loss and its gradient. `z`: the projector's outputs,
    /// the two views stacked (2n × d); `p`: the predictor's, for a method
    /// with one; `w`: the pair (n) or view (2n) weights, constants.
    /// Writes `loss` (one value) and `dout`, the gradient with respect to
    /// the last head's output (`p` with a predictor, else `z`; 2n × d).
    #[allow(clippy::too_many_arguments)]
    fn forward_backward(
        &self,
        s: &mut Step,
        z: &Tensor,
        p: Option<&Tensor>,
        w: &Tensor,
        dout: &Tensor,
        loss: &Tensor,
    ) -> Result<()>;

    /// Records the readbacks [`check`](Self::check) needs after the step
    /// (W-MSE's Cholesky status).
    fn readbacks(&self, _s: &mut Step) -> Vec<usize> {
        Vec::new()
    }

    /// Checks what [`readbacks`](Self::readbacks) read, once the step ran.
    fn check(&self, _r: &Readbacks, _ids: &[usize]) -> TrainResult<()> {
        Ok(())
    }

    /// Records what follows the optimizer's update (an EMA target's
    /// update); nothing for the four methods here.
    fn after_update(&self, _s: &mut Step) -> Result<()> {
        Ok(())
    }
}

/// The heads of `cfg`'s method on `feat` encoder features.
pub(crate) fn heads(cfg: &TrainConfig, feat: usize) -> Heads {
    match cfg.method {
        Method::Simclr => simclr::heads(&cfg.simclr, feat),
        Method::Simsiam => simsiam::heads(&cfg.simsiam, feat),
        Method::Wmse => wmse::heads(&cfg.wmse, feat),
        Method::Vicreg => vicreg::heads(&cfg.vicreg, feat),
    }
}

/// The loss of `cfg`'s method for batches of `n` pairs of `d`-wide outputs.
pub(crate) fn loss(gpu: &Gpu, cfg: &TrainConfig, n: usize, d: usize) -> Result<Box<dyn SslLoss>> {
    Ok(match cfg.method {
        Method::Simclr => Box::new(simclr::Loss::new(gpu, &cfg.simclr, n, d)?),
        Method::Simsiam => Box::new(simsiam::Loss::new(gpu, n, d)?),
        Method::Wmse => Box::new(wmse::Loss::new(gpu, &cfg.wmse, n, d)?),
        Method::Vicreg => Box::new(vicreg::Loss::new(gpu, &cfg.vicreg, n, d)?),
    })
}
