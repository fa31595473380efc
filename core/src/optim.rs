//! Optimizer and learning-rate rules as per-element functions, the form
//! the WGSL update kernels mirror. Semantics are PyTorch's (`torch.optim.SGD`,
//! `Adam`, `AdamW`) and solo-learn's LARS; the slice helpers apply a rule to
//! a whole parameter tensor.
//!
//! Every rule is written in f32 in PyTorch's order of operations.

use crate::math::{check_len, non_negative, positive};
use crate::{CoreError, Result};

/// `torch.optim.SGD` settings (PyTorch defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SgdConfig {
    /// Momentum factor (0).
    pub momentum: f32,
    /// Dampening of the momentum (0).
    pub dampening: f32,
    /// L2 penalty added to the gradient (0).
    pub weight_decay: f32,
    /// Nesterov momentum (false).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        non_negative("momentum", self.momentum)?;
        non_negative("dampening", self.dampening)?;
        non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(CoreError::Config {
                field: "nesterov",
                allowed: "only with momentum > 0 and dampening = 0",
            });
        }
        Ok(())
    }
}

/// The momentum part shared by SGD and LARS, on an already decayed (and for
/// LARS, scaled) gradient `d_p`. Returns `(new param, new buffer)`.
#[inline]
fn momentum_apply(p: f32, d_p: f32, buf: f32, lr: f32, cfg: &SgdConfig, first: bool) -> (f32, f32) {
    if cfg.momentum == 0.0 {
        return (p - lr * d_p, buf);
    }
    let buf = if first {
        d_p
    } else {
        buf * cfg.momentum + (1.0 - cfg.dampening) * d_p
    };
    let step = if cfg.nesterov {
        d_p + cfg.momentum * buf
    } else {
        buf
    };
    (p - lr * step, buf)
}

/// One SGD update of one element: returns `(param, momentum buffer)`.
/// `first` marks the first step, where PyTorch sets the buffer to the
/// gradient itself.
#[inline]
pub fn sgd_update(p: f32, g: f32, buf: f32, lr: f32, cfg: &SgdConfig, first: bool) -> (f32, f32) {
    let d_p = g + cfg.weight_decay * p;
    momentum_apply(p, d_p, buf, lr, cfg, first)
}

/// SGD on a whole tensor.
pub fn sgd_step(
    params: &mut [f32],
    grads: &[f32],
    bufs: &mut [f32],
    lr: f32,
    cfg: &SgdConfig,
    first: bool,
) -> Result<()> {
    cfg.validate()?;
    check_len("grads", grads.len(), params.len())?;
    check_len("momentum buffers", bufs.len(), params.len())?;
    for ((p, g), b) in params.iter_mut().zip(grads).zip(bufs.iter_mut()) {
        (*p, *b) = sgd_update(*p, *g, *b, lr, cfg, first);
    }
    Ok(())
}

/// LARS settings. Defaults are those of solo-learn's CIFAR presets
/// (momentum 0.9, η 0.02, clipped, biases and norm parameters excluded).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct LarsConfig {
    /// Momentum factor (0.9).
    pub momentum: f32,
    /// Dampening (0).
    pub dampening: f32,
    /// L2 penalty, applied only to adapted tensors (0).
    pub weight_decay: f32,
    /// Nesterov momentum (false).
    pub nesterov: bool,
    /// Trust coefficient η (0.02).
    pub eta: f32,
    /// Denominator epsilon (1e-8).
    pub eps: f32,
    /// `clip_lars_lr`: scale by `min(trust/lr, 1)` instead of `trust` (true).
    pub clip_lr: bool,
    /// `exclude_bias_n_norm_lars`: 1-D tensors (biases, norm affine
    /// parameters) get neither adaptation nor decay (true).
    pub exclude_bias_n_norm: bool,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig {
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            eta: 0.02,
            eps: 1e-8,
            clip_lr: true,
            exclude_bias_n_norm: true,
        }
    }
}

impl LarsConfig {
    /// The SGD part of LARS (momentum, dampening, decay, Nesterov).
    pub fn sgd(&self) -> SgdConfig {
        SgdConfig {
            momentum: self.momentum,
            dampening: self.dampening,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.sgd().validate()?;
        positive("eta", self.eta)?;
        non_negative("eps", self.eps)
    }
}

/// The LARS factor of one tensor from its norms: `None` where the tensor is
/// not adapted (excluded 1-D tensor, or a zero norm); otherwise
/// `η ‖p‖ / (‖g‖ + wd ‖p‖ + eps)`, clipped to `min(·/lr, 1)` if asked.
pub fn lars_factor(
    p_norm: f32,
    g_norm: f32,
    lr: f32,
    cfg: &LarsConfig,
    is_1d: bool,
) -> Option<f32> {
    if is_1d && cfg.exclude_bias_n_norm {
        return None;
    }
    if p_norm == 0.0 || g_norm == 0.0 {
        return None;
    }
    let mut f = p_norm / (g_norm + p_norm * cfg.weight_decay + cfg.eps);
    f *= cfg.eta;
    if cfg.clip_lr {
        f = (f / lr).min(1.0);
    }
    Some(f)
}

/// One LARS update of one element given the tensor's factor.
#[inline]
pub fn lars_update(
    p: f32,
    g: f32,
    buf: f32,
    lr: f32,
    factor: Option<f32>,
    cfg: &LarsConfig,
    first: bool,
) -> (f32, f32) {
    let d_p = match factor {
        Some(f) => (g + cfg.weight_decay * p) * f,
        None => g,
    };
    momentum_apply(p, d_p, buf, lr, &cfg.sgd(), first)
}

/// LARS on a whole tensor (`is_1d`: a bias or norm parameter).
pub fn lars_step(
    params: &mut [f32],
    grads: &[f32],
    bufs: &mut [f32],
    lr: f32,
    cfg: &LarsConfig,
    is_1d: bool,
    first: bool,
) -> Result<()> {
    cfg.validate()?;
    check_len("grads", grads.len(), params.len())?;
    check_len("momentum buffers", bufs.len(), params.len())?;
    let norm = |v: &[f32]| libm::sqrt(v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>()) as f32;
    let factor = lars_factor(norm(params), norm(grads), lr, cfg, is_1d);
    for ((p, g), b) in params.iter_mut().zip(grads).zip(bufs.iter_mut()) {
        (*p, *b) = lars_update(*p, *g, *b, lr, factor, cfg, first);
    }
    Ok(())
}

/// Adam / AdamW settings (PyTorch defaults; `decoupled` selects AdamW, whose
/// PyTorch default weight decay is 0.01).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AdamConfig {
    /// β₁ (0.9).
    pub beta1: f32,
    /// β₂ (0.999).
    pub beta2: f32,
    /// ε (1e-8).
    pub eps: f32,
    /// Weight decay: L2 on the gradient (Adam) or decoupled (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled decay.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamConfig {
    /// AdamW with PyTorch's defaults.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(CoreError::Config {
                    field,
                    allowed: "a value in [0, 1)",
                });
            }
        }
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)
    }
}

/// The per-step scalars of Adam, computed once per step (1-based `step`):
/// `step_size = lr / (1 − β₁^t)`, `bc2_sqrt = sqrt(1 − β₂^t)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate of this step.
    pub lr: f32,
    /// `lr / bias_correction1`.
    pub step_size: f32,
    /// `sqrt(bias_correction2)`.
    pub bc2_sqrt: f32,
}

impl AdamStep {
    /// Scalars for step `step` (1-based) at learning rate `lr`.
    pub fn new(lr: f32, step: u32, cfg: &AdamConfig) -> Self {
        let t = step.max(1) as f64;
        let bc1 = 1.0 - libm::pow(cfg.beta1 as f64, t);
        let bc2 = 1.0 - libm::pow(cfg.beta2 as f64, t);
        AdamStep {
            lr,
            step_size: (lr as f64 / bc1) as f32,
            bc2_sqrt: libm::sqrt(bc2) as f32,
        }
    }
}

/// One Adam/AdamW update of one element: returns `(param, m, v)`.
#[inline]
pub fn adam_update(
    p: f32,
    g: f32,
    m: f32,
    v: f32,
    s: &AdamStep,
    cfg: &AdamConfig,
) -> (f32, f32, f32) {
    let (p, g) = if cfg.decoupled {
        (p * (1.0 - s.lr * cfg.weight_decay), g)
    } else {
        (p, g + cfg.weight_decay * p)
    };
    let m = m + (1.0 - cfg.beta1) * (g - m);
    let v = v * cfg.beta2 + (1.0 - cfg.beta2) * g * g;
    let denom = libm::sqrtf(v) / s.bc2_sqrt + cfg.eps;
    (p - s.step_size * (m / denom), m, v)
}

/// Adam/AdamW on a whole tensor at 1-based step `step`.
pub fn adam_step(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    step: u32,
    cfg: &AdamConfig,
) -> Result<()> {
    cfg.validate()?;
    check_len("grads", grads.len(), params.len())?;
    check_len("first moments", m.len(), params.len())?;
    check_len("second moments", v.len(), params.len())?;
    let s = AdamStep::new(lr, step, cfg);
    for i in 0..params.len() {
        (params[i], m[i], v[i]) = adam_update(params[i], grads[i], m[i], v[i], &s, cfg);
    }
    Ok(())
}

/// Linear warm-up then cosine decay, per step (solo-learn's
/// `LinearWarmupCosineAnnealingLR` closed form, stepped every iteration).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct WarmupCosine {
    /// Peak learning rate, reached at the end of the warm-up.
    pub base_lr: f32,
    /// Learning rate at step 0 (solo-learn: 3e-5).
    pub warmup_start_lr: f32,
    /// Final learning rate (η_min; 0).
    pub min_lr: f32,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Total steps.
    pub total_steps: u64,
}

impl WarmupCosine {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        non_negative("base_lr", self.base_lr)?;
        non_negative("warmup_start_lr", self.warmup_start_lr)?;
        non_negative("min_lr", self.min_lr)?;
        if self.total_steps == 0 || self.warmup_steps > self.total_steps {
            return Err(CoreError::Config {
                field: "warmup_steps",
                allowed: "at most total_steps, with total_steps >= 1",
            });
        }
        Ok(())
    }

    /// Learning rate at step `t` (0-based):
    /// warm-up `start + t (base − start)/max(1, W − 1)` for `t < W`, then
    /// `min + ½ (base − min)(1 + cos(π (t − W)/(T − W)))`.
    pub fn lr(&self, t: u64) -> f32 {
        let (base, start, min) = (
            self.base_lr as f64,
            self.warmup_start_lr as f64,
            self.min_lr as f64,
        );
        let w = self.warmup_steps;
        if t < w {
            let span = (w.max(2) - 1) as f64;
            return (start + t as f64 * (base - start) / span) as f32;
        }
        let span = self.total_steps.saturating_sub(w).max(1) as f64;
        let x = (t.min(self.total_steps) - w) as f64 / span;
        (min + 0.5 * (base - min) * (1.0 + libm::cos(core::f64::consts::PI * x))) as f32
    }
}
