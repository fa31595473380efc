//! The parameter registry: every trainable tensor, running statistic and
//! counter of a model under a stable name (torchvision's state-dict names
//! for the encoder), in registration order.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::elementwise::fill;
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// A trainable tensor and its gradient.
pub struct Param {
    /// Stable name (`layer1.0.conv1.weight`).
    pub name: String,
    /// Shape as in PyTorch.
    pub shape: Vec<usize>,
    /// Current value.
    pub value: Tensor,
    /// Accumulated gradient.
    pub grad: Tensor,
    /// A bias or normalisation parameter (1-D): LARS excludes these from
    /// adaptation and weight decay.
    pub one_d: bool,
}

/// A non-trainable tensor that is part of the model's state (running
/// statistics).
pub struct State {
    /// Stable name (`bn1.running_mean`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Value.
    pub value: Tensor,
}

/// An integer in the state (`num_batches_tracked`), saved as an i64 scalar.
pub struct Counter {
    /// Stable name.
    pub name: String,
    /// Value.
    pub value: AtomicI64,
}

/// Parameters, states and counters of a model.
#[derive(Default)]
pub struct ParamStore {
    /// Trainable tensors, in registration order.
    pub params: Vec<Param>,
    /// Running statistics, in registration order.
    pub states: Vec<State>,
    /// Counters, in registration order.
    pub counters: Vec<Counter>,
}

impl ParamStore {
    /// Registers a parameter with its initial value; returns its index.
    pub fn param(&mut self, gpu: &Gpu, name: &str, shape: &[usize], init: &[f32]) -> Result<usize> {
        let value = gpu.upload(init, shape)?;
        let grad = gpu.zeros(shape)?;
        self.params.push(Param {
            name: name.to_string(),
            shape: shape.to_vec(),
            value,
            grad,
            one_d: shape.len() == 1,
        });
        Ok(self.params.len() - 1)
    }

    /// Registers a state tensor; returns its index.
    pub fn state(&mut self, gpu: &Gpu, name: &str, shape: &[usize], init: &[f32]) -> Result<usize> {
        self.states.push(State {
            name: name.to_string(),
            shape: shape.to_vec(),
            value: gpu.upload(init, shape)?,
        });
        Ok(self.states.len() - 1)
    }

    /// Registers a counter at 0; returns its index.
    pub fn counter(&mut self, name: &str) -> usize {
        self.counters.push(Counter {
            name: name.to_string(),
            value: AtomicI64::new(0),
        });
        self.counters.len() - 1
    }

    /// Adds one to counter `i`.
    pub fn tick(&self, i: usize) {
        self.counters[i].value.fetch_add(1, Ordering::Relaxed);
    }

    /// Records zeroing of every gradient.
    pub fn zero_grads(&self, step: &mut Step) -> Result<()> {
        self.params
            .iter()
            .try_for_each(|p| fill(step, 0.0, &p.grad))
    }

    /// Number of trainable scalars.
    pub fn numel(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// The parameter called `name`.
    pub fn find(&self, name: &str) -> Result<&Param> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::shape("parameter", format!("no parameter named `{name}`")))
    }

    /// The state tensor called `name`.
    pub fn find_state(&self, name: &str) -> Result<&State> {
        self.states
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::shape("state", format!("no state tensor named `{name}`")))
    }

    /// A tensor of zeros for an absent optional input (kept per store so
    /// that two of them never alias in one dispatch).
    pub fn placeholder(gpu: &Gpu, len: usize) -> Result<Tensor> {
        gpu.zeros(&[len.max(1)])
    }

    /// A u32 tensor (argmax indices).
    pub fn indices(gpu: &Gpu, len: usize) -> Result<Tensor> {
        gpu.tensor(&[len.max(1)], DType::U32)
    }
}
