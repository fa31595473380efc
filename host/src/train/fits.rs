//! Sizes checked before anything is allocated: a configuration whose
//! largest tensor exceeds the device's buffer limits, or whose tensors
//! together exceed the memory the device has (the host's, on the native CPU
//! device), is refused naming the keys that set the size, the bytes needed
//! and the limit — instead of an allocation abort (a Rust `alloc` failure
//! ends the process) or a device error deep inside the first step.
//!
//! The figures are what the trainer allocates, from the shapes alone:
//! every encoder and head weight (value, gradient and optimizer moments),
//! the largest activation (the stem's output of one view's batch) and the
//! views. Activations are counted once per layer output of the encoder's
//! forward, for two views, which bounds the workspaces from below.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{BlockKind, MlpLayer};
use crate::train::config::TrainConfig;

/// A tensor the check looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The keys that set its size, e.g. `model.width`.
    pub keys: &'static str,
    /// What it is.
    pub what: String,
    /// Bytes.
    pub bytes: u128,
}

/// The bytes of the largest tensors and of everything, for `cfg` on images
/// of `size`² with `heads` (the projector's and predictor's layers) and
/// `slots` optimizer moments per parameter.
pub fn needs(cfg: &TrainConfig, heads: &[MlpLayer], slots: usize) -> (Vec<Need>, u128) {
    let f = 4u128;
    let w = cfg.model.width as u128;
    let n = cfg.train.batch_size as u128;
    let s = cfg.data.size as u128;
    let imagenet = cfg.model.stem == crate::train::config::StemKind::Imagenet;
    let k1 = if imagenet { 7 } else { 3 };
    // Stem output side: the ImageNet stem halves twice (stride-2 conv,
    // stride-2 max pool).
    let side = if imagenet { s.div_ceil(4) } else { s };
    // The encoder's weights, stage by stage as `nn::ResNet` builds them
    // (`model.arch`: basic or bottleneck blocks), and the largest one.
    let arch = cfg.encoder_config();
    let expansion = arch.block.expansion() as u128;
    let mut enc = 3 * w * k1 * k1 + 2 * w;
    let mut largest_weight = 3 * w * k1 * k1;
    let mut inplanes = w;
    for (stage, &count) in arch.blocks.iter().enumerate() {
        let planes = arch.stage_width(stage) as u128;
        let out = planes * expansion;
        for i in 0..count {
            // (weights, batch-norm channels) of the block's convolutions.
            let convs: &[(u128, u128)] = match arch.block {
                BlockKind::Basic => &[
                    (inplanes * planes * 9, planes),
                    (planes * planes * 9, planes),
                ],
                BlockKind::Bottleneck => &[
                    (inplanes * planes, planes),
                    (planes * planes * 9, planes),
                    (planes * out, out),
                ],
            };
            let down = (stage > 0 && i == 0 || inplanes != out).then_some((inplanes * out, out));
            for &(weight, channels) in convs.iter().chain(&down) {
                enc += weight + 2 * channels; // the weight, batch-norm γ and β
                largest_weight = largest_weight.max(weight);
            }
            inplanes = out;
        }
    }
    let mut head = 0u128;
    let mut head_max = 0u128;
    for l in heads {
        if let MlpLayer::Linear {
            fan_in, fan_out, ..
        } = l
        {
            let p = *fan_in as u128 * *fan_out as u128;
            head += p;
            head_max = head_max.max(p);
        }
    }
    let stem = n * w * side * side;
    let views = 2 * n * 3 * s * s;
    // The score network (ScoreCL on or shuffled): its widest convolution
    // is block2's (2c → 2c, 3×3); it sees the 2n views at full size and
    // the n clean images of the DSM step. Adam: two moments.
    let (score_w, score_act, score_params) = if cfg.scorecl.weight_mode().needs_score_net() {
        let c = cfg.scorecl.width as u128;
        let d = cfg.scorecl.depth as u128;
        let params = 3 * c * 9 * 2 + 2 * c * c * 9 * 2 + (4 * d * c * c + 8 * d * c * c) * 9;
        ((2 * c) * (2 * c) * 9, 2 * n * c * s * s, params)
    } else {
        (0, 0, 0)
    };
    let per_param = 2 + slots as u128; // value, gradient, moments
                                       // Two views, about a dozen saved tensors of the stem's size per stage
                                       // (each stage a quarter of the one before), halved spatially per stage.
    let acts = 2 * stem * 12 * 2 * expansion;
    let total =
        f * ((enc + head) * per_param + 4 * score_params + acts + 6 * score_act + 2 * views);
    let list = vec![
        Need {
            keys: "model.width",
            what: "the largest encoder weight".into(),
            bytes: f * largest_weight,
        },
        Need {
            keys: "model.width, train.batch_size, data.size",
            what: format!("the stem's output of one view ({n} × {w} × {side} × {side})"),
            bytes: f * stem,
        },
        Need {
            keys: "train.batch_size, data.size",
            what: format!("the views ({} × 3 × {s} × {s})", 2 * n),
            bytes: f * views,
        },
        Need {
            keys: "model.width and the method's proj_hidden_dim / proj_output_dim",
            what: "the largest head weight".into(),
            bytes: f * head_max,
        },
        Need {
            keys: "scorecl.width",
            what: "the score network's largest weight".into(),
            bytes: f * score_w,
        },
        Need {
            keys: "scorecl.width, train.batch_size, data.size",
            what: "the score network's activation of the views".into(),
            bytes: f * score_act,
        },
    ];
    (list, total)
}

/// Refuses `cfg` when a tensor exceeds the device's `max_buffer_size` or
/// `max_storage_buffer_binding_size`, or everything exceeds the host memory
/// on the native CPU device. The error names the keys, the bytes and the
/// limit.
pub fn check(gpu: &Gpu, cfg: &TrainConfig, heads: &[MlpLayer], slots: usize) -> Result<()> {
    let l = &gpu.caps.limits;
    let limit = (l.max_buffer_size as u128).min(l.max_storage_buffer_binding_size as u128);
    let (list, total) = needs(cfg, heads, slots);
    for need in &list {
        if need.bytes > limit {
            return Err(Error::config(
                need.keys,
                format!(
                    "{} needs {} bytes ({}), more than this device's largest buffer \
                     ({limit} bytes: max_storage_buffer_binding_size {}, max_buffer_size {}) \
                     on {}",
                    need.what,
                    need.bytes,
                    human(need.bytes),
                    l.max_storage_buffer_binding_size,
                    l.max_buffer_size,
                    gpu.describe()
                ),
            ));
        }
    }
    if let Some(mem) = gpu.cpu_info().map(|c| c.memory as u128) {
        if mem > 0 && total > mem {
            return Err(Error::config(
                "model.width, train.batch_size, data.size",
                format!(
                    "the run needs at least {total} bytes ({}) of parameters, gradients, \
                     optimizer state and activations, more than this machine's memory \
                     ({mem} bytes, {})",
                    human(total),
                    human(mem)
                ),
            ));
        }
    }
    Ok(())
}

fn human(b: u128) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}
