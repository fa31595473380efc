//! What the trainer, evaluation (k-NN, linear probe), compare and the
//! benchmarks need of an encoder: its parameters, the width of its pooled
//! features, workspaces, and the forward and backward passes. ResNet-18 and
//! ResNet-50 (`nn/resnet.rs`) implement it; a new architecture implements
//! it, adds a `model.arch` name (`train/config.rs`, [`Arch`]) and is trained,
//! checkpointed and evaluated by the code that exists.
//!
//! [`Arch`]: crate::train::Arch

use std::any::Any;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::params::ParamStore;
use crate::ops::conv::ConvPrecision;
use crate::step::Step;
use crate::tensor::Tensor;

/// An image encoder with explicit forward and backward passes.
pub trait Encoder: Send + Sync {
    /// Its parameters, running statistics and counters (torchvision's
    /// names: what `backbone.safetensors` holds).
    fn store(&self) -> &ParamStore;

    /// Dimension of the pooled features.
    fn feature_dim(&self) -> usize;

    /// Multiply-adds of one forward pass of one h × w image.
    fn macs_per_image(&self, h: usize, w: usize) -> usize;

    /// How its convolutions store their operands; taken by workspaces made
    /// after it is set (f32 by default).
    fn set_precision(&mut self, precision: ConvPrecision);

    /// Buffers for batches of n images of h × w; with `input_grad` the
    /// backward also writes the gradient with respect to the input.
    fn workspace(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        input_grad: bool,
    ) -> Result<EncoderWorkspace>;

    /// A workspace like `with` (same shape) whose gradient buffers are
    /// `with`'s: for a second pass whose backward runs after the first's
    /// has finished (the trainer's two views), so that only one set of
    /// gradient buffers exists. Its activations are its own. It must be
    /// dropped with or before `with`'s use ends (it does not own the shared
    /// buffers). By default, an independent workspace.
    fn workspace_sharing_gradients(
        &self,
        gpu: &Gpu,
        with: &EncoderWorkspace,
    ) -> Result<EncoderWorkspace> {
        self.workspace(gpu, with.n, with.h, with.w, with.dinput.is_some())
    }

    /// Records the forward pass of `x` (n × 3 × h × w, the workspace's
    /// shape) into `ws.features` (n × feature_dim). In training, batch
    /// statistics are used and the running statistics updated.
    fn forward(
        &self,
        step: &mut Step,
        ws: &EncoderWorkspace,
        x: &Tensor,
        training: bool,
    ) -> Result<()>;

    /// Records the backward pass for the feature gradient `dfeatures`
    /// (n × feature_dim) after a training [`Encoder::forward`] of `x`:
    /// parameter gradients accumulate (zero them first with
    /// [`ParamStore::zero_grads`]), the input gradient is written to
    /// `ws.dinput` if the workspace has one.
    fn backward(
        &self,
        step: &mut Step,
        ws: &EncoderWorkspace,
        x: &Tensor,
        dfeatures: &Tensor,
    ) -> Result<()>;

    /// [`Encoder::backward`], calling `done(step, params)` as soon as the
    /// gradients of the parameters `params` (indices into
    /// [`Encoder::store`]'s parameters) have received this pass's
    /// contribution: a data-parallel run starts their exchange there, while
    /// the rest of the backward pass runs. Every parameter is reported once,
    /// last layers first. By default, all of them after the whole pass.
    fn backward_notify<'s>(
        &self,
        step: &mut Step<'s>,
        ws: &EncoderWorkspace,
        x: &Tensor,
        dfeatures: &Tensor,
        done: &mut dyn FnMut(&mut Step<'s>, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        self.backward(step, ws, x, dfeatures)?;
        done(step, 0..self.store().params.len())
    }
}

/// An encoder's buffers for one batch shape: what every caller reads (the
/// features, the input gradient) and the model's own activations.
pub struct EncoderWorkspace {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// The features (n × feature_dim) of the last forward.
    pub features: Tensor,
    /// The input gradient of the last backward (when asked for).
    pub dinput: Option<Tensor>,
    precision: ConvPrecision,
    model: Box<dyn Any + Send + Sync>,
}

impl EncoderWorkspace {
    /// A workspace holding `model`, the encoder's own buffers.
    pub fn new(
        (n, h, w): (usize, usize, usize),
        features: Tensor,
        dinput: Option<Tensor>,
        precision: ConvPrecision,
        model: impl Any + Send + Sync,
    ) -> EncoderWorkspace {
        EncoderWorkspace {
            n,
            h,
            w,
            features,
            dinput,
            precision,
            model: Box::new(model),
        }
    }

    /// The convolutions' operand storage in effect (f32 where f16 was asked
    /// for but the device has no shader-f16).
    pub fn precision(&self) -> ConvPrecision {
        self.precision
    }

    /// The encoder's own buffers, or an error when another kind of encoder
    /// made this workspace.
    pub fn model<T: 'static>(&self) -> Result<&T> {
        self.model.downcast_ref::<T>().ok_or_else(|| {
            Error::shape(
                "encoder workspace",
                format!(
                    "made for another kind of encoder, not {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }
}
