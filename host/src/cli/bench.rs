//! `scorecl bench train|encoder|conv|gemm`: images/s of training steps and encoder passes, convolution times, GEMM GFLOP/s.

use super::encoder::encoder_config;
use super::{gpu, Cli};
use crate::bench;
use crate::ops::conv::ConvPrecision;
use crate::ops::gemm::GemmKernel;
use crate::train::Choice;
use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Images/s of whole training steps, with ScoreCL on and off.
    Train {
        /// The configuration (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Batch size, overriding train.batch_size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Encoder width, overriding model.width.
        #[arg(long)]
        width: Option<usize>,
        /// Convolution operand storage, f32 or f16, overriding
        /// train.precision (f16 needs shader-f16; f32 is used otherwise).
        #[arg(long)]
        precision: Option<String>,
        /// Timed steps per mode.
        #[arg(long, default_value_t = 3)]
        steps: u64,
        /// Also time every kernel of one ScoreCL step.
        #[arg(long)]
        profile: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Images/s of the encoder's forward and forward+backward.
    Encoder {
        /// Architecture: resnet18 or resnet50.
        #[arg(long, default_value = "resnet18")]
        arch: String,
        /// Base width (64: the standard ResNet-18 and ResNet-50).
        #[arg(long, default_value_t = 64)]
        width: usize,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Image size (square).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Stem: cifar or imagenet.
        #[arg(long, default_value = "cifar")]
        stem: String,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Also time every kernel of one step with timestamp queries.
        #[arg(long)]
        profile: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Milliseconds and GFLOP/s of ResNet-18's 3×3 convolutions, forward
    /// and backward, and the path each takes (on the native device, the
    /// stride-1 ones of 16 channels or more on maps of 8 × 8 or more run
    /// through Winograd; SCORECL_WINOGRAD=0 runs them as im2col + GEMM).
    Conv {
        /// Base width (64: the standard ResNet-18).
        #[arg(long, default_value_t = 64)]
        width: usize,
        /// Batch size (images per convolution: a training step's two views
        /// of a batch of 32 are 64).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// The first stage's map side (32: CIFAR; 34 with solo-learn's stem
        /// padding).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// GFLOP/s of the GEMM kernel on square, skinny and ResNet-18 shapes.
    Gemm {
        /// Largest square size.
        #[arg(long, default_value_t = 2048)]
        max: usize,
        /// Seconds per shape.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Only shapes whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Kernel: auto (chosen per adapter), portable, sg8 (CPU drivers),
        /// tiled (GPUs), wide (GPUs, 128×128 tiles) or coop (cooperative matrices; needs
        /// SCORECL_COOP_MATRIX=1 and an adapter that has them, else as auto).
        #[arg(long, default_value = "auto")]
        kernel: String,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

fn gemm_kernel(name: &str) -> anyhow::Result<GemmKernel> {
    GemmKernel::parse(name).ok_or_else(|| {
        anyhow::anyhow!("--kernel `{name}`: allowed auto, portable, sg8, tiled, wide, coop")
    })
}

/// Runs `scorecl bench …`.
pub(super) fn run(cli: &Cli, what: &BenchCmd) -> anyhow::Result<()> {
    match what {
        BenchCmd::Train {
            config,
            batch_size,
            width,
            precision,
            steps,
            profile,
            json,
        } => {
            let mut cfg = crate::train::TrainConfig::load(config)?;
            if let Some(b) = batch_size {
                cfg.train.batch_size = *b;
            }
            if let Some(w) = width {
                cfg.model.width = *w;
            }
            if let Some(p) = precision {
                cfg.train.precision = ConvPrecision::parse_for("--precision", p)?;
            }
            cfg.validate()?;
            anyhow::ensure!(*steps >= 1, "--steps must be at least 1");
            // One rank, or one of an MPI launch's (feature `mpi`): the
            // global batch split over the ranks; rank 0 reports.
            crate::dist::split_threads();
            let comm = crate::dist::from_launcher()?;
            let lead = comm.rank() == 0;
            let transport = comm.transport();
            let gpu = gpu(cli)?;
            let rows = bench::time_train(&gpu, &cfg, *steps, &["off", "on"], *profile, comm)
                .context("benchmarking training steps")?;
            if !lead {
                return Ok(());
            }
            let (off, on) = (&rows[0], &rows[1]);
            // (t_on − t_off) / t_on: the score network's forward on the views
            // and its DSM step, as a fraction of a ScoreCL step.
            let share = 1.0 - off.step_seconds / on.step_seconds;
            if *json {
                let report = serde_json::json!({
                    "adapter": gpu.info.name,
                    "backend": gpu.backend_name(),
                    "method": cfg.method.name(),
                    "width": cfg.model.width,
                    "batch": cfg.train.batch_size,
                    "size": cfg.data.size,
                    "score_width": cfg.scorecl.width,
                    "precision": off.precision,
                    "adapter_description": gpu.describe(),
                    "steps": steps,
                    "off_images_per_s": off.images_per_s,
                    "on_images_per_s": on.images_per_s,
                    "off_peak_memory_bytes": off.peak_memory_bytes,
                    "on_peak_memory_bytes": on.peak_memory_bytes,
                    "off_dispatches_per_step": off.dispatches_per_step,
                    "on_dispatches_per_step": on.dispatches_per_step,
                    "off_host_ms_per_step": off.host_ms_per_step,
                    "on_host_ms_per_step": on.host_ms_per_step,
                    "scorecl_share_of_step": share,
                    "ranks": off.ranks,
                    "transport": transport,
                    "off_exchange_seconds_per_step": off.exchange_seconds_per_step,
                    "on_exchange_seconds_per_step": on.exchange_seconds_per_step,
                    "off_exchange_bytes_per_step": off.exchange_bytes_per_step,
                    "on_exchange_bytes_per_step": on.exchange_bytes_per_step,
                    "profile": on.profile.iter().map(|(k, t, n)| serde_json::json!({"kernel": k, "seconds": t, "dispatches": n})).collect::<Vec<_>>(),
                });
                println!("{report}");
            } else {
                println!(
                    "{} training step ({} width {}, {}×{}, batch {}, score network width {}, {} convolutions) on {}",
                    cfg.method.name(),
                    cfg.model.arch.name(),
                    cfg.model.width,
                    cfg.data.size,
                    cfg.data.size,
                    cfg.train.batch_size,
                    cfg.scorecl.width,
                    off.precision,
                    gpu.describe()
                );
                for r in &rows {
                    println!(
                        "  ScoreCL {:<4} {:>9.1} images/s {:>9.3} s/step  peak memory {:>8.1} MiB  {} dispatches/step  host {:.1} ms/step",
                        r.mode,
                        r.images_per_s,
                        r.step_seconds,
                        r.peak_memory_bytes as f64 / (1u64 << 20) as f64,
                        r.dispatches_per_step,
                        r.host_ms_per_step
                    );
                    if r.ranks > 1 {
                        println!(
                            "      {} ranks ({transport}), global batch {}: rank 0 in collectives {:.3} s/step ({:.0} % of the step), {:.1} MB/step contributed in {:.0} collectives",
                            r.ranks,
                            cfg.train.batch_size,
                            r.exchange_seconds_per_step,
                            100.0 * r.exchange_seconds_per_step / r.step_seconds,
                            r.exchange_bytes_per_step / 1e6,
                            r.exchanges_per_step
                        );
                    }
                }
                println!(
                    "  ScoreCL's share of the step (score weights + DSM): {:.1} %",
                    100.0 * share
                );
                let total: f64 = on.profile.iter().map(|(_, t, _)| t).sum();
                if total > 0.0 {
                    println!("  kernel time of one ScoreCL step ({total:.3} s in kernels):");
                    for (k, t, n) in on.profile.iter().take(20) {
                        println!(
                            "    {k:<40} {:>8.1} ms {:>5.1} % {n:>5} dispatches",
                            t * 1e3,
                            100.0 * t / total
                        );
                    }
                }
            }
        }
        BenchCmd::Encoder {
            arch,
            width,
            batch,
            size,
            stem: s,
            seconds,
            profile,
            json,
        } => {
            let cfg = encoder_config(arch, *width, s)?;
            anyhow::ensure!(
                *width >= 1 && *batch >= 1 && *size >= 8,
                "--width, --batch ≥ 1 and --size ≥ 8"
            );
            let gpu = gpu(cli)?;
            let r = bench::time_encoder(&gpu, cfg, *batch, *size, *seconds, *profile)
                .context("benchmarking the encoder")?;
            if *json {
                let report = serde_json::json!({
                    "adapter": gpu.info.name,
                    "backend": gpu.backend_name(),
                    "model": arch,
                    "width": width, "batch": batch, "size": size, "stem": s,
                    "gflop_per_image": r.gflop_per_image,
                    "forward_images_per_s": r.forward_ips,
                    "train_images_per_s": r.train_ips,
                    "forward_gflops": r.forward_gflops,
                    "train_gflops": r.train_gflops,
                    "profile": r.profile.iter().map(|(k, t, n)| serde_json::json!({"kernel": k, "seconds": t, "dispatches": n})).collect::<Vec<_>>(),
                });
                println!("{report}");
            } else {
                println!(
                    "{arch} ({s} stem, width {width}, {size}×{size}, batch {batch}) on {}",
                    gpu.describe()
                );
                println!("  {:.3} GFLOP per image forward", r.gflop_per_image);
                println!(
                    "  forward          {:>9.1} images/s {:>8.2} GFLOP/s",
                    r.forward_ips, r.forward_gflops
                );
                println!(
                    "  forward+backward {:>9.1} images/s {:>8.2} GFLOP/s",
                    r.train_ips, r.train_gflops
                );
                if *profile {
                    let total: f64 = r.profile.iter().map(|(_, t, _)| t).sum();
                    if total == 0.0 {
                        println!("  (no timestamp queries on this adapter: no kernel profile)");
                    } else {
                        println!(
                            "  kernel time of one forward+backward step ({total:.3} s in kernels):"
                        );
                        for (k, t, n) in &r.profile {
                            println!(
                                "    {k:<40} {:>8.1} ms {:>5.1} % {n:>5} dispatches",
                                t * 1e3,
                                100.0 * t / total
                            );
                        }
                    }
                }
            }
        }
        BenchCmd::Conv {
            width,
            batch,
            size,
            seconds,
            json,
        } => {
            anyhow::ensure!(
                *width >= 1 && *batch >= 1 && *size >= 8,
                "--width, --batch ≥ 1 and --size ≥ 8"
            );
            let gpu = gpu(cli)?;
            if !json {
                println!("3×3 convolutions (batch {batch}) on {}", gpu.describe());
                println!(
                    "{:<18} {:>5} {:>5} {:>5} {:>10} {:>9} {:>10} {:>9}  path",
                    "shape", "C_in", "C_out", "side", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s"
                );
            }
            let mut rows = Vec::new();
            for (name, s) in bench::conv_shapes(*width, *batch, *size) {
                let r = bench::time_conv(&gpu, &name, &s, *seconds)
                    .with_context(|| format!("benchmarking {name}"))?;
                // 2 flops per multiply-add; the backward's two products.
                let gflop = 2.0 * s.macs() as f64 / 1e9;
                if !json {
                    println!(
                        "{:<18} {:>5} {:>5} {:>5} {:>10.2} {:>9.1} {:>10.2} {:>9.1}  {}",
                        r.name,
                        s.cin,
                        s.cout,
                        s.h,
                        r.forward_seconds * 1e3,
                        gflop / r.forward_seconds,
                        r.backward_seconds * 1e3,
                        2.0 * gflop / r.backward_seconds,
                        r.path
                    );
                }
                rows.push(serde_json::json!({
                    "shape": r.name, "cin": s.cin, "cout": s.cout, "side": s.h,
                    "stride": s.stride, "batch": s.n,
                    "forward_seconds": r.forward_seconds,
                    "backward_seconds": r.backward_seconds,
                    "path": r.path,
                }));
            }
            if *json {
                let report = serde_json::json!({
                    "adapter": gpu.info.name,
                    "backend": gpu.backend_name(),
                    "conv": rows,
                });
                println!("{report}");
            }
        }
        BenchCmd::Gemm {
            max,
            seconds,
            only,
            kernel,
            json,
        } => {
            let kernel = gemm_kernel(kernel)?;
            let gpu = gpu(cli)?;
            let mut rows = Vec::new();
            if !json {
                println!("GEMM on {}", gpu.describe());
                println!(
                    "{:<26} {:>7} {:>7} {:>7} {:>10} {:>9}  kernel",
                    "shape", "M", "N", "K", "ms", "GFLOP/s"
                );
            }
            for (name, spec) in bench::gemm_shapes(*max) {
                if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                    continue;
                }
                let r = bench::time_gemm(&gpu, &name, &spec, kernel, *seconds)
                    .with_context(|| format!("benchmarking {name}"))?;
                if !json {
                    println!(
                        "{:<26} {:>7} {:>7} {:>7} {:>10.3} {:>9.2}  {:?}",
                        r.name,
                        spec.m,
                        spec.n,
                        spec.k,
                        r.seconds * 1e3,
                        r.gflops,
                        r.kernel
                    );
                }
                rows.push(serde_json::json!({
                    "shape": r.name,
                    "m": spec.m,
                    "n": spec.n,
                    "k": spec.k,
                    "seconds": r.seconds,
                    "gflops": r.gflops,
                    "kernel": format!("{:?}", r.kernel),
                }));
            }
            if *json {
                let report = serde_json::json!({
                    "adapter": gpu.info.name,
                    "backend": gpu.backend_name(),
                    "driver": format!("{} {}", gpu.info.driver, gpu.info.driver_info),
                    "gemm": rows,
                });
                println!("{report}");
            }
        }
    }
    Ok(())
}
