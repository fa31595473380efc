//! Benchmarks (`scorecl bench …`): speed is measured here and reported with
//! the adapter's name, never asserted by tests.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::gemm::{gemm_with, kernel_for, GemmKernel, GemmSpec};

/// One GEMM measurement.
#[derive(Debug, Clone)]
pub struct GemmResult {
    /// What was run.
    pub name: String,
    /// The spec.
    pub spec: GemmSpec,
    /// Seconds per product (median of the timed rounds).
    pub seconds: f64,
    /// GFLOP/s.
    pub gflops: f64,
    /// The kernel that ran.
    pub kernel: GemmKernel,
}

/// The shapes of `scorecl bench gemm`: squares, skinny products, and the
/// implicit-GEMM shapes of ResNet-18 (CIFAR stem) 3×3 convolutions at a
/// batch of 32: M = batch·H·W, N = C_out, K = 9·C_in.
pub fn gemm_shapes(max: usize) -> Vec<(String, GemmSpec)> {
    let mut v = Vec::new();
    for s in [256usize, 512, 1024, 2048, 4096] {
        if s <= max {
            v.push((format!("square {s}"), GemmSpec::new(s, s, s)));
        }
    }
    for (name, m, n, k) in [
        ("skinny 4096×64×1024", 4096, 64, 1024),
        ("skinny 64×4096×1024", 64, 4096, 1024),
        ("resnet18 layer1 conv", 32 * 32 * 32, 64, 576),
        ("resnet18 layer2 conv", 32 * 16 * 16, 128, 1152),
        ("resnet18 layer3 conv", 32 * 8 * 8, 256, 2304),
        ("resnet18 layer4 conv", 32 * 4 * 4, 512, 4608),
        ("projector 256×2048×512", 256, 2048, 512),
    ] {
        v.push((name.to_string(), GemmSpec::new(m, n, k)));
    }
    v
}

/// Times `spec`: one warm-up step, then rounds of `reps` products recorded
/// into one step each, until about `budget` seconds have passed.
pub fn time_gemm(
    gpu: &Gpu,
    name: &str,
    spec: &GemmSpec,
    kernel: GemmKernel,
    budget: f64,
) -> Result<GemmResult> {
    let a = gpu.upload(
        &vec![0.5f32; spec.m * spec.k * spec.batch],
        &[spec.m * spec.k * spec.batch],
    )?;
    let b = gpu.upload(
        &vec![0.25f32; spec.k * spec.n * spec.batch],
        &[spec.k * spec.n * spec.batch],
    )?;
    let c = gpu.zeros(&[spec.m * spec.n * spec.batch])?;
    let run = |reps: usize| -> Result<f64> {
        let mut step = gpu.step(name);
        for _ in 0..reps {
            gemm_with(&mut step, spec, &a, &b, None, &c, kernel)?;
        }
        let t = Instant::now();
        step.submit()?;
        gpu.sync()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = run(1)?;
    let reps = ((0.2 * budget / first.max(1e-6)) as usize).clamp(1, 1000);
    let mut times = Vec::new();
    let start = Instant::now();
    while times.is_empty() || (start.elapsed().as_secs_f64() < budget && times.len() < 9) {
        times.push(run(reps)? / reps as f64);
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    Ok(GemmResult {
        name: name.to_string(),
        spec: *spec,
        seconds,
        gflops: spec.flops() / seconds / 1e9,
        kernel: kernel_for(gpu, spec, kernel),
    })
}

/// The median of `run`'s seconds after one untimed run: at least `min`
/// timed runs, then more until `budget` seconds have passed or `max` runs.
fn median_seconds(
    run: impl Fn() -> Result<f64>,
    budget: f64,
    min: usize,
    max: usize,
) -> Result<f64> {
    run()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min || (start.elapsed().as_secs_f64() < budget && times.len() < max) {
        times.push(run()?);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// One convolution measurement.
#[derive(Debug, Clone)]
pub struct ConvResult {
    /// What was run.
    pub name: String,
    /// The shape.
    pub shape: crate::ops::conv::ConvShape,
    /// Seconds of the forward (median).
    pub forward_seconds: f64,
    /// Seconds of the backward: the weight gradient and the input
    /// gradient (median).
    pub backward_seconds: f64,
    /// `winograd` or `im2col`: the path the device takes for this shape.
    pub path: &'static str,
}

/// The 3×3 convolutions of ResNet-18's four stages with the CIFAR stem
/// (`width`·2ⁱ channels at stride 1 on the stage's map, `size` for the
/// first and each next one half the last, rounded up as a stride-2
/// convolution at padding 1 makes it; and each later stage's first
/// convolution, at stride 2) for a batch of `batch` images.
pub fn conv_shapes(
    width: usize,
    batch: usize,
    size: usize,
) -> Vec<(String, crate::ops::conv::ConvShape)> {
    use crate::ops::conv::ConvShape;
    let mut v = Vec::new();
    let mut side = size;
    for stage in 0..4 {
        let c = width << stage;
        if stage > 0 {
            let s = ConvShape {
                n: batch,
                cin: c / 2,
                h: side,
                w: side,
                cout: c,
                k: 3,
                stride: 2,
                pad: 1,
            };
            side = side.div_ceil(2);
            v.push((format!("layer{} stride 2", stage + 1), s));
        }
        let s = ConvShape {
            n: batch,
            cin: c,
            h: side,
            w: side,
            cout: c,
            k: 3,
            stride: 1,
            pad: 1,
        };
        v.push((format!("layer{} stride 1", stage + 1), s));
    }
    v
}

/// Times the forward and the backward (weight and input gradients) of the
/// convolution `s` on random data: one warm-up each, then rounds until
/// about `budget` seconds have passed per measurement (median).
pub fn time_conv(
    gpu: &Gpu,
    name: &str,
    s: &crate::ops::conv::ConvShape,
    budget: f64,
) -> Result<ConvResult> {
    use crate::ops::conv::{self, ConvPrecision, ConvScratch};
    s.check()?;
    let scratch = ConvScratch::for_shapes(gpu, &[*s], ConvPrecision::F32)?;
    let random = |seed: u64, n: usize, scale: f32| -> Result<crate::tensor::Tensor> {
        let mut v = vec![0.0f32; n];
        scorecl_core::rng::Philox::new(seed, 7).fill_normal(0, &mut v);
        v.iter_mut().for_each(|x| *x *= scale);
        gpu.upload(&v, &[n])
    };
    let x = random(1, s.in_len(), 1.0)?;
    let w = random(2, s.weight_len(), 0.05)?;
    let dy = random(3, s.out_len(), 1.0)?;
    let out = gpu.zeros(&[s.out_len()])?;
    let dw = gpu.zeros(&[s.weight_len()])?;
    let dx = gpu.zeros(&[s.in_len()])?;
    let run = |backward: bool| -> Result<f64> {
        let mut step = gpu.step(name);
        if backward {
            conv::conv2d_backward(&mut step, &x, &w, &dy, s, &scratch, &dw, Some(&dx))?;
        } else {
            conv::conv2d(&mut step, &x, &w, s, &scratch, &out)?;
        }
        let t = Instant::now();
        step.submit()?;
        gpu.sync()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let measure = |backward: bool| median_seconds(|| run(backward), budget, 3, 15);
    Ok(ConvResult {
        name: name.to_string(),
        shape: *s,
        forward_seconds: measure(false)?,
        backward_seconds: measure(true)?,
        path: if conv::uses_winograd(gpu, s, &scratch) {
            "winograd"
        } else {
            "im2col"
        },
    })
}

/// One encoder measurement.
#[derive(Debug, Clone)]
pub struct EncoderResult {
    /// Forward images per second (training-mode forward).
    pub forward_ips: f64,
    /// Forward + backward images per second.
    pub train_ips: f64,
    /// GFLOP/s of the forward (2 flops per multiply-add).
    pub forward_gflops: f64,
    /// GFLOP/s of forward + backward (3× the forward's flops).
    pub train_gflops: f64,
    /// Forward GFLOP per image.
    pub gflop_per_image: f64,
    /// Per-kernel seconds of one forward + backward step from timestamp
    /// queries (empty where the adapter has none, or not asked for),
    /// largest first: (kernel, seconds, dispatches).
    pub profile: Vec<(String, f64, usize)>,
}

/// Times ResNet-18 forward and forward + backward on `batch` random images
/// of `size` × `size`: one warm-up step each, then rounds until about
/// `budget` seconds have passed per measurement (median).
pub fn time_encoder(
    gpu: &Gpu,
    cfg: crate::nn::ResNetConfig,
    batch: usize,
    size: usize,
    budget: f64,
    profile: bool,
) -> Result<EncoderResult> {
    use crate::nn::{Encoder, ResNet};
    let model = ResNet::new(gpu, cfg, 0)?;
    let ws = model.workspace(gpu, batch, size, size, false)?;
    let mut xv = vec![0.0f32; batch * 3 * size * size];
    scorecl_core::rng::Philox::new(1, 1).fill_normal(0, &mut xv);
    let x = gpu.upload(&xv, &[batch, 3, size, size])?;
    let mut rv = vec![0.0f32; batch * model.feature_dim()];
    scorecl_core::rng::Philox::new(2, 2).fill_normal(0, &mut rv);
    let r = gpu.upload(&rv, &[batch, model.feature_dim()])?;
    let run = |backward: bool| -> Result<f64> {
        let mut step = gpu.step("bench encoder");
        if backward {
            model.store().zero_grads(&mut step)?;
        }
        model.forward(&mut step, &ws, &x, true)?;
        if backward {
            model.backward(&mut step, &ws, &x, &r)?;
        }
        let t = Instant::now();
        step.submit()?;
        gpu.sync()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let measure = |backward: bool| median_seconds(|| run(backward), budget, 1, 9);
    let fwd = measure(false)?;
    let train = measure(true)?;
    let gflop = 2.0 * model.macs_per_image(size, size) as f64 / 1e9;
    let mut table: Vec<(String, f64, usize)> = Vec::new();
    if profile {
        let mut step = gpu.step("bench encoder (profiled)").with_timestamps();
        model.store().zero_grads(&mut step)?;
        model.forward(&mut step, &ws, &x, true)?;
        model.backward(&mut step, &ws, &x, &r)?;
        table = aggregate(&step.submit()?.timings);
    }
    Ok(EncoderResult {
        forward_ips: batch as f64 / fwd,
        train_ips: batch as f64 / train,
        forward_gflops: gflop * batch as f64 / fwd,
        train_gflops: 3.0 * gflop * batch as f64 / train,
        gflop_per_image: gflop,
        profile: table,
    })
}

/// Training-step throughput of one configuration.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// ScoreCL mode measured.
    pub mode: String,
    /// Images per second (batch / step wall time, mean over the steps).
    pub images_per_s: f64,
    /// Seconds per step.
    pub step_seconds: f64,
    /// Per-kernel time of one step (when profiled and the adapter has
    /// timestamps).
    pub profile: Vec<(String, f64, usize)>,
    /// The most device memory scorecl's buffers held at once while this
    /// mode's trainer lived (models, optimizer state, activations,
    /// workspaces, readbacks), in bytes.
    pub peak_memory_bytes: u64,
    /// Dispatches per training step.
    pub dispatches_per_step: usize,
    /// The convolutions' operand storage in effect (`f32` or `f16`).
    pub precision: String,
    /// Host milliseconds per step until submission (recording, encoding,
    /// bind groups; mean over the timed steps): the CPU cost of driving the
    /// GPU, which a fast GPU waits for.
    pub host_ms_per_step: f64,
    /// Ranks of the run (1 without a launcher).
    pub ranks: usize,
    /// Seconds per step this rank spent in collectives (gathers of the
    /// projections and statistics, the gradients' all-reduces, the
    /// batch norms' exchanges; waiting for the other ranks included).
    pub exchange_seconds_per_step: f64,
    /// Bytes per step this rank contributed to collectives.
    pub exchange_bytes_per_step: f64,
    /// Collectives per step.
    pub exchanges_per_step: f64,
}

/// Times `steps` training steps (after one untimed step) of `cfg` on the
/// built-in dataset at the configured view size, once per ScoreCL mode in
/// `modes`, as one rank of `comm` (the global batch `train.batch_size`
/// split over its ranks). The run's schedule is that of the
/// configuration; only speed is measured.
pub fn time_train(
    gpu: &Gpu,
    cfg: &crate::train::TrainConfig,
    steps: u64,
    modes: &[&str],
    profile: bool,
    comm: crate::dist::Link,
) -> crate::train::TrainResult<Vec<TrainBench>> {
    use crate::train::Trainer;
    let n = cfg.train.batch_size;
    let (comm, meter) = crate::dist::metered(comm);
    let mut out = Vec::new();
    for mode in modes {
        let mut c = cfg.clone();
        c.scorecl.mode = scorecl_core::weights::WeightMode::from_name(mode)
            .ok_or_else(|| crate::Error::shape("bench modes", format!("`{mode}`")))?;
        c.data.dataset = format!("builtin:{}", n * (steps as usize + 2));
        c.train.epochs = c.train.epochs.max(1);
        c.schedule.warmup_epochs = 0.0;
        c.validate()?;
        let data = c.data.open(crate::data::Split::Train)?;
        gpu.reset_memory_peak();
        let base = gpu.memory().in_use_bytes;
        let mut t = Trainer::with_comm(gpu, c, data, comm.clone())?;
        t.step()?;
        let start = Instant::now();
        let before = meter.totals();
        let mut host = 0.0;
        for _ in 0..steps {
            t.step()?;
            host += t.last_host_seconds;
        }
        let secs = start.elapsed().as_secs_f64() / steps.max(1) as f64;
        let after = meter.totals();
        let per = |a: f64, b: f64| (b - a) / steps.max(1) as f64;
        let mut table = Vec::new();
        if profile && !t.finished() {
            t.profile = true;
            t.step()?;
            table = aggregate(&t.last_timings);
        }
        let peak = gpu.memory().peak_in_use_bytes.saturating_sub(base);
        out.push(TrainBench {
            mode: mode.to_string(),
            images_per_s: n as f64 / secs,
            step_seconds: secs,
            profile: table,
            peak_memory_bytes: peak,
            dispatches_per_step: t.last_dispatches,
            precision: t.conv_precision().name().to_string(),
            host_ms_per_step: 1e3 * host / steps.max(1) as f64,
            ranks: comm.size(),
            exchange_seconds_per_step: per(before.2, after.2),
            exchange_bytes_per_step: per(before.1 as f64, after.1 as f64),
            exchanges_per_step: per(before.0 as f64, after.0 as f64),
        });
    }
    Ok(out)
}

/// Per-kernel totals of a step's timestamp timings: (kernel entry without
/// its override constants, seconds, dispatches), slowest first.
pub fn aggregate(timings: &[(String, f64)]) -> Vec<(String, f64, usize)> {
    let mut table: Vec<(String, f64, usize)> = Vec::new();
    for (name, ns) in timings {
        let key = name.split(' ').next().unwrap_or(name).to_string();
        match table.iter_mut().find(|(k, _, _)| *k == key) {
            Some(row) => {
                row.1 += ns * 1e-9;
                row.2 += 1;
            }
            None => table.push((key, ns * 1e-9, 1)),
        }
    }
    table.sort_by(|a, b| b.1.total_cmp(&a.1));
    table
}
