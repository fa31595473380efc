//! Linear probe: one linear layer trained with softmax cross-entropy on
//! frozen, precomputed features (no augmentation), on the GPU.
//!
//! Defaults follow solo-learn's linear evaluation: SGD with momentum 0.9,
//! lr 0.1, no weight decay, batch 256, 100 epochs, the lr divided by 10 at
//! 60 % and 80 % of the epochs; the layer starts as PyTorch's `nn.Linear`
//! (uniform ±1/√d). Each epoch visits a Philox permutation of the training
//! rows (the last incomplete batch is dropped). The step is GEMM (bias
//! fused) → `xent` (softmax cross-entropy and its gradient, checked
//! against the core's `xent`) → GEMMs for the weight and bias gradients →
//! SGD or Adam. Top-1 (and top-5 with more than 10 classes) on the test
//! features use the core's `xent::top_k_correct`.

use scorecl_core::optim::{AdamConfig, SgdConfig};
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::xent;
use serde::{Deserialize, Serialize};

use super::Features;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::{elementwise, optim, xent as xent_op};
use crate::tensor::DType;

/// Settings of the linear probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    /// Epochs over the training features (100).
    pub epochs: usize,
    /// Batch size (256).
    pub batch_size: usize,
    /// `sgd` (momentum 0.9) or `adam`.
    pub optimizer: String,
    /// Learning rate (0.1; use about 1e-3 with Adam).
    pub lr: f32,
    /// Weight decay (0).
    pub weight_decay: f32,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            epochs: 100,
            batch_size: 256,
            optimizer: "sgd".into(),
            lr: 0.1,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

impl LinearConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::config(format!("linear.{field}"), msg));
        if self.epochs == 0 {
            return bad("epochs", "0: at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0: at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{}: a finite value > 0", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("{}: a finite value ≥ 0", self.weight_decay),
            );
        }
        if !matches!(self.optimizer.as_str(), "sgd" | "adam") {
            return bad("optimizer", format!("`{}`: sgd or adam", self.optimizer));
        }
        Ok(())
    }

    /// Learning rate of `epoch`: ×0.1 from 60 % and again from 80 %.
    pub fn lr_at(&self, epoch: usize) -> f32 {
        let e = epoch as f64 / self.epochs as f64;
        self.lr
            * if e >= 0.8 {
                0.01
            } else if e >= 0.6 {
                0.1
            } else {
                1.0
            }
    }
}

/// What the linear probe measured.
#[derive(Debug, Clone, Serialize)]
pub struct LinearReport {
    /// Top-1 accuracy on the test features, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent, where there are more than 10 classes.
    pub top5: Option<f64>,
    /// Mean training loss of the last epoch.
    pub train_loss: f32,
    /// Epochs trained.
    pub epochs: usize,
}

/// Trains the probe on `train` and measures it on `test`.
pub fn linear_probe(
    gpu: &Gpu,
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    classes: usize,
    cfg: &LinearConfig,
) -> Result<LinearReport> {
    cfg.validate()?;
    let d = train.d;
    if test.d != d || train.n != train_labels.len() || test.n != test_labels.len() {
        return Err(Error::shape(
            "linear probe",
            format!(
                "train {}×{} with {} labels, test {}×{} with {} labels",
                train.n,
                train.d,
                train_labels.len(),
                test.n,
                test.d,
                test_labels.len()
            ),
        ));
    }
    for (what, labels) in [("train", train_labels), ("test", test_labels)] {
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(Error::shape(
                "linear probe labels",
                format!("{what} row {i}: label {l} out of range ({classes} classes)"),
            ));
        }
    }
    let n = train.n;
    let b = cfg.batch_size.min(n);
    let steps = n / b;
    let host = gpu.download(&train.tensor)?;
    let t = |len: usize| gpu.tensor(&[len], DType::F32);
    let (xe, ye) = (t(n * d)?, gpu.tensor(&[n], DType::U32)?);
    let (w, bias) = (t(classes * d)?, t(classes)?);
    let (gw, gb) = (t(classes * d)?, t(classes)?);
    let (mw, mb, vw, vb) = (t(classes * d)?, t(classes)?, t(classes * d)?, t(classes)?);
    // The optimizer's non-finite guard: slot 0 the weight, 1 the bias.
    let flags = gpu.tensor(&[2], DType::U32)?;
    let (gw_slot, gb_slot) = (
        optim::Guard {
            flags: &flags,
            slot: 0,
        },
        optim::Guard {
            flags: &flags,
            slot: 1,
        },
    );
    let (logits, loss, grad, ones) = (t(b * classes)?, t(b)?, t(b * classes)?, t(b)?);
    // nn.Linear's initialisation: U(−1/√d, 1/√d) for weight and bias.
    let bound = 1.0 / (d as f32).sqrt();
    let init = |layer: u64, len: usize| -> Vec<f32> {
        let r = Philox::new(cfg.seed, stream_id(Purpose::Init, (1 << 32) + layer));
        (0..len as u64)
            .map(|i| (2.0 * r.uniform_at(i) - 1.0) * bound)
            .collect()
    };
    gpu.write(&w, bytemuck::cast_slice(&init(0, classes * d)))?;
    gpu.write(&bias, bytemuck::cast_slice(&init(1, classes)))?;
    {
        let mut s = gpu.step("linear init");
        elementwise::fill(&mut s, 1.0, &ones)?;
        for z in [&mw, &mb, &vw, &vb] {
            elementwise::fill(&mut s, 0.0, z)?;
        }
        s.submit()?;
    }
    let sgd = SgdConfig {
        momentum: 0.9,
        weight_decay: cfg.weight_decay,
        ..SgdConfig::default()
    };
    let adam = AdamConfig {
        weight_decay: cfg.weight_decay,
        ..AdamConfig::default()
    };
    let mut xs = vec![0.0f32; n * d];
    let mut ys = vec![0u32; n];
    let mut t_step = 0u32;
    let mut train_loss = 0.0f32;
    const STEPS_PER_SUBMIT: usize = 16;
    for epoch in 0..cfg.epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        Philox::new(
            cfg.seed,
            stream_id(Purpose::DataOrder, (1 << 32) + epoch as u64),
        )
        .shuffle(0, &mut order);
        for (r, &i) in order.iter().enumerate() {
            let i = i as usize;
            xs[r * d..(r + 1) * d].copy_from_slice(&host[i * d..(i + 1) * d]);
            ys[r] = train_labels[i];
        }
        gpu.write(&xe, bytemuck::cast_slice(&xs))?;
        gpu.write(&ye, bytemuck::cast_slice(&ys))?;
        let lr = cfg.lr_at(epoch);
        let (mut sum, mut nreads) = (0.0f64, 0usize);
        for chunk in (0..steps).step_by(STEPS_PER_SUBMIT) {
            let mut s = gpu.step("linear probe");
            s.clear(&flags);
            let mut reads = Vec::new();
            for k in chunk..(chunk + STEPS_PER_SUBMIT).min(steps) {
                let off = k * b;
                let fwd = GemmSpec {
                    trans_b: true,
                    a_off: off * d,
                    ..GemmSpec::new(b, classes, d)
                };
                gemm(&mut s, &fwd, &xe, &w, Some(&bias), &logits)?;
                xent_op::xent(
                    &mut s,
                    &logits,
                    &ye,
                    off,
                    b,
                    classes,
                    1.0 / b as f32,
                    &loss,
                    &grad,
                )?;
                let dw = GemmSpec {
                    trans_a: true,
                    b_off: off * d,
                    ..GemmSpec::new(classes, d, b)
                };
                gemm(&mut s, &dw, &grad, &xe, None, &gw)?;
                gemm(
                    &mut s,
                    &GemmSpec::new(1, classes, b),
                    &ones,
                    &grad,
                    None,
                    &gb,
                )?;
                t_step += 1;
                if cfg.optimizer == "adam" {
                    optim::adam(&mut s, &w, &gw, &mw, &vw, lr, t_step, &adam, gw_slot)?;
                    optim::adam(&mut s, &bias, &gb, &mb, &vb, lr, t_step, &adam, gb_slot)?;
                } else {
                    let first = t_step == 1;
                    optim::sgd(&mut s, &w, &gw, &mw, lr, &sgd, first, gw_slot)?;
                    optim::sgd(&mut s, &bias, &gb, &mb, lr, &sgd, first, gb_slot)?;
                }
                // Losses are read back every 4th step (and the last).
                if k % 4 == 0 || k + 1 == steps {
                    reads.push(s.readback(&loss));
                }
            }
            let r_flags = s.readback(&flags);
            let rb = s.submit()?;
            let bad = rb.u32(r_flags);
            for (what, bits) in [("weight", bad[0]), ("bias", bad[1])] {
                if bits != 0 {
                    return Err(Error::shape(
                        "linear probe",
                        format!(
                            "epoch {}: the linear layer's {what} is not finite ({}); lower \
                             linear.lr ({})",
                            epoch + 1,
                            optim::describe_guard(bits),
                            cfg.lr
                        ),
                    ));
                }
            }
            for i in reads {
                let l = rb.f32(i);
                sum += l[..b].iter().map(|v| *v as f64).sum::<f64>() / b as f64;
                nreads += 1;
            }
        }
        train_loss = (sum / nreads.max(1) as f64) as f32;
        if !train_loss.is_finite() {
            return Err(Error::shape(
                "linear probe",
                format!(
                    "epoch {}: the training loss is not finite ({train_loss}); lower linear.lr ({})",
                    epoch + 1,
                    cfg.lr
                ),
            ));
        }
    }
    // Test logits in one GEMM.
    let out = t(test.n * classes)?;
    let mut s = gpu.step("linear probe test");
    let spec = GemmSpec {
        trans_b: true,
        ..GemmSpec::new(test.n, classes, d)
    };
    gemm(&mut s, &spec, &test.tensor, &w, Some(&bias), &out)?;
    let i = s.readback(&out);
    let mut z = s.submit()?.f32(i);
    z.truncate(test.n * classes);
    let pct = |k: usize| -> Result<f64> {
        Ok(
            100.0 * xent::top_k_correct(&z, test_labels, classes, k)? as f64
                / test_labels.len().max(1) as f64,
        )
    };
    Ok(LinearReport {
        top1: pct(1)?,
        top5: if classes > 10 { Some(pct(5)?) } else { None },
        train_loss,
        epochs: cfg.epochs,
    })
}
