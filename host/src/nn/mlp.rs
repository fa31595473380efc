//! Multi-layer perceptrons (projectors and predictors) as solo-learn builds
//! them with `nn.Sequential`: Linear, BatchNorm1d (affine or not) and ReLU
//! layers, named by their index (`projector.0.weight`,
//! `projector.1.running_mean`, …) so checkpoints match PyTorch's. Linear
//! layers are initialised as PyTorch's (uniform ±1/√fan_in for weight and
//! bias).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::layers::{BatchNorm, BnSaved, InitRng, Linear};
use crate::nn::params::ParamStore;
use crate::ops::elementwise;
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// One layer of an MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpLayer {
    /// `nn.Linear(fan_in, fan_out, bias)`.
    Linear {
        /// Input features.
        fan_in: usize,
        /// Output features.
        fan_out: usize,
        /// With a bias.
        bias: bool,
    },
    /// `nn.BatchNorm1d(features, affine)`.
    BatchNorm {
        /// Features.
        features: usize,
        /// With γ and β.
        affine: bool,
    },
    /// `nn.ReLU()`.
    Relu,
}

enum Layer {
    Linear(Linear),
    Bn(BatchNorm),
    Relu { dim: usize },
}

/// An MLP whose parameters live in a [`ParamStore`].
pub struct Mlp {
    layers: Vec<Layer>,
    in_dim: usize,
    out_dim: usize,
}

impl Mlp {
    /// Registers the layers under `prefix` in `store`; `seed` fixes the
    /// initial weights.
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        prefix: &str,
        spec: &[MlpLayer],
        seed: u64,
    ) -> Result<Mlp> {
        let rng = InitRng { seed, domain: 1 };
        let mut layers = Vec::new();
        let mut dim: Option<usize> = None;
        for (i, l) in spec.iter().enumerate() {
            let name = format!("{prefix}.{i}");
            let check = |d: usize, dim: Option<usize>| -> Result<()> {
                match dim {
                    Some(prev) if prev != d => Err(Error::shape(
                        prefix,
                        format!("layer {i} takes {d} features, gets {prev}"),
                    )),
                    _ => Ok(()),
                }
            };
            match *l {
                MlpLayer::Linear {
                    fan_in,
                    fan_out,
                    bias,
                } => {
                    check(fan_in, dim)?;
                    let lin = Linear::new(gpu, store, &name, (fan_in, fan_out), bias, rng)?;
                    layers.push(Layer::Linear(lin));
                    dim = Some(fan_out);
                }
                MlpLayer::BatchNorm {
                    features: c,
                    affine,
                } => {
                    check(c, dim)?;
                    layers.push(Layer::Bn(BatchNorm::new(gpu, store, &name, c, affine)?));
                }
                MlpLayer::Relu => {
                    let d =
                        dim.ok_or_else(|| Error::shape(prefix, "an MLP cannot start with a ReLU"))?;
                    layers.push(Layer::Relu { dim: d });
                }
            }
        }
        let first = match spec.first() {
            Some(MlpLayer::Linear { fan_in, .. }) => *fan_in,
            Some(MlpLayer::BatchNorm { features, .. }) => *features,
            _ => {
                return Err(Error::shape(
                    prefix,
                    "an MLP starts with a Linear or a BatchNorm layer",
                ))
            }
        };
        Ok(Mlp {
            layers,
            in_dim: first,
            out_dim: dim.unwrap_or(first),
        })
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn dims(&self) -> Vec<(usize, usize)> {
        let mut d = self.in_dim;
        self.layers
            .iter()
            .map(|l| {
                let out = match l {
                    Layer::Linear(lin) => lin.fan_out,
                    Layer::Bn(bn) => bn.c,
                    Layer::Relu { dim } => *dim,
                };
                let r = (d, out);
                d = out;
                r
            })
            .collect()
    }

    /// Buffers for batches of n rows.
    pub fn workspace(&self, gpu: &Gpu, n: usize) -> Result<MlpWorkspace> {
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        let dims = self.dims();
        Ok(MlpWorkspace {
            n,
            outs: dims.iter().map(|(_, o)| t(n * o)).collect::<Result<_>>()?,
            grads: dims.iter().map(|(i, _)| t(n * i)).collect::<Result<_>>()?,
            saved: self
                .layers
                .iter()
                .map(|l| match l {
                    Layer::Bn(bn) => bn.saved(gpu).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Records `ws.output() = mlp(x)` (x: n × in_dim).
    pub fn forward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        ws: &MlpWorkspace,
        x: &Tensor,
        training: bool,
    ) -> Result<()> {
        let n = ws.n;
        x.expect_len("mlp input", n * self.in_dim)?;
        for (i, l) in self.layers.iter().enumerate() {
            let input = if i == 0 { x } else { &ws.outs[i - 1] };
            let out = &ws.outs[i];
            match l {
                Layer::Linear(lin) => lin.forward(step, store, input, n, out)?,
                Layer::Bn(bn) => {
                    let saved = ws.saved[i].as_ref().expect("a batch norm's statistics");
                    bn.forward(step, store, saved, input, (n, 1), training, false, out)?
                }
                Layer::Relu { .. } => elementwise::relu(step, input, out)?,
            }
        }
        Ok(())
    }

    /// Records the backward for `dy` (n × out_dim) after a training
    /// [`Mlp::forward`] of `x`: parameter gradients accumulate in `store`,
    /// the input gradient lands in `ws.input_grad()`.
    pub fn backward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        ws: &MlpWorkspace,
        x: &Tensor,
        dy: &Tensor,
    ) -> Result<()> {
        let n = ws.n;
        dy.expect_len("mlp output gradient", n * self.out_dim)?;
        for (i, l) in self.layers.iter().enumerate().rev() {
            let input = if i == 0 { x } else { &ws.outs[i - 1] };
            let g_out = if i + 1 == self.layers.len() {
                dy
            } else {
                &ws.grads[i + 1]
            };
            let dx = &ws.grads[i];
            match l {
                Layer::Linear(lin) => lin.backward(step, store, input, g_out, n, Some(dx))?,
                Layer::Bn(bn) => {
                    let saved = ws.saved[i].as_ref().expect("a batch norm's statistics");
                    bn.backward(step, store, saved, input, g_out, None, (n, 1), dx)?
                }
                Layer::Relu { .. } => elementwise::relu_backward(step, &ws.outs[i], g_out, dx)?,
            }
        }
        Ok(())
    }
}

/// Activations and gradients of one batch size.
pub struct MlpWorkspace {
    /// Rows.
    pub n: usize,
    outs: Vec<Tensor>,
    grads: Vec<Tensor>,
    saved: Vec<Option<BnSaved>>,
}

impl MlpWorkspace {
    /// The output of the last forward.
    pub fn output(&self) -> &Tensor {
        self.outs.last().expect("an MLP has layers")
    }

    /// The input gradient of the last backward.
    pub fn input_grad(&self) -> &Tensor {
        &self.grads[0]
    }
}
