//! `scorecl compare`: the same data and seeds, the chosen methods with
//! ScoreCL's weighting off (the plain method), on, shuffled (the control:
//! the same weights given to the wrong pairs) and optionally augment (the
//! hand-crafted control: the same transform of crop-area and jitter
//! strengths read off the augmentation parameters), over several seeds;
//! k-NN top-1 per run, then mean ± std over seeds per method and weighting
//! with the difference to `off`.
//!
//! Each run lives in `OUT/<method>-<weighting>-<seed>/` and, once
//! evaluated, holds `result.json`: a finished run is not run again, and an
//! interrupted one resumes from its checkpoint.

use std::path::{Path, PathBuf};

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
    for w in &spec.weightings {
        if !matches!(w.as_str(), "off" | "on" | "shuffled" | "augment") {
            return Err(crate::GpuError::shape(
                "--weightings",
                format!("`{w}`: allowed off, on, shuffled, augment"),
            )
            .into());
        }
    }
    let mut results = Vec::new();
    for &method in &spec.methods {
        for w in &spec.weightings {
            for &seed in &spec.seeds {
                let dir = run_dir(out, method, w, seed);
                let result_path = dir.join("result.json");
                if result_path.exists() {
                    let text = std::fs::read_to_string(&result_path).map_err(|e| {
                        TrainError::checkpoint(&result_path, format!("cannot read: {e}"))
                    })?;
                    let r: RunResult = serde_json::from_str(&text).map_err(|e| {
                        TrainError::checkpoint(&result_path, format!("not a compare result: {e}"))
                    })?;
                    on_run(&r, true);
                    results.push(r);
                    continue;
                }
                let mut cfg = base.clone();
                cfg.method = method;
                cfg.scorecl.mode = w.clone();
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
                        &t.encoder,
                        &t.data,
                        &test,
                        cfg.data.size,
                        &cfg.normalize(),
                        &cfg.eval.knn(),
                    )?,
                };
                let r = RunResult {
                    method: method.name().to_string(),
                    weighting: w.clone(),
                    seed,
                    top1: k.top1,
                    seconds: s.seconds,
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

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// The Markdown table: k-NN top-1 mean ± std over seeds per method and
/// weighting, and the difference of the means to `off` of the same method.
pub fn table(results: &[RunResult]) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for r in results {
        let key = (r.method.clone(), r.weighting.clone());
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    let stat = |m: &str, w: &str| -> Option<(f64, f64, usize)> {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.method == m && r.weighting == w)
            .map(|r| r.top1)
            .collect();
        (!v.is_empty()).then(|| {
            let (a, b) = mean_std(&v);
            (a, b, v.len())
        })
    };
    let mut s = String::from(
        "| method | weighting | seeds | k-NN top-1 (%) | Δ vs off |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    for (m, w) in rows {
        let (mean, std, n) = stat(&m, &w).expect("a row has results");
        let delta = match (w.as_str(), stat(&m, "off")) {
            ("off", _) => "—".to_string(),
            (_, Some((base, _, _))) => format!("{:+.2}", mean - base),
            _ => "n/a".to_string(),
        };
        s.push_str(&format!(
            "| {m} | {w} | {n} | {mean:.2} ± {std:.2} | {delta} |\n"
        ));
    }
    s
}
