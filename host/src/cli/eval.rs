//! `scorecl eval knn|linear`: k-NN or a linear probe on a trained backbone's frozen features.

use super::{gpu, Cli};
use crate::data::Split;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum EvalCmd {
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
pub struct EvalArgs {
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

pub(super) fn run(cli: &Cli, what: &EvalCmd) -> anyhow::Result<()> {
    use crate::eval::{extract, knn_features, linear_probe, LinearConfig};
    use crate::train::RunDir;
    let common = match what {
        EvalCmd::Knn { common, .. } | EvalCmd::Linear { common, .. } => common,
    };
    let gpu = gpu(cli)?;
    let (trained, mut cfg) = RunDir::load_backbone(&gpu, &common.checkpoint)?;
    let encoder = if common.init {
        cfg.build_encoder(&gpu, cfg.model.init_seed.unwrap_or(cfg.train.seed))?
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
    let ft = extract(&gpu, encoder.as_ref(), &train, size, &norm, 256)?;
    let fe = extract(&gpu, encoder.as_ref(), &test, size, &norm, 256)?;
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
            let kc = crate::core::knn::KnnConfig {
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
            "{} encoder of {} ({} width {}, {}×{} inputs)",
            which,
            common.checkpoint.display(),
            cfg.model.arch.name(),
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
