//! `scorecl probe`: does the score statistic grow with augmentation strength?

use super::{gpu, Cli};
use crate::data::Split;

/// The arguments of `scorecl probe`.
#[derive(clap::Args)]
pub struct ProbeArgs {
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
}

/// Runs `scorecl probe`.
pub(super) fn run(cli: &Cli, a: &ProbeArgs) -> anyhow::Result<()> {
    let ProbeArgs {
        checkpoint,
        train_score_epochs,
        config,
        data,
        images,
        seed,
        out,
        json,
        sets,
    } = a;

    use crate::train::{RunDir, TrainConfig};
    let gpu = gpu(cli)?;
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
            let net = crate::train::score_only::train_score_alone(
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
    let stat = crate::score_probe::StatSpec {
        kind: cfg.scorecl.statistic,
        sigmas: cfg.scorecl.stat_sigmas(),
    };
    let reports = crate::score_probe::probe(
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
    let mut files = crate::score_probe::write_outputs(&dir, &reports)?;
    if train_score_epochs.is_some() && checkpoint.is_none() {
        // The network trained alone, for `scorecl.score_init`.
        let path = dir.join("score.safetensors");
        crate::nn::checkpoint::save(&gpu, &net.store, &path)?;
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

    Ok(())
}
