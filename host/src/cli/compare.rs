//! `scorecl compare`: methods × weightings × seeds, resumable, with the paired differences.

use super::{gpu, Cli};

/// The arguments of `scorecl compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
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
}

/// Runs `scorecl compare`.
pub(super) fn run(cli: &Cli, a: &CompareArgs) -> anyhow::Result<()> {
    let CompareArgs {
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
    } = a;

    use crate::train::compare::{run_compare, summarise, summarise_linear, table, CompareSpec};
    use crate::train::{Method, TrainConfig};
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
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{} (after command-line overrides): {e}", config.display()))?;
    let spec = CompareSpec {
        methods: methods
            .iter()
            .map(|m| Method::parse(m))
            .collect::<Result<_, _>>()?,
        weightings: weightings.clone(),
        seeds: seeds.clone(),
        linear: linear.then(|| crate::eval::LinearConfig {
            epochs: *linear_epochs,
            ..Default::default()
        }),
    };
    let gpu = gpu(cli)?;
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
    crate::nn::checkpoint::write_atomic(&path, md.as_bytes())?;
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
    crate::nn::checkpoint::write_atomic(&json_path, text.as_bytes())?;
    if *json {
        println!("{text}");
    } else {
        println!(
            "\n{t}\nwritten to {} and {}",
            path.display(),
            json_path.display()
        );
    }

    Ok(())
}
