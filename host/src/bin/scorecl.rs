//! The `scorecl` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use scorecl_host::data::Split;
use scorecl_host::nn::{checkpoint, ResNet, ResNetConfig, Stem};
use scorecl_host::ops::conv::ConvPrecision;
use scorecl_host::ops::gemm::GemmKernel;
use scorecl_host::train::Choice;
use scorecl_host::{bench, Gpu, GpuOptions};

#[derive(Parser)]
#[command(
    name = "scorecl",
    version,
    about = "ScoreCL self-supervised training on any GPU (wgpu)"
)]
struct Cli {
    /// The device: `cpu` (native, Rust kernels), `gpu` (the best wgpu
    /// adapter; CPU drivers such as lavapipe last) or an adapter name
    /// substring (also SCORECL_DEVICE). Default: a real GPU if wgpu sees
    /// one, else `cpu`.
    #[arg(long, global = true)]
    device: Option<String>,
    /// Use the first adapter whose name contains this (also SCORECL_ADAPTER).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure speed.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Encoder utilities.
    Encoder {
        #[command(subcommand)]
        what: EncoderCmd,
    },
    /// Self-supervised training (SimCLR, SimSiam, W-MSE, VICReg), with or
    /// without ScoreCL pair weights.
    Train(TrainArgs),
    /// Evaluate a trained backbone: k-NN or linear probe on frozen features.
    Eval {
        #[command(subcommand)]
        what: EvalCmd,
    },
    /// Does the score statistic grow with augmentation strength? S per
    /// level of each augmentation family, Spearman's ρ, CSV and PNG files.
    Probe {
        /// A run trained with ScoreCL on or shuffled (its score network).
        #[arg(long, required_unless_present = "train_score_epochs")]
        checkpoint: Option<std::path::PathBuf>,
        /// Instead of a run: train a score network alone by DSM for N epochs
        /// on the training split (settings from --config), then probe it.
        #[arg(long, conflicts_with = "checkpoint")]
        train_score_epochs: Option<u64>,
        /// Configuration (TOML) for --train-score-epochs: [scorecl], [data],
        /// [augment], train.batch_size and train.seed (default: built-in
        /// defaults on the embedded dataset).
        #[arg(long, requires = "train_score_epochs")]
        config: Option<std::path::PathBuf>,
        /// Dataset (default: the run's or the configuration's
        /// data.dataset); the test split is probed.
        #[arg(long)]
        data: Option<String>,
        /// Images in the fixed sample.
        #[arg(long, default_value_t = 128)]
        images: usize,
        /// Seed of the augmentation draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for the CSV and PNG files (default RUN/probe, or
        /// runs/probe with --train-score-epochs, which also saves the
        /// network there as score.safetensors for `scorecl.score_init`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Override a configuration key, e.g. the statistic probed:
        /// `--set scorecl.statistic=dsm --set scorecl.stat_sigmas=[0.5,0.1]`
        /// (default: the run's or the configuration's).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Same data and seeds, methods with ScoreCL off, on and shuffled (and
    /// the hand-crafted `augment` control), over several seeds: a table of
    /// k-NN top-1 (resumable).
    Compare {
        /// The base configuration (TOML).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Methods, comma-separated (simclr, simsiam, wmse, vicreg).
        #[arg(long, default_value = "simclr", value_delimiter = ',')]
        methods: Vec<String>,
        /// Weightings, comma-separated: off, on, shuffled, augment (weights
        /// from crop area and jitter magnitude instead of the score).
        #[arg(long, default_value = "off,on,shuffled", value_delimiter = ',')]
        weightings: Vec<String>,
        /// Seeds, comma-separated.
        #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Dataset, overriding data.dataset.
        #[arg(long)]
        data: Option<String>,
        /// Epochs, overriding train.epochs.
        #[arg(long)]
        epochs: Option<u64>,
        /// Batch size, overriding train.batch_size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Output folder: one run directory per (method, weighting, seed),
        /// compare.md and compare.json (every run, and per cell mean, std
        /// and the paired difference to `off` with its 95 % interval).
        #[arg(long)]
        out: std::path::PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Print compare.json's content instead of the table.
        #[arg(long)]
        json: bool,
        /// Also a linear probe on every run (frozen features, SGD 0.1 with
        /// momentum, batch 256, `eval linear`'s defaults), added to
        /// finished runs too; its table and paired differences follow
        /// k-NN's.
        #[arg(long)]
        linear: bool,
        /// Epochs of the linear probe.
        #[arg(long, default_value_t = 100)]
        linear_epochs: usize,
        /// Override a configuration key: `--set scorecl.transform=rank`
        /// (repeatable; applied after the other overrides).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Draw the PNG plots of a run directory (loss, DSM loss, k-NN, pair
    /// weights) from its metrics.jsonl.
    Plot {
        /// The run directory.
        run_dir: std::path::PathBuf,
    },
    /// Run this first on a new machine (and paste it into bug reports):
    /// every adapter wgpu sees, its backend, limits and the optional paths
    /// scorecl would use, then a GEMM and loss check against the core on
    /// the chosen adapter.
    Doctor {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Weighted k-NN (cosine similarity, exp(sim/T) votes) on the GPU.
    Knn {
        #[command(flatten)]
        common: EvalArgs,
        /// Neighbours.
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// Vote temperature.
        #[arg(long, default_value_t = 0.1)]
        temperature: f32,
    },
    /// Linear probe: one linear layer trained on frozen features.
    Linear {
        #[command(flatten)]
        common: EvalArgs,
        /// Epochs.
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Learning rate (0.1 for SGD; about 1e-3 for Adam).
        #[arg(long, default_value_t = 0.1)]
        lr: f32,
        /// Optimizer: sgd (momentum 0.9) or adam.
        #[arg(long, default_value = "sgd")]
        optimizer: String,
        /// Batch size of the probe.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Weight decay.
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f32,
    },
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A run directory, or its checkpoint folder.
    #[arg(long)]
    checkpoint: std::path::PathBuf,
    /// Dataset (KIND:PATH or builtin[:N]); default: the run's data.dataset.
    #[arg(long)]
    data: Option<String>,
    /// Evaluate the encoder as initialised (the run's model and seed, no
    /// trained weights): the baseline a trained encoder must beat.
    #[arg(long)]
    init: bool,
    /// Cache folder for decoded image folders.
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn eval(cli: &Cli, what: &EvalCmd) -> anyhow::Result<()> {
    use scorecl_host::eval::{extract, knn_features, linear_probe, LinearConfig};
    use scorecl_host::nn::ResNet;
    use scorecl_host::train::RunDir;
    let common = match what {
        EvalCmd::Knn { common, .. } | EvalCmd::Linear { common, .. } => common,
    };
    let gpu = gpu(cli)?;
    let (trained, mut cfg) = RunDir::load_backbone(&gpu, &common.checkpoint)?;
    let encoder = if common.init {
        ResNet::new(
            &gpu,
            cfg.encoder_config(),
            cfg.model.init_seed.unwrap_or(cfg.train.seed),
        )?
    } else {
        trained
    };
    if let Some(d) = &common.data {
        cfg.data.dataset = d.clone();
    }
    if let Some(c) = &common.cache {
        cfg.data.cache = c.display().to_string();
    }
    let train = cfg.data.open(Split::Train)?;
    let test = cfg.data.open(Split::Test)?;
    anyhow::ensure!(
        train.classes == test.classes,
        "{} has {} classes, {} {}",
        train.name,
        train.classes,
        test.name,
        test.classes
    );
    let size = cfg.data.size;
    let norm = cfg.normalize();
    let ft = extract(&gpu, &encoder, &train, size, &norm, 256)?;
    let fe = extract(&gpu, &encoder, &test, size, &norm, 256)?;
    let which = if common.init {
        "initialisation"
    } else {
        "trained"
    };
    let mut j = serde_json::json!({
        "checkpoint": common.checkpoint.display().to_string(),
        "encoder": which,
        "dataset": cfg.data.dataset,
        "train_images": train.len(),
        "test_images": test.len(),
        "classes": train.classes,
        "adapter": gpu.describe(),
    });
    let table = match what {
        EvalCmd::Knn { k, temperature, .. } => {
            let kc = scorecl_host::core::knn::KnnConfig {
                k: *k,
                temperature: *temperature,
            };
            let r = knn_features(
                &gpu,
                &ft,
                &train.labels,
                &fe,
                &test.labels,
                train.classes,
                &kc,
            )?;
            j["eval"] = "knn".into();
            j["k"] = (*k).into();
            j["temperature"] = (*temperature).into();
            j["top1"] = r.top1.into();
            format!(
                "k-NN (k {k}, T {temperature})   top-1 {:6.2} %   ({}/{})",
                r.top1, r.correct, r.total
            )
        }
        EvalCmd::Linear {
            epochs,
            lr,
            optimizer,
            batch_size,
            weight_decay,
            ..
        } => {
            let lc = LinearConfig {
                epochs: *epochs,
                batch_size: *batch_size,
                optimizer: optimizer.clone(),
                lr: *lr,
                weight_decay: *weight_decay,
                seed: cfg.train.seed,
            };
            let r = linear_probe(
                &gpu,
                &ft,
                &train.labels,
                &fe,
                &test.labels,
                train.classes,
                &lc,
            )?;
            j["eval"] = "linear".into();
            j["linear"] = serde_json::to_value(&lc)?;
            j["top1"] = r.top1.into();
            j["top5"] = r.top5.into();
            j["train_loss"] = r.train_loss.into();
            let t5 = r
                .top5
                .map_or(String::new(), |t| format!("   top-5 {t:6.2} %"));
            format!(
                "linear probe ({optimizer}, lr {lr}, {epochs} epochs)   top-1 {:6.2} %{t5}   (train loss {:.4})",
                r.top1, r.train_loss
            )
        }
    };
    if common.json {
        println!("{j}");
    } else {
        println!(
            "{} encoder of {} (ResNet-18 width {}, {}×{} inputs)",
            which,
            common.checkpoint.display(),
            cfg.model.width,
            size,
            size
        );
        println!(
            "data: {} — {} training / {} test images, {} classes",
            cfg.data.dataset,
            train.len(),
            test.len(),
            train.classes
        );
        println!("{table}");
        println!("adapter: {}", gpu.describe());
    }
    Ok(())
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The configuration (TOML; presets in configs/).
    #[arg(long, required_unless_present = "resume")]
    config: Option<std::path::PathBuf>,
    /// Dataset, overriding data.dataset (builtin[:N], cifar10:DIR,
    /// cifar100:DIR, folder:DIR).
    #[arg(long)]
    data: Option<String>,
    /// Method, overriding `method` (simclr, simsiam, wmse, vicreg).
    #[arg(long)]
    method: Option<String>,
    /// ScoreCL weights: on, off (the plain method), shuffled (control) or
    /// augment (hand-crafted control from crop area and jitter).
    #[arg(long)]
    scorecl: Option<String>,
    /// Epochs, overriding train.epochs.
    #[arg(long)]
    epochs: Option<u64>,
    /// Batch size, overriding train.batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed, overriding train.seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default runs/<method>-<scorecl>-<seed>, numbered when
    /// taken).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Continue the run in this directory exactly where it stopped (its
    /// saved configuration is used; no other option may change it).
    #[arg(long, conflicts_with_all = ["config", "data", "method", "scorecl", "epochs", "batch_size", "seed", "out"])]
    resume: Option<std::path::PathBuf>,
    /// Stop after this many steps in total, with a checkpoint.
    #[arg(long)]
    max_steps: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Accept a configuration file that sets nothing (every default).
    #[arg(long)]
    allow_defaults: bool,
}

fn train(cli: &Cli, a: &TrainArgs) -> anyhow::Result<()> {
    use scorecl_host::train::{run_training, Method, RunDir, RunOptions, TrainConfig, Trainer};
    let (cfg, dir) = if let Some(dir) = &a.resume {
        let dir = RunDir::new(dir);
        (dir.checkpoint_config()?, dir)
    } else {
        let path = a.config.as_ref().expect("clap requires --config");
        let mut cfg = TrainConfig::load_with(path, a.allow_defaults)?;
        if let Some(d) = &a.data {
            cfg.data.dataset = d.clone();
        }
        if let Some(m) = &a.method {
            cfg.method = Method::parse(m)?;
        }
        if let Some(m) = &a.scorecl {
            cfg.scorecl.mode =
                scorecl_host::core::weights::WeightMode::parse_for("scorecl.mode", m)?;
        }
        if let Some(e) = a.epochs {
            cfg.train.epochs = e;
        }
        if let Some(b) = a.batch_size {
            cfg.train.batch_size = b;
        }
        if let Some(s) = a.seed {
            cfg.train.seed = s;
        }
        cfg.validate().map_err(|e| {
            anyhow::anyhow!("{} (after command-line overrides): {e}", path.display())
        })?;
        // Without --out: runs/<method>-<scorecl>-<seed>, numbered -2, -3, …
        // when that already holds a run.
        let out = a.out.clone().unwrap_or_else(|| {
            let base = format!(
                "runs/{}-{}-{}",
                cfg.method.name(),
                cfg.scorecl.mode.name(),
                cfg.train.seed
            );
            (1..)
                .map(|i| {
                    std::path::PathBuf::from(if i == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{i}")
                    })
                })
                .find(|p| RunDir::new(p).resume_dir().is_err())
                .expect("an unused run directory")
        });
        // checkpoint/ or, after a swap cut short, checkpoint.prev/.
        anyhow::ensure!(
            RunDir::new(&out).resume_dir().is_err(),
            "{} already holds a run: resume it with --resume {0}, or choose another --out",
            out.display()
        );
        (cfg, RunDir::new(out))
    };
    let gpu = gpu(cli)?;
    let data = cfg.data.open(Split::Train)?;
    println!(
        "{}, ScoreCL {}, on {} ({} images, {}×{}), ResNet-18 width {}, batch {}, {} epochs, on {}",
        cfg.method.name(),
        cfg.scorecl.mode.name(),
        data.name,
        data.len(),
        data.h,
        data.w,
        cfg.model.width,
        cfg.train.batch_size,
        cfg.train.epochs,
        gpu.describe()
    );
    println!(
        "resolved configuration: {}",
        dir.path.join("config.toml").display()
    );
    let mut trainer = if a.resume.is_some() {
        let t = dir.resume(&gpu, cfg, data)?;
        println!(
            "resuming at step {} (epoch {})",
            t.state.step,
            t.state.epoch + 1
        );
        t
    } else {
        Trainer::new(&gpu, cfg, data)?
    };
    let opts = RunOptions {
        max_steps: a.max_steps,
        progress: !a.quiet,
    };
    let s = run_training(&mut trainer, &dir, &opts).with_context(|| {
        format!(
            "training in {} (resume with --resume {0})",
            dir.path.display()
        )
    })?;
    let f = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "{} after {} steps ({} epochs) in {:.1} s, {:.1} images/s: loss {} → {}, DSM loss {} → {}",
        if s.finished { "finished" } else { "stopped" },
        s.steps,
        s.epochs,
        s.seconds,
        s.images_per_s,
        f(s.first_loss),
        f(s.last_loss),
        f(s.first_dsm_loss),
        f(s.last_dsm_loss),
    );
    if let Some(k) = &s.knn {
        println!("k-NN top-1 on the test split: {:.2} %", k.top1);
    }
    println!(
        "checkpoint: {}  metrics: {}  plots: {}/*.png",
        dir.checkpoint_dir().display(),
        dir.metrics_path().display(),
        dir.path.display()
    );
    Ok(())
}

#[derive(Subcommand)]
enum EncoderCmd {
    /// Write a freshly initialised ResNet-18 as safetensors (torchvision
    /// names; loads into torchvision's resnet18 with fc removed).
    Init {
        /// Base width (64: the standard ResNet-18).
        #[arg(long, default_value_t = 64)]
        width: usize,
        /// Stem: cifar (3×3, stride 1, no max-pool) or imagenet.
        #[arg(long, default_value = "cifar")]
        stem: String,
        /// Seed of the initial weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

fn stem(name: &str) -> anyhow::Result<Stem> {
    use scorecl_host::train::StemKind;
    Ok(match StemKind::parse_for("--stem", name)? {
        StemKind::Cifar => Stem::Cifar { padding: 1 },
        StemKind::Imagenet => Stem::ImageNet,
    })
}

#[derive(Subcommand)]
enum BenchCmd {
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
    /// Images/s of ResNet-18 forward and forward+backward.
    Encoder {
        /// Base width (64: the standard ResNet-18).
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

fn gpu(cli: &Cli) -> anyhow::Result<Gpu> {
    let mut opts = GpuOptions::from_env();
    if cli.adapter.is_some() {
        opts.adapter = cli.adapter.clone();
    }
    if cli.device.is_some() {
        opts.device = cli.device.clone();
    }
    Gpu::new(&opts).context("opening the device")
}

fn doctor(cli: &Cli, json: bool) -> anyhow::Result<()> {
    use scorecl_host::doctor;
    let adapters = doctor::adapters();
    if !json {
        println!("scorecl {}", env!("CARGO_PKG_VERSION"));
        println!("adapters wgpu sees ({}):", adapters.len());
        for (i, a) in adapters.iter().enumerate() {
            println!(
                "\n[{i}] {} ({}, {}), driver {}",
                a.name, a.backend, a.device_type, a.driver
            );
            println!(
                "    subgroups {} (sizes {}–{}), shader-f16 {}, timestamps {}",
                a.subgroups, a.subgroup_size.0, a.subgroup_size.1, a.shader_f16, a.timestamps
            );
            println!(
                "    scorecl uses: reductions in {}; GEMM {}; f16 {}",
                a.reductions,
                a.gemm,
                if a.shader_f16 {
                    "storage available (train.precision = \"f16\")"
                } else {
                    "off (train.precision = \"f16\" runs in f32)"
                }
            );
            println!(
                "    cooperative matrix: {}",
                if a.coop_matrix.is_empty() {
                    "none scorecl can use".to_string()
                } else {
                    format!(
                        "{} (opt in with SCORECL_COOP_MATRIX=1)",
                        a.coop_matrix.join(", ")
                    )
                }
            );
            let l = &a.limits;
            println!(
                "    limits: buffer {} MiB, storage binding {} MiB, {} storage buffers/stage, \
                 workgroup memory {} KiB, {} invocations/workgroup, {} workgroups/dimension",
                l.max_buffer_size >> 20,
                l.max_storage_buffer_binding_size >> 20,
                l.max_storage_buffers_per_shader_stage,
                l.max_compute_workgroup_storage_size >> 10,
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroups_per_dimension
            );
        }
    }
    let cpu_info = scorecl_host::native::CpuInfo::detect();
    if !json {
        println!(
            "\nnative CPU device (--device cpu): {} threads, {}, GEMM {}, memory {} MiB",
            cpu_info.threads,
            cpu_info.simd,
            cpu_info.gemm,
            cpu_info.memory >> 20
        );
    }
    let gpu = gpu(cli)?;
    let checks = doctor::self_check(&gpu)?;
    // The CPU device's checks too, when it is not the chosen device.
    let cpu_checks = if gpu.is_native() {
        Vec::new()
    } else {
        let cpu = Gpu::native(&GpuOptions {
            quiet: true,
            ..GpuOptions::default()
        })?;
        doctor::self_check(&cpu)?
    };
    let ok = checks.iter().chain(&cpu_checks).all(|c| c.passed);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "adapters": adapters,
                "cpu": cpu_info,
                "chosen": gpu.describe(),
                "checks": checks,
                "cpu_checks": cpu_checks,
                "passed": ok,
            })
        );
    } else {
        let print = |on: &str, checks: &[doctor::Check]| {
            println!("\nchecks on {on}:");
            for c in checks {
                println!(
                    "  {:4} {} (max rel. error {:.1e} ≤ {:.0e}, {:.1} ms)",
                    if c.passed { "ok" } else { "FAIL" },
                    c.name,
                    c.max_rel_err,
                    c.tolerance,
                    c.ms
                );
            }
        };
        print(&gpu.describe(), &checks);
        if !cpu_checks.is_empty() {
            print("the native CPU device", &cpu_checks);
        }
    }
    anyhow::ensure!(
        ok,
        "a check failed on `{}` or the native CPU device: the kernels do not match the \
         core there; please report it with this output",
        gpu.info.name
    );
    if !json {
        println!("all checks passed");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Train(a) => train(&cli, a)?,
        Command::Eval { what } => eval(&cli, what)?,
        Command::Compare {
            config,
            methods,
            weightings,
            seeds,
            data,
            epochs,
            batch_size,
            out,
            quiet,
            json,
            linear,
            linear_epochs,
            sets,
        } => {
            use scorecl_host::train::compare::{
                run_compare, summarise, summarise_linear, table, CompareSpec,
            };
            use scorecl_host::train::{Method, TrainConfig};
            let mut cfg = TrainConfig::load(config)?;
            if let Some(d) = data {
                cfg.data.dataset = d.clone();
            }
            if let Some(e) = epochs {
                cfg.train.epochs = *e;
            }
            if let Some(b) = batch_size {
                cfg.train.batch_size = *b;
            }
            let cfg = cfg.with_overrides(sets)?;
            cfg.validate().map_err(|e| {
                anyhow::anyhow!("{} (after command-line overrides): {e}", config.display())
            })?;
            let spec = CompareSpec {
                methods: methods
                    .iter()
                    .map(|m| Method::parse(m))
                    .collect::<Result<_, _>>()?,
                weightings: weightings.clone(),
                seeds: seeds.clone(),
                linear: linear.then(|| scorecl_host::eval::LinearConfig {
                    epochs: *linear_epochs,
                    ..Default::default()
                }),
            };
            let gpu = gpu(&cli)?;
            let results = run_compare(&gpu, &cfg, &spec, out, !quiet, |r, cached| {
                if *json {
                    return;
                }
                let lin = r
                    .linear_top1
                    .map_or(String::new(), |l| format!(", linear {l:.2} %"));
                println!(
                    "{} {} seed {}: k-NN top-1 {:.2} %{lin}{}",
                    r.method,
                    r.weighting,
                    r.seed,
                    r.top1,
                    if cached {
                        " (done before, skipped)"
                    } else {
                        ""
                    }
                );
            })?;
            let t = table(&results);
            let md = format!(
                "# scorecl compare\n\nData `{}`, {} epochs, batch {}, seeds {:?}, on {}.\n\n{t}",
                cfg.data.dataset,
                cfg.train.epochs,
                cfg.train.batch_size,
                seeds,
                gpu.describe()
            );
            let path = out.join("compare.md");
            scorecl_host::nn::checkpoint::write_atomic(&path, md.as_bytes())?;
            let doc = serde_json::json!({
                "dataset": cfg.data.dataset,
                "epochs": cfg.train.epochs,
                "batch_size": cfg.train.batch_size,
                "device": gpu.describe(),
                "runs": results,
                "cells": summarise(&results),
                "linear_cells": summarise_linear(&results),
            });
            let text = serde_json::to_string_pretty(&doc)?;
            let json_path = out.join("compare.json");
            scorecl_host::nn::checkpoint::write_atomic(&json_path, text.as_bytes())?;
            if *json {
                println!("{text}");
            } else {
                println!(
                    "\n{t}\nwritten to {} and {}",
                    path.display(),
                    json_path.display()
                );
            }
        }
        Command::Probe {
            checkpoint,
            train_score_epochs,
            config,
            data,
            images,
            seed,
            out,
            json,
            sets,
        } => {
            use scorecl_host::train::{RunDir, TrainConfig};
            let gpu = gpu(&cli)?;
            let (net, cfg, source) = match (checkpoint, train_score_epochs) {
                (Some(run), _) => {
                    let (net, mut cfg) = RunDir::load_score(&gpu, run)?;
                    if let Some(d) = data {
                        cfg.data.dataset = d.clone();
                    }
                    (net, cfg, run.display().to_string())
                }
                (None, Some(epochs)) => {
                    let mut cfg = match config {
                        Some(path) => TrainConfig::load(path)?,
                        None => TrainConfig::default(),
                    };
                    if let Some(d) = data {
                        cfg.data.dataset = d.clone();
                    }
                    let cfg = cfg.with_overrides(sets)?;
                    let train = cfg.data.open(Split::Train)?;
                    let quiet = *json;
                    let net = scorecl_host::train::score_only::train_score_alone(
                        &gpu,
                        &cfg,
                        &train,
                        *epochs,
                        |e, loss| {
                            if !quiet {
                                println!("score network epoch {}: DSM loss {loss:.5}", e + 1);
                            }
                        },
                    )?;
                    (
                        net,
                        cfg,
                        format!("score network trained alone for {epochs} epochs"),
                    )
                }
                (None, None) => anyhow::bail!("give --checkpoint RUN or --train-score-epochs N"),
            };
            let test = cfg.data.open(Split::Test)?;
            let cfg = cfg.with_overrides(sets)?;
            let stat = scorecl_host::probe::StatSpec {
                kind: cfg.scorecl.statistic,
                sigmas: cfg.scorecl.stat_sigmas(),
            };
            let reports = scorecl_host::probe::probe(
                &gpu,
                &net,
                &stat,
                &test,
                cfg.data.size,
                *images,
                &cfg.augment,
                *seed,
            )?;
            let dir = out.clone().unwrap_or_else(|| match checkpoint {
                Some(run) => run.join("probe"),
                None => std::path::PathBuf::from("runs/probe"),
            });
            let mut files = scorecl_host::probe::write_outputs(&dir, &reports)?;
            if train_score_epochs.is_some() && checkpoint.is_none() {
                // The network trained alone, for `scorecl.score_init`.
                let path = dir.join("score.safetensors");
                scorecl_host::nn::checkpoint::save(&gpu, &net.store, &path)?;
                files.push(path);
            }
            if *json {
                println!(
                    "{}",
                    serde_json::json!({
                        "source": source,
                        "dataset": cfg.data.dataset,
                        "images": images.min(&test.len()),
                        "sigma_ref": cfg.scorecl.sigma_ref(),
                        "families": reports,
                        "adapter": gpu.describe(),
                    })
                );
            } else {
                println!(
                    "score statistic S = |s(v, σ_ref)|/√D (σ_ref {}) on {} test images of {}",
                    cfg.scorecl.sigma_ref(),
                    images.min(&test.len()),
                    cfg.data.dataset
                );
                for r in &reports {
                    let rho = r
                        .spearman
                        .map_or("undefined".into(), |v| format!("{v:+.3}"));
                    println!(
                        "\n{} ({}); Spearman ρ(strength, |S − S₀|) = {rho}; S₀ = {:.4}",
                        r.name, r.strength_label, r.original_mean
                    );
                    println!("  strength   S mean    S std   |S − S₀|");
                    for l in &r.levels {
                        println!(
                            "  {:8.3} {:8.4} {:8.4} {:9.4}",
                            l.strength, l.mean, l.std, l.mean_abs_diff
                        );
                    }
                }
                println!("\nwrote {} files to {}", files.len(), dir.display());
                println!("adapter: {}", gpu.describe());
            }
        }
        Command::Doctor { json } => doctor(&cli, *json)?,
        Command::Plot { run_dir } => {
            let files = scorecl_host::plot::plot_run(run_dir)?;
            anyhow::ensure!(
                !files.is_empty(),
                "{}: no epoch records to plot yet",
                run_dir.join("metrics.jsonl").display()
            );
            for f in files {
                println!("{}", f.display());
            }
        }
        Command::Bench {
            what:
                BenchCmd::Train {
                    config,
                    batch_size,
                    width,
                    precision,
                    steps,
                    profile,
                    json,
                },
        } => {
            let mut cfg = scorecl_host::train::TrainConfig::load(config)?;
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
            let gpu = gpu(&cli)?;
            let rows = bench::time_train(&gpu, &cfg, *steps, &["off", "on"], *profile)
                .context("benchmarking training steps")?;
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
                    "profile": on.profile.iter().map(|(k, t, n)| serde_json::json!({"kernel": k, "seconds": t, "dispatches": n})).collect::<Vec<_>>(),
                });
                println!("{report}");
            } else {
                println!(
                    "{} training step (ResNet-18 width {}, {}×{}, batch {}, score network width {}, {} convolutions) on {}",
                    cfg.method.name(),
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
        Command::Encoder {
            what:
                EncoderCmd::Init {
                    width,
                    stem: s,
                    seed,
                    out,
                },
        } => {
            let stem = stem(s)?;
            anyhow::ensure!(*width >= 1, "--width must be at least 1");
            let gpu = gpu(&cli)?;
            let model = ResNet::new(&gpu, ResNetConfig::resnet18(*width, stem), *seed)?;
            checkpoint::save(&gpu, &model.store, out)?;
            println!(
                "wrote {} ({} parameters, {} tensors)",
                out.display(),
                model.store.numel(),
                model.store.params.len() + model.store.states.len() + model.store.counters.len()
            );
        }
        Command::Bench {
            what:
                BenchCmd::Encoder {
                    width,
                    batch,
                    size,
                    stem: s,
                    seconds,
                    profile,
                    json,
                },
        } => {
            let stem = stem(s)?;
            anyhow::ensure!(
                *width >= 1 && *batch >= 1 && *size >= 8,
                "--width, --batch ≥ 1 and --size ≥ 8"
            );
            let gpu = gpu(&cli)?;
            let cfg = ResNetConfig::resnet18(*width, stem);
            let r = bench::time_encoder(&gpu, cfg, *batch, *size, *seconds, *profile)
                .context("benchmarking the encoder")?;
            if *json {
                let report = serde_json::json!({
                    "adapter": gpu.info.name,
                    "backend": gpu.backend_name(),
                    "model": "resnet18",
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
                    "ResNet-18 ({s} stem, width {width}, {size}×{size}, batch {batch}) on {}",
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
        Command::Bench {
            what:
                BenchCmd::Gemm {
                    max,
                    seconds,
                    only,
                    kernel,
                    json,
                },
        } => {
            let kernel = gemm_kernel(kernel)?;
            let gpu = gpu(&cli)?;
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
