//! The layers every model here is built of: a 2-D convolution, a batch norm
//! and a linear layer. Each registers its parameters in a [`ParamStore`]
//! (PyTorch's names and order: `weight`, `bias`, then `running_mean`,
//! `running_var`, `num_batches_tracked`), draws its initial values, and
//! records its forward and backward through the kernels of [`crate::ops`];
//! a batch norm's saved statistics are its workspace ([`BnSaved`]).
//! ResNet (`nn/resnet.rs`), the MLP heads (`nn/mlp.rs`) and the score
//! network (`nn/score.rs`) are written with them, so a new model only says
//! how they connect.

use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::params::ParamStore;
use crate::ops::batchnorm::{self, BnSpec, BnTensors};
use crate::ops::conv::{self, ConvScratch, ConvShape, DxAdd};
use crate::ops::linear::{linear, linear_backward, LinearShape};
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// Where a model's initial weights come from: parameter `i` of its store
/// draws from the core's Philox stream `(Init, domain << 40 | i)` of
/// `seed`, so the models of one run (domain 0 the encoder, 1 the heads, 2
/// the score network) never share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRng {
    /// The run's initialisation seed.
    pub seed: u64,
    /// The model's stream domain.
    pub domain: u64,
}

impl InitRng {
    fn stream(&self, store: &ParamStore) -> Philox {
        Philox::new(
            self.seed,
            stream_id(
                Purpose::Init,
                (self.domain << 40) | store.params.len() as u64,
            ),
        )
    }
}

/// How a convolution's weight starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInit {
    /// He normal with the fan-out: `kaiming_normal_(mode="fan_out",
    /// nonlinearity="relu")`, torchvision's ResNet.
    KaimingFanOut,
    /// He normal with the fan-in (the score network).
    KaimingFanIn,
    /// All zeros (the score network's output convolution).
    Zeros,
}

/// A 2-D convolution without bias: its weight `[cout, cin, k, k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv2d {
    w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub pad: usize,
}

impl Conv2d {
    /// Registers `{name}.weight` of a `k × k` convolution, `cin → cout`.
    /// `key` names the configuration key that sets its size, for the error
    /// when its initial values do not fit in host memory.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        (stride, pad): (usize, usize),
        init: ConvInit,
        rng: InitRng,
        key: &str,
    ) -> Result<Conv2d> {
        let len = cout * cin * k * k;
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|e| {
            Error::shape(
                key,
                format!(
                    "{name}.weight: {} bytes of host memory: {e}",
                    4 * len as u128
                ),
            )
        })?;
        v.resize(len, 0.0f32);
        let fan = match init {
            ConvInit::KaimingFanOut => Some(cout * k * k),
            ConvInit::KaimingFanIn => Some(cin * k * k),
            ConvInit::Zeros => None,
        };
        if let Some(fan) = fan {
            rng.stream(store).fill_normal(0, &mut v);
            let std = (2.0 / fan as f32).sqrt();
            v.iter_mut().for_each(|x| *x *= std);
        }
        let w = store.param(gpu, &format!("{name}.weight"), &[cout, cin, k, k], &v)?;
        Ok(Conv2d {
            w,
            cin,
            cout,
            k,
            stride,
            pad,
        })
    }

    /// Its shape on a batch of n inputs of h × w.
    pub fn shape(&self, n: usize, h: usize, w: usize) -> ConvShape {
        ConvShape {
            n,
            cin: self.cin,
            h,
            w,
            cout: self.cout,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        }
    }

    /// Records `y = conv(x)` for n inputs of h × w; returns the shape.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        x: &Tensor,
        (n, h, w): (usize, usize, usize),
        scratch: &ConvScratch,
        y: &Tensor,
    ) -> Result<ConvShape> {
        let s = self.shape(n, h, w);
        conv::conv2d(step, x, &store.params[self.w].value, &s, scratch, y)?;
        Ok(s)
    }

    /// Records the backward for `dy` after [`Conv2d::forward`] of `x`: the
    /// weight's gradient accumulates, the input gradient is written to
    /// `dx` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        x: &Tensor,
        dy: &Tensor,
        nhw: (usize, usize, usize),
        scratch: &ConvScratch,
        dx: Option<&Tensor>,
    ) -> Result<()> {
        self.backward_add(step, store, x, dy, nhw, scratch, dx, DxAdd::None)
    }

    /// [`Conv2d::backward`] with `add` fused into the input gradient (a
    /// residual's gradient, or one through a ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_add(
        &self,
        step: &mut Step,
        store: &ParamStore,
        x: &Tensor,
        dy: &Tensor,
        (n, h, w): (usize, usize, usize),
        scratch: &ConvScratch,
        dx: Option<&Tensor>,
        add: DxAdd<'_>,
    ) -> Result<()> {
        let p = &store.params[self.w];
        let s = self.shape(n, h, w);
        conv::conv2d_backward_add(step, x, &p.value, dy, &s, scratch, &p.grad, dx, add)
    }
}

/// A batch norm over `[n, c, hw]` (BatchNorm2d; BatchNorm1d with hw = 1):
/// PyTorch's eps 1e-5 and momentum 0.1, affine or not.
pub struct BatchNorm {
    gamma: Option<usize>,
    beta: Option<usize>,
    rm: usize,
    rv: usize,
    nbt: usize,
    /// Channels (features).
    pub c: usize,
    /// A non-affine layer's stand-ins for γ, β and their gradients (ones,
    /// zeros and two unused buffers), so that the kernels take one form.
    consts: Option<Box<[Tensor; 4]>>,
}

/// What a batch norm's forward keeps for its backward: the batch mean,
/// 1/sqrt(var + eps) and the backward's per-channel sums.
pub struct BnSaved {
    mean: Tensor,
    invstd: Tensor,
    sums: Tensor,
}

impl BatchNorm {
    /// Registers `{name}.weight` and `.bias` (when `affine`; 1 and 0), then
    /// `.running_mean` (0), `.running_var` (1) and `.num_batches_tracked`.
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        name: &str,
        c: usize,
        affine: bool,
    ) -> Result<BatchNorm> {
        let (gamma, beta, consts) = if affine {
            (
                Some(store.param(gpu, &format!("{name}.weight"), &[c], &vec![1.0; c])?),
                Some(store.param(gpu, &format!("{name}.bias"), &[c], &vec![0.0; c])?),
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
        Ok(BatchNorm {
            gamma,
            beta,
            rm: store.state(gpu, &format!("{name}.running_mean"), &[c], &vec![0.0; c])?,
            rv: store.state(gpu, &format!("{name}.running_var"), &[c], &vec![1.0; c])?,
            nbt: store.counter(&format!("{name}.num_batches_tracked")),
            c,
            consts,
        })
    }

    /// Buffers for its saved statistics.
    pub fn saved(&self, gpu: &Gpu) -> Result<BnSaved> {
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        Ok(BnSaved {
            mean: t(self.c)?,
            invstd: t(self.c)?,
            sums: t(2 * self.c)?,
        })
    }

    fn affine(&self) -> bool {
        self.gamma.is_some()
    }

    /// γ, β (or the stand-ins), and with `grad` their gradients.
    fn pair<'a>(&'a self, store: &'a ParamStore, grad: bool) -> [&'a Tensor; 2] {
        match (self.gamma, self.beta, &self.consts) {
            (Some(g), Some(b), _) => {
                let pick = |i: usize| {
                    let p = &store.params[i];
                    if grad {
                        &p.grad
                    } else {
                        &p.value
                    }
                };
                [pick(g), pick(b)]
            }
            (_, _, Some(c)) => {
                let k = if grad { 2 } else { 0 };
                [&c[k], &c[k + 1]]
            }
            _ => unreachable!("a non-affine batch norm holds its constants"),
        }
    }

    fn tensors<'a>(&'a self, store: &'a ParamStore, saved: &'a BnSaved) -> BnTensors<'a> {
        let [gamma, beta] = self.pair(store, false);
        BnTensors {
            gamma,
            beta,
            running_mean: &store.states[self.rm].value,
            running_var: &store.states[self.rv].value,
            mean: &saved.mean,
            invstd: &saved.invstd,
        }
    }

    fn spec(&self, n: usize, hw: usize) -> BnSpec {
        BnSpec {
            affine: self.affine(),
            ..BnSpec::new(n, self.c, hw)
        }
    }

    /// Records `y = bn(x)` (ReLU fused when `relu`); in training, with the
    /// batch statistics, the running statistics updated and
    /// `num_batches_tracked` counted.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        saved: &BnSaved,
        x: &Tensor,
        (n, hw): (usize, usize),
        training: bool,
        relu: bool,
        y: &Tensor,
    ) -> Result<()> {
        let spec = BnSpec {
            training,
            relu,
            ..self.spec(n, hw)
        };
        batchnorm::forward(step, x, &self.tensors(store, saved), &spec, y)?;
        self.count(store, training);
        Ok(())
    }

    /// Records `y = relu(bn(x) + shortcut)` in one pass (a residual
    /// block's end).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_add_relu(
        &self,
        step: &mut Step,
        store: &ParamStore,
        saved: &BnSaved,
        x: &Tensor,
        (n, hw): (usize, usize),
        training: bool,
        shortcut: &Tensor,
        y: &Tensor,
    ) -> Result<()> {
        let spec = BnSpec {
            training,
            relu: true,
            ..self.spec(n, hw)
        };
        let t = self.tensors(store, saved);
        batchnorm::forward_add(step, x, &t, &spec, shortcut, y)?;
        self.count(store, training);
        Ok(())
    }

    fn count(&self, store: &ParamStore, training: bool) {
        if training {
            store.tick(self.nbt);
        }
    }

    /// Records the backward for `dy` after a training forward of `x`: γ's
    /// and β's gradients accumulate, `dx` is written. With `relu_out` (the
    /// output of a ReLU that followed this batch norm, fused or not) the
    /// ReLU's backward is read in the same pass.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        saved: &BnSaved,
        x: &Tensor,
        dy: &Tensor,
        relu_out: Option<&Tensor>,
        (n, hw): (usize, usize),
        dx: &Tensor,
    ) -> Result<()> {
        let spec = self.spec(n, hw);
        let t = self.tensors(store, saved);
        let [dg, db] = self.pair(store, true);
        match relu_out {
            Some(y) => batchnorm::backward_relu(step, x, dy, y, &t, &spec, &saved.sums, dg, db, dx),
            None => batchnorm::backward(step, x, dy, &t, &spec, &saved.sums, dg, db, dx),
        }
    }
}

/// A linear layer `y = x·Wᵀ + b` on `[n, fan_in]` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linear {
    w: usize,
    b: Option<usize>,
    /// Input features.
    pub fan_in: usize,
    /// Output features.
    pub fan_out: usize,
}

impl Linear {
    /// Registers `{name}.weight` (and `.bias`) initialised as PyTorch's
    /// `nn.Linear` (uniform ±1/√fan_in for both), from one stream: the
    /// weight's values, then the bias's.
    pub fn new(
        gpu: &Gpu,
        store: &mut ParamStore,
        name: &str,
        (fan_in, fan_out): (usize, usize),
        bias: bool,
        rng: InitRng,
    ) -> Result<Linear> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut u = vec![0.0f32; fan_out * fan_in + fan_out];
        rng.stream(store).fill_uniform(0, &mut u);
        u.iter_mut().for_each(|v| *v = (2.0 * *v - 1.0) * bound);
        let (w, b) = u.split_at(fan_out * fan_in);
        Self::with_values(gpu, store, name, (fan_in, fan_out), w, bias.then_some(b))
    }

    /// Registers `{name}.weight` (and `.bias`) with the given values.
    pub fn with_values(
        gpu: &Gpu,
        store: &mut ParamStore,
        name: &str,
        (fan_in, fan_out): (usize, usize),
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Linear> {
        let w = store.param(gpu, &format!("{name}.weight"), &[fan_out, fan_in], weight)?;
        let b = bias
            .map(|b| store.param(gpu, &format!("{name}.bias"), &[fan_out], b))
            .transpose()?;
        Ok(Linear {
            w,
            b,
            fan_in,
            fan_out,
        })
    }

    fn shape(&self, n: usize) -> LinearShape {
        LinearShape {
            n,
            fan_in: self.fan_in,
            fan_out: self.fan_out,
        }
    }

    /// Records `y = x·Wᵀ + b` for n rows.
    pub fn forward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        x: &Tensor,
        n: usize,
        y: &Tensor,
    ) -> Result<()> {
        let w = &store.params[self.w].value;
        let b = self.b.map(|b| &store.params[b].value);
        linear(step, x, w, b, &self.shape(n), false, y)
    }

    /// Records the backward for `dy`: the weight's (and bias's) gradients
    /// accumulate, the input gradient is written to `dx` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        step: &mut Step,
        store: &ParamStore,
        x: &Tensor,
        dy: &Tensor,
        n: usize,
        dx: Option<&Tensor>,
    ) -> Result<()> {
        let p = &store.params[self.w];
        let db = self.b.map(|b| &store.params[b].grad);
        linear_backward(step, x, &p.value, dy, &self.shape(n), &p.grad, db, dx)
    }
}
