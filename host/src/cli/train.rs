//! `scorecl train`: one training run (new, or resumed exactly).

use super::{gpu_of_rank, Cli};
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
    /// Train on this many devices of this machine in one process, one rank
    /// each (threads exchanging through memory; the global batch
    /// train.batch_size split between them, as `mpirun -n N` does with the
    /// mpi feature). With several GPUs each rank takes its own; on the CPU
    /// device the ranks share the cores.
    #[arg(long, default_value_t = 1)]
    devices: usize,
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
    anyhow::ensure!(a.devices >= 1, "--devices {}: at least 1", a.devices);
    if a.devices > 1 {
        return run_threads(cli, a);
    }
    // One rank, or one of an MPI launch's (feature `mpi`).
    crate::dist::split_threads();
    let comm = crate::dist::from_launcher()?;
    let local_rank = crate::dist::launcher_local_rank().map(|(r, _)| r);
    let result = run_rank(cli, a, comm.clone(), local_rank);
    if let Err(e) = &result {
        if comm.size() > 1 {
            // The others would wait for this rank until their deadline.
            eprintln!("error: rank {}: {e:#}", comm.rank());
            comm.abort();
        }
    }
    result
}

/// `--devices N`: N ranks as threads of this process. A rank that fails
/// ends the others' exchanges (they name it); the first error is returned.
fn run_threads(cli: &Cli, a: &TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::dist::launcher_world_size().unwrap_or(1) <= 1,
        "--devices {} under an MPI launch of several ranks: use one or the other",
        a.devices
    );
    let timeout = match std::env::var("SCORECL_DIST_TIMEOUT") {
        Err(_) => std::time::Duration::from_secs(1800),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 => std::time::Duration::from_secs_f64(s),
            _ => anyhow::bail!("SCORECL_DIST_TIMEOUT: `{v}`: seconds, a positive number"),
        },
    };
    let comms = crate::dist::ThreadComm::group(a.devices);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(rank, mut comm)| {
                comm.timeout = timeout;
                s.spawn(move || {
                    let link: crate::dist::Link = std::rc::Rc::new(comm);
                    run_rank(cli, a, link, Some(rank))
                        .with_context(|| format!("rank {rank} of {}", a.devices))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a rank's thread panicked")))
            })
            .collect()
    });
    // The rank that failed first is the one whose error is not another
    // rank leaving.
    let mut errors: Vec<anyhow::Error> = results.into_iter().filter_map(|r| r.err()).collect();
    let own = errors.iter().position(|e| {
        !matches!(
            e.downcast_ref::<crate::train::TrainError>(),
            Some(crate::train::TrainError::Host(crate::Error::Peer { .. }))
        ) && !matches!(
            e.downcast_ref::<crate::Error>(),
            Some(crate::Error::Peer { .. })
        )
    });
    match own {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(()), Err),
    }
}

fn run_rank(
    cli: &Cli,
    a: &TrainArgs,
    comm: crate::dist::Link,
    local_rank: Option<usize>,
) -> anyhow::Result<()> {
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
    let gpu = gpu_of_rank(cli, local_rank)?;
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
