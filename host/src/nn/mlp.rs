//! Multi-layer perceptrons (projectors and predictors) as solo-learn builds
//! them with `nn.Sequential`: Linear, BatchNorm1d (affine or not) and ReLU
//! layers, named by their index (`projector.0.weight`,
//! `projector.1.running_mean`, …) so checkpoints match PyTorch's. Linear
//! layers are initialised as PyTorch's (uniform ±1/√fan_in for weight and
//! bias).

use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::error::{GpuError, Result};
use crate::gpu::Gpu;
use crate::nn::params::ParamStore;
use crate::ops::batchnorm::{self, BnSpec, BnTensors};
use crate::ops::elementwise;
use crate::ops::linear::{linear, linear_backward, LinearShape};
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
    Linear {
        w: usize,
        b: Option<usize>,
        shape: (usize, usize),
    },
    Bn {
        gamma: Option<usize>,
        beta: Option<usize>,
        rm: usize,
        rv: usize,
        nbt: usize,
        c: usize,
        consts: Option<Box<[Tensor; 4]>>,
    },
    Relu {
        dim: usize,
    },
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
        let mut layers = Vec::new();
        let mut dim: Option<usize> = None;
        for (i, l) in spec.iter().enumerate() {
            let name = |s: &str| format!("{prefix}.{i}.{s}");
            let check = |d: usize, dim: Option<usize>| -> Result<()> {
                match dim {
                    Some(prev) if prev != d => Err(GpuError::shape(
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
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let rng = Philox::new(
                        seed,
                        stream_id(Purpose::Init, (1 << 40) | store.params.len() as u64),
                    );
                    let mut u = vec![0.0f32; fan_out * fan_in + fan_out];
                    rng.fill_uniform(0, &mut u);
                    let u: Vec<f32> = u.iter().map(|v| (2.0 * v - 1.0) * bound).collect();
                    let w = store.param(
                        gpu,
                        &name("weight"),
                        &[fan_out, fan_in],
                        &u[..fan_out * fan_in],
                    )?;
                    let b = if bias {
                        Some(store.param(gpu, &name("bias"), &[fan_out], &u[fan_out * fan_in..])?)
                    } else {
                        None
                    };
                    layers.push(Layer::Linear {
                        w,
                        b,
                        shape: (fan_in, fan_out),
                    });
                    dim = Some(fan_out);
                }
                MlpLayer::BatchNorm {
                    features: c,
                    affine,
                } => {
                    check(c, dim)?;
                    let (gamma, beta, consts) = if affine {
                        (
                            Some(store.param(gpu, &name("weight"), &[c], &vec![1.0; c])?),
                            Some(store.param(gpu, &name("bias"), &[c], &vec![0.0; c])?),
                            None,
                        )
                    } else {
                        let t = |v: f32| gpu.upload(&vec![v; c], &[c]);
                        (
                            None,
                            None,
                            Some(Box::new([t(1.0)?, t(0.0)?, t(0.0)?, t(0.0)?])),
                        )
                    };
                    let rm = store.state(gpu, &name("running_mean"), &[c], &vec![0.0; c])?;
                    let rv = store.state(gpu, &name("running_var"), &[c], &vec![1.0; c])?;
                    let nbt = store.counter(&name("num_batches_tracked"));
                    layers.push(Layer::Bn {
                        gamma,
                        beta,
                        rm,
                        rv,
                        nbt,
                        c,
                        consts,
                    });
                }
                MlpLayer::Relu => {
                    let d = dim.ok_or_else(|| {
                        GpuError::shape(prefix, "an MLP cannot start with a ReLU")
                    })?;
                    layers.push(Layer::Relu { dim: d });
                }
            }
        }
        let first = match spec.first() {
            Some(MlpLayer::Linear { fan_in, .. }) => *fan_in,
            Some(MlpLayer::BatchNorm { features, .. }) => *features,
            _ => {
                return Err(GpuError::shape(
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
                    Layer::Linear { shape, .. } => shape.1,
                    Layer::Bn { c, .. } => *c,
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
                    Layer::Bn { c, .. } => Ok(Some([t(*c)?, t(*c)?, t(2 * c)?])),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?,
        })
    }

    fn bn<'a>(
        &'a self,
        store: &'a ParamStore,
        l: &'a Layer,
        saved: &'a [Tensor; 3],
    ) -> (BnTensors<'a>, [&'a Tensor; 2], bool) {
        let Layer::Bn {
            gamma,
            beta,
            rm,
            rv,
            consts,
            ..
        } = l
        else {
            unreachable!("a batch-norm layer")
        };
        let p = |i: &Option<usize>, k: usize, grad: bool| -> &'a Tensor {
            match (i, consts) {
                (Some(i), _) => {
                    if grad {
                        &store.params[*i].grad
                    } else {
                        &store.params[*i].value
                    }
                }
                (None, Some(c)) => &c[k],
                (None, None) => unreachable!("non-affine layers hold constants"),
            }
        };
        let t = BnTensors {
            gamma: p(gamma, 0, false),
            beta: p(beta, 1, false),
            running_mean: &store.states[*rm].value,
            running_var: &store.states[*rv].value,
            mean: &saved[0],
            invstd: &saved[1],
        };
        (t, [p(gamma, 2, true), p(beta, 3, true)], gamma.is_some())
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
            match l {
                Layer::Linear { w, b, shape } => {
                    let s = LinearShape {
                        n,
                        fan_in: shape.0,
                        fan_out: shape.1,
                    };
                    linear(
                        step,
                        input,
                        &store.params[*w].value,
                        b.map(|b| &store.params[b].value),
                        &s,
                        false,
                        &ws.outs[i],
                    )?;
                }
                Layer::Bn { c, nbt, .. } => {
                    let (t, _, affine) = self.bn(store, l, ws.saved[i].as_ref().unwrap());
                    let spec = BnSpec {
                        training,
                        affine,
                        ..BnSpec::new(n, *c, 1)
                    };
                    batchnorm::forward(step, input, &t, &spec, &ws.outs[i])?;
                    if training {
                        store.tick(*nbt);
                    }
                }
                Layer::Relu { .. } => elementwise::relu(step, input, &ws.outs[i])?,
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
            match l {
                Layer::Linear { w, b, shape } => {
                    let s = LinearShape {
                        n,
                        fan_in: shape.0,
                        fan_out: shape.1,
                    };
                    let (p, bias) = (&store.params[*w], b.map(|b| &store.params[b].grad));
                    linear_backward(
                        step,
                        input,
                        &p.value,
                        g_out,
                        &s,
                        &p.grad,
                        bias,
                        Some(&ws.grads[i]),
                    )?;
                }
                Layer::Bn { c, .. } => {
                    let saved = ws.saved[i].as_ref().unwrap();
                    let (t, [dg, db], affine) = self.bn(store, l, saved);
                    let spec = BnSpec {
                        affine,
                        ..BnSpec::new(n, *c, 1)
                    };
                    batchnorm::backward(
                        step,
                        input,
                        g_out,
                        &t,
                        &spec,
                        &saved[2],
                        dg,
                        db,
                        &ws.grads[i],
                    )?;
                }
                Layer::Relu { .. } => {
                    elementwise::relu_backward(step, &ws.outs[i], g_out, &ws.grads[i])?
                }
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
    saved: Vec<Option<[Tensor; 3]>>,
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
