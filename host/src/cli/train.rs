//! `scorecl train`: one training run (new, or resumed exactly).

use super::{gpu, Cli};
use crate::data::Split;
use crate::train::Choice;
use anyhow::Context;

#[derive(clap::Args)]
pub struct TrainArgs {
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

pub(super) fn run(cli: &Cli, a: &TrainArgs) -> anyhow::Result<()> {
    // One rank, or one of an MPI launch's (feature `mpi`).
    crate::dist::split_threads();
    let comm = crate::dist::from_launcher()?;
    let result = run_rank(cli, a, comm.clone());
    if let Err(e) = &result {
        if comm.size() > 1 {
            // The others would wait for this rank until their deadline.
            eprintln!("error: rank {}: {e:#}", comm.rank());
            comm.abort();
        }
    }
    result
}

fn run_rank(cli: &Cli, a: &TrainArgs, comm: crate::dist::Link) -> anyhow::Result<()> {
    use crate::train::{run_training, Method, RunDir, RunOptions, TrainConfig, Trainer};
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
            cfg.scorecl.mode = crate::core::weights::WeightMode::parse_for("scorecl.mode", m)?;
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
    let lead = comm.rank() == 0;
    let gpu = gpu(cli)?;
    let data = cfg.data.open(Split::Train)?;
    if comm.size() > 1 {
        eprintln!(
            "rank {} of {} ({}) on {}",
            comm.rank(),
            comm.size(),
            comm.transport(),
            gpu.describe()
        );
    }
    if lead {
        println!(
            "{}, ScoreCL {}, on {} ({} images, {}×{}), {} width {}, batch {}, {} epochs, on {}",
            cfg.method.name(),
            cfg.scorecl.mode.name(),
            data.name,
            data.len(),
            data.h,
            data.w,
            cfg.model.arch.name(),
            cfg.model.width,
            cfg.train.batch_size,
            cfg.train.epochs,
            gpu.describe()
        );
        println!(
            "resolved configuration: {}",
            dir.path.join("config.toml").display()
        );
    }
    let mut trainer = if a.resume.is_some() {
        let t = dir.resume_with(&gpu, cfg, data, comm)?;
        if lead {
            println!(
                "resuming at step {} (epoch {})",
                t.state.step,
                t.state.epoch + 1
            );
        }
        t
    } else {
        Trainer::with_comm(&gpu, cfg, data, comm)?
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
    if !lead {
        return Ok(());
    }
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
