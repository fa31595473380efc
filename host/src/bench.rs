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
    for s in [256usize, 512, 1024, 2048] {
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
