//! `scorecl compare`: the same data and seeds, the chosen methods with
//! ScoreCL's weighting off (the plain method), on, shuffled (the control:
//! the same weights given to the wrong pairs) and optionally augment (the
//! hand-crafted control: the same transform of crop-area and jitter
//! strengths read off the augmentation parameters), over several seeds;
//! k-NN top-1 per run, then mean ± std over seeds per method and weighting
//! with the paired difference to `off` (same seeds) and its 95 % Student-t
//! interval ([`summarise`]; `compare.md` and `compare.json`).
//!
//! Each run lives in `OUT/<method>-<weighting>-<seed>/` and, once
//! evaluated, holds `result.json`: a finished run is not run again, and an
//! interrupted one resumes from its checkpoint.

use std::path::{Path, PathBuf};

use crate::train::config::Choice;
use scorecl_core::weights::WeightMode;
use serde::{Deserialize, Serialize};

use crate::data::Split;
use crate::eval::knn_eval;
use crate::gpu::Gpu;
use crate::nn::checkpoint::write_atomic;
use crate::train::{
    run_training, Method, RunDir, RunOptions, TrainConfig, TrainError, TrainResult, Trainer,
};

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    /// Methods.
    pub methods: Vec<Method>,
    /// Weightings: `off`, `on`, `shuffled`, `augment`.
    pub weightings: Vec<String>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Also the linear probe (`eval::linear_probe` with these settings,
    /// seed = the run's) on every run, read-back ones included.
    pub linear: Option<crate::eval::LinearConfig>,
}

/// The score network's DSM loss per noise level on the test split after
/// training (`Trainer::dsm_per_level`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DsmLevels {
    /// Noise levels, σ_max first.
    pub sigma: Vec<f32>,
    /// Mean DSM loss per image at each level.
    pub loss: Vec<f64>,
    /// A zero output's loss at every level, ½·D.
    pub zero: f64,
}

/// One finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Method name.
    pub method: String,
    /// Weighting (`scorecl.mode`).
    pub weighting: String,
    /// Seed.
    pub seed: u64,
    /// k-NN top-1 on the test split, percent.
    pub top1: f64,
    /// Training wall time of the run, seconds (0 when it was resumed).
    pub seconds: f64,
    /// Linear-probe top-1 on the test split, percent (with `--linear`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_top1: Option<f64>,
    /// The score network's DSM loss per level (runs with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsm: Option<DsmLevels>,
}

/// The run folder of one (method, weighting, seed).
pub fn run_dir(out: &Path, method: Method, weighting: &str, seed: u64) -> PathBuf {
    out.join(format!("{}-{weighting}-{seed}", method.name()))
}

/// Runs (or reads back) every combination; `on_run` is told each result
/// and whether it was read back.
pub fn run_compare(
    gpu: &Gpu,
    base: &TrainConfig,
    spec: &CompareSpec,
    out: &Path,
    progress: bool,
    mut on_run: impl FnMut(&RunResult, bool),
) -> TrainResult<Vec<RunResult>> {
    let mut modes = Vec::new();
    for w in &spec.weightings {
        let Some(m) = WeightMode::from_name(w).filter(|m| m.name() == w) else {
            return Err(crate::Error::config(
                "--weightings",
                format!("`{w}`: allowed {}", WeightMode::allowed()),
            )
            .into());
        };
        modes.push(m);
    }
    let mut results = Vec::new();
    for &method in &spec.methods {
        for (w, &mode) in spec.weightings.iter().zip(&modes) {
            for &seed in &spec.seeds {
                let dir = run_dir(out, method, w, seed);
                let result_path = dir.join("result.json");
                if result_path.exists() {
                    let text = std::fs::read_to_string(&result_path).map_err(|e| {
                        TrainError::checkpoint(&result_path, format!("cannot read: {e}"))
                    })?;
                    let mut r: RunResult = serde_json::from_str(&text).map_err(|e| {
                        TrainError::checkpoint(&result_path, format!("not a compare result: {e}"))
                    })?;
                    if let (Some(lc), None) = (&spec.linear, r.linear_top1) {
                        let (encoder, cfg) = RunDir::load_backbone(gpu, &dir)?;
                        let train = cfg.data.open(Split::Train)?;
                        let test = cfg.data.open(Split::Test)?;
                        r.linear_top1 =
                            Some(linear_top1(gpu, encoder.as_ref(), &cfg, &train, &test, lc)?);
                        let json = serde_json::to_string_pretty(&r).expect("a result serialises");
                        write_atomic(&result_path, json.as_bytes())?;
                    }
                    on_run(&r, true);
                    results.push(r);
                    continue;
                }
                let mut cfg = base.clone();
                cfg.method = method;
                cfg.scorecl.mode = mode;
                cfg.train.seed = seed;
                cfg.validate()?;
                let rd = RunDir::new(&dir);
                let train = cfg.data.open(Split::Train)?;
                let test = cfg.data.open(Split::Test)?;
                let mut t = if rd.resume_dir().is_ok() {
                    rd.resume(gpu, rd.checkpoint_config()?, train)?
                } else {
                    Trainer::new(gpu, cfg.clone(), train)?
                };
                let s = run_training(
                    &mut t,
                    &rd,
                    &RunOptions {
                        max_steps: None,
                        progress,
                    },
                )?;
                // The monitor has evaluated the final encoder when it is on.
                let k = match s.knn.clone().filter(|_| s.finished) {
                    Some(k) => k,
                    None => knn_eval(
                        gpu,
                        t.encoder.as_ref(),
                        &t.data,
                        &test,
                        cfg.data.size,
                        &cfg.normalize(),
                        &cfg.eval.knn(),
                    )?,
                };
                let linear = match &spec.linear {
                    Some(lc) => Some(linear_top1(
                        gpu,
                        t.encoder.as_ref(),
                        &cfg,
                        &t.data,
                        &test,
                        lc,
                    )?),
                    None => None,
                };
                let dsm = match t.dsm_per_level(&test)? {
                    Some(loss) => {
                        let sched = cfg.scorecl.schedule();
                        Some(DsmLevels {
                            sigma: (0..sched.levels).map(|k| sched.sigma(k)).collect(),
                            loss,
                            zero: 0.5 * (3 * test.h * test.w) as f64,
                        })
                    }
                    None => None,
                };
                let r = RunResult {
                    method: method.name().to_string(),
                    weighting: w.clone(),
                    seed,
                    top1: k.top1,
                    seconds: s.seconds,
                    linear_top1: linear,
                    dsm,
                };
                let json = serde_json::to_string_pretty(&r).expect("a result serialises");
                write_atomic(&result_path, json.as_bytes())?;
                on_run(&r, false);
                results.push(r);
            }
        }
    }
    Ok(results)
}

/// Linear-probe top-1 (percent) of `encoder` on frozen features of
/// `train` → `test`, the probe seeded with the run's seed.
fn linear_top1(
    gpu: &Gpu,
    encoder: &dyn crate::nn::Encoder,
    cfg: &TrainConfig,
    train: &crate::data::Dataset,
    test: &crate::data::Dataset,
    lc: &crate::eval::LinearConfig,
) -> TrainResult<f64> {
    use crate::eval::{extract, linear_probe, LinearConfig};
    let norm = cfg.normalize();
    let ft = extract(gpu, encoder, train, cfg.data.size, &norm, 256)?;
    let fe = extract(gpu, encoder, test, cfg.data.size, &norm, 256)?;
    let lc = LinearConfig {
        seed: cfg.train.seed,
        ..lc.clone()
    };
    let r = linear_probe(
        gpu,
        &ft,
        &train.labels,
        &fe,
        &test.labels,
        train.classes,
        &lc,
    )?;
    Ok(r.top1)
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// A paired difference over seeds: mean, sample std and the two-sided
/// Student-t interval of the mean at `level` (`scipy.stats.t.interval`
/// on the differences; `statrs`' quantile).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Pairs (seeds with both runs).
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences.
    pub std: f64,
    /// Confidence level of the interval (0.95).
    pub level: f64,
    /// The t quantile used, t_{(1+level)/2, n−1}.
    pub t: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

/// The paired interval of `diffs` at `level`, or None for fewer than two
/// pairs (no interval exists) or a level outside (0, 1).
pub fn paired(diffs: &[f64], level: f64) -> Option<Paired> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if diffs.len() < 2 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let n = diffs.len();
    let (mean, std) = mean_std(diffs);
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .ok()?
        .inverse_cdf(0.5 + level / 2.0);
    let half = t * std / (n as f64).sqrt();
    Some(Paired {
        n,
        mean,
        std,
        level,
        t,
        lo: mean - half,
        hi: mean + half,
    })
}

/// One (method, weighting) cell over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Method name.
    pub method: String,
    /// Weighting.
    pub weighting: String,
    /// Seeds with a result.
    pub seeds: Vec<u64>,
    /// k-NN top-1 mean over seeds, percent.
    pub mean: f64,
    /// Sample standard deviation over seeds.
    pub std: f64,
    /// Against `off` of the same method on the same seeds (none for `off`
    /// itself, or without an `off` run).
    pub vs_off: Option<Paired>,
}

/// Every cell of `results` (k-NN top-1), in the order they first appear,
/// with the paired difference to `off` at 95 %.
pub fn summarise(results: &[RunResult]) -> Vec<Cell> {
    summarise_by(results, |r| Some(r.top1))
}

/// [`summarise`] of the linear-probe top-1 over the runs that have one
/// (empty when none has).
pub fn summarise_linear(results: &[RunResult]) -> Vec<Cell> {
    summarise_by(results, |r| r.linear_top1)
}

/// [`summarise`] of any per-run metric (runs where it is None left out).
pub fn summarise_by(
    results: &[RunResult],
    metric: impl Fn(&RunResult) -> Option<f64>,
) -> Vec<Cell> {
    let kept: Vec<(&RunResult, f64)> = results
        .iter()
        .filter_map(|r| metric(r).map(|v| (r, v)))
        .collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for (r, _) in &kept {
        let key = (r.method.clone(), r.weighting.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let of = |m: &str, w: &str, seed: u64| {
        kept.iter()
            .find(|(r, _)| r.method == m && r.weighting == w && r.seed == seed)
            .map(|(_, v)| *v)
    };
    keys.into_iter()
        .map(|(m, w)| {
            let runs: Vec<&(&RunResult, f64)> = kept
                .iter()
                .filter(|(r, _)| r.method == m && r.weighting == w)
                .collect();
            let v: Vec<f64> = runs.iter().map(|(_, v)| *v).collect();
            let (mean, std) = mean_std(&v);
            let vs_off = if w == "off" {
                None
            } else {
                let diffs: Vec<f64> = runs
                    .iter()
                    .filter_map(|(r, v)| of(&m, "off", r.seed).map(|base| v - base))
                    .collect();
                paired(&diffs, 0.95)
            };
            Cell {
                seeds: runs.iter().map(|(r, _)| r.seed).collect(),
                method: m,
                weighting: w,
                mean,
                std,
                vs_off,
            }
        })
        .collect()
}

/// The Markdown tables: per method and weighting the k-NN top-1 mean ± std
/// over seeds and the paired difference to `off` (mean and 95 % t
/// interval over the seeds both ran); the same for the linear probe when
/// runs have it; the score network's DSM loss per level (mean over
/// seeds, as a fraction of a zero output's ½·D); then every run per seed.
pub fn table(results: &[RunResult]) -> String {
    let cells = summarise(results);
    let mut s = cell_table(&cells, "k-NN top-1 (%)");
    let linear = summarise_linear(results);
    if !linear.is_empty() {
        s.push_str("\nLinear probe:\n\n");
        s.push_str(&cell_table(&linear, "linear top-1 (%)"));
    }
    s.push_str(&dsm_table(results, &cells));
    let mut seeds: Vec<u64> = results.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    s.push_str("\nPer seed (k-NN top-1 %):\n\n| seed |");
    for c in &cells {
        s.push_str(&format!(" {} {} |", c.method, c.weighting));
    }
    s.push_str("\n| ---: |");
    s.push_str(&" ---: |".repeat(cells.len()));
    s.push('\n');
    for seed in seeds {
        s.push_str(&format!("| {seed} |"));
        for c in &cells {
            match results
                .iter()
                .find(|r| r.method == c.method && r.weighting == c.weighting && r.seed == seed)
            {
                Some(r) => s.push_str(&format!(" {:.2} |", r.top1)),
                None => s.push_str(" — |"),
            }
        }
        s.push('\n');
    }
    s
}

fn cell_table(cells: &[Cell], metric: &str) -> String {
    let mut s = format!(
        "| method | weighting | seeds | {metric} | Δ vs off, paired by seed: mean [95 % CI] (pairs) |\n\
         | --- | --- | ---: | ---: | ---: |\n"
    );
    for c in cells {
        let delta = match (&c.vs_off, c.weighting.as_str()) {
            (_, "off") => "—".to_string(),
            (Some(p), _) => format!("{:+.2} [{:+.2}, {:+.2}] ({})", p.mean, p.lo, p.hi, p.n),
            (None, _) => "n/a (fewer than 2 pairs)".to_string(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} ± {:.2} | {delta} |\n",
            c.method,
            c.weighting,
            c.seeds.len(),
            c.mean,
            c.std
        ));
    }
    s
}

/// Per cell with a score network: the DSM loss at each level, mean over
/// its seeds, divided by ½·D (1 = no better than a zero output).
fn dsm_table(results: &[RunResult], cells: &[Cell]) -> String {
    let Some(first) = results.iter().find_map(|r| r.dsm.as_ref()) else {
        return String::new();
    };
    let mut s = String::from(
        "\nScore network, DSM loss per noise level on the test split ÷ ½·D (a zero output scores 1):\n\n| method | weighting |",
    );
    for sg in &first.sigma {
        s.push_str(&format!(" σ {sg:.3} |"));
    }
    s.push_str("\n| --- | --- |");
    s.push_str(&" ---: |".repeat(first.sigma.len()));
    s.push('\n');
    for c in cells {
        let levels: Vec<&DsmLevels> = results
            .iter()
            .filter(|r| r.method == c.method && r.weighting == c.weighting)
            .filter_map(|r| r.dsm.as_ref())
            .filter(|d| d.sigma == first.sigma)
            .collect();
        if levels.is_empty() {
            continue;
        }
        s.push_str(&format!("| {} | {} |", c.method, c.weighting));
        for k in 0..first.sigma.len() {
            let v: Vec<f64> = levels.iter().map(|d| d.loss[k] / d.zero).collect();
            s.push_str(&format!(" {:.3} |", mean_std(&v).0));
        }
        s.push('\n');
    }
    s
}
