//! The run directory: checkpoints, metrics, resume, and the training loop
//! with its progress bar.
//!
//! Layout of `DIR`:
//! - `config.toml`: the resolved configuration of the run;
//! - `metrics.jsonl`: one JSON object per logged step (`"kind": "step"`)
//!   and per epoch (`"kind": "epoch"`);
//! - `checkpoint/`: `backbone.safetensors` (torchvision names),
//!   `heads.safetensors` (`projector.*`, `predictor.*`),
//!   `score.safetensors` (when ScoreCL is on or shuffled),
//!   `optimizer.safetensors` (PyTorch's state names per parameter),
//!   `config.toml` and `state.json` (step, epoch, RNG counters).
//!
//! Every safetensors file carries the step in its metadata, and
//! `state.json` records every other file's length and SHA-256: resuming,
//! `eval` and `probe` verify them and refuse a mismatch naming the file,
//! and loading refuses non-finite values naming the tensor. A checkpoint is
//! written into `checkpoint.tmp/`, read back and verified, and only then
//! swapped in by renames; the one before it stays in `checkpoint.prev/`.
//! A crash at any point leaves at least one whole, verified checkpoint:
//! `checkpoint/`, or `checkpoint.prev/` when the swap was interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::nn::checkpoint::{self, write_atomic, Digest, RawTensor};
use crate::nn::{Encoder, ParamStore};
use crate::train::config::TrainConfig;
use crate::train::trainer::{StepReport, TrainState, Trainer};
use crate::train::{TrainError, TrainResult};

/// Format version of `state.json` (2: file lengths and hashes; 1, read
/// without verification: file names only).
pub const STATE_FORMAT: u32 = 2;

/// One file of a checkpoint as `state.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileRecord {
    /// Format 2: name, length and SHA-256 (hex).
    Hashed {
        /// File name in the checkpoint folder.
        name: String,
        /// Length in bytes.
        bytes: u64,
        /// SHA-256, 64 hex digits.
        sha256: String,
    },
    /// Format 1: the name only.
    Named(String),
}

impl FileRecord {
    fn new(name: &str, d: Digest) -> FileRecord {
        FileRecord::Hashed {
            name: name.into(),
            bytes: d.bytes,
            sha256: d.sha256,
        }
    }

    /// The file name.
    pub fn name(&self) -> &str {
        match self {
            FileRecord::Hashed { name, .. } | FileRecord::Named(name) => name,
        }
    }
}

/// Contents of `checkpoint/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The counters.
    pub state: TrainState,
    /// The method.
    pub method: String,
    /// The adapter that wrote it (exact resumption needs the same one).
    pub adapter: String,
    /// Every other file of the checkpoint.
    pub files: Vec<FileRecord>,
}

/// Reads `dir/state.json` and verifies every file it records (length and
/// SHA-256; format 1 states have no hashes and are only parsed). Errors
/// name the file that is missing, short, long or altered.
pub fn verify_checkpoint(dir: &Path) -> TrainResult<CheckpointState> {
    let state_path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, "cannot read", e))?;
    let cs: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| io_err(&state_path, "not a scorecl checkpoint state", e))?;
    if cs.format != STATE_FORMAT && cs.format != 1 {
        return Err(TrainError::checkpoint(
            &state_path,
            format!(
                "format {} (this version reads 1 and {STATE_FORMAT})",
                cs.format
            ),
        ));
    }
    for f in &cs.files {
        let FileRecord::Hashed {
            name,
            bytes,
            sha256,
        } = f
        else {
            continue;
        };
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(TrainError::checkpoint(
                &state_path,
                format!("file name `{name}` is not a file of this folder"),
            ));
        }
        let path = dir.join(name);
        let data = std::fs::read(&path)
            .map_err(|e| io_err(&path, "recorded in state.json but cannot be read", e))?;
        let got = Digest::of(&data);
        if got.bytes != *bytes {
            return Err(TrainError::checkpoint(
                &path,
                format!(
                    "{} bytes, state.json records {bytes}: the file is damaged or was replaced",
                    got.bytes
                ),
            ));
        }
        if got.sha256 != *sha256 {
            return Err(TrainError::checkpoint(
                &path,
                format!(
                    "SHA-256 {}, state.json records {sha256}: the file is damaged or was altered",
                    got.sha256
                ),
            ));
        }
    }
    Ok(cs)
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

/// How [`run`] behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (with a checkpoint) after this many global steps.
    pub max_steps: Option<u64>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Global steps done in total.
    pub steps: u64,
    /// Epochs completed.
    pub epochs: u64,
    /// Loss of the first step of this invocation.
    pub first_loss: Option<f32>,
    /// Loss of the last step.
    pub last_loss: Option<f32>,
    /// DSM loss of the first step of this invocation.
    pub first_dsm_loss: Option<f32>,
    /// DSM loss of the last step.
    pub last_dsm_loss: Option<f32>,
    /// Images per second over this invocation.
    pub images_per_s: f64,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// Whether all epochs are done.
    pub finished: bool,
    /// The monitor's last k-NN (`eval.knn_every`); when the run is
    /// finished, that of the final encoder.
    pub knn: Option<crate::eval::KnnReport>,
}

/// Quantiles 5, 25, 50, 75, 95 % of `v` (nearest rank), empty for none.
pub fn quantiles(v: &mut [f32]) -> Vec<f32> {
    if v.is_empty() {
        return Vec::new();
    }
    v.sort_by(f32::total_cmp);
    [0.05, 0.25, 0.5, 0.75, 0.95]
        .iter()
        .map(|q| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)])
        .collect()
}

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::checkpoint(path, format!("{what}: {e}"))
}

fn f32_tensors(gpu: &Gpu, named: &[(String, &crate::Tensor)]) -> TrainResult<Vec<RawTensor>> {
    named
        .iter()
        .map(|(name, t)| {
            let v = gpu.download(t)?;
            Ok((
                name.clone(),
                Dtype::F32,
                vec![t.len()],
                bytemuck::cast_slice(&v[..t.len()]).to_vec(),
            ))
        })
        .collect()
}

impl RunDir {
    /// A run directory at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// `DIR/checkpoint`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// `DIR/metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// Creates the folder and writes `config.toml`.
    pub fn create(&self, cfg: &TrainConfig) -> TrainResult<()> {
        std::fs::create_dir_all(&self.path)
            .map_err(|e| io_err(&self.path, "cannot create the run directory", e))?;
        write_atomic(&self.path.join("config.toml"), cfg.to_toml().as_bytes())?;
        Ok(())
    }

    /// Writes a checkpoint of `t` (atomically, see the module docs).
    pub fn save(&self, t: &Trainer) -> TrainResult<()> {
        let gpu = t.gpu();
        let tmp = self.path.join("checkpoint.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot clear", e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;
        let meta = [
            ("step", t.state.step.to_string()),
            ("epoch", t.state.epoch.to_string()),
            ("method", t.cfg.method.name().to_string()),
        ];
        let mut files = Vec::new();
        let mut save = |name: &str, store: &ParamStore| -> TrainResult<()> {
            let d = checkpoint::save_with(gpu, store, &tmp.join(name), &meta)?;
            files.push(FileRecord::new(name, d));
            Ok(())
        };
        save("backbone.safetensors", t.encoder.store())?;
        save("heads.safetensors", &t.heads)?;
        if let Some(net) = t.score_net() {
            save("score.safetensors", &net.store)?;
        }
        let opt = f32_tensors(gpu, &t.optimizer_tensors())?;
        let d = checkpoint::write_tensors(&tmp.join("optimizer.safetensors"), &opt, &meta)?;
        files.push(FileRecord::new("optimizer.safetensors", d));
        let config = t.cfg.to_toml();
        write_atomic(&tmp.join("config.toml"), config.as_bytes())?;
        files.push(FileRecord::new(
            "config.toml",
            Digest::of(config.as_bytes()),
        ));
        let state = CheckpointState {
            format: STATE_FORMAT,
            state: t.state,
            method: t.cfg.method.name().into(),
            adapter: gpu.info.name.clone(),
            files,
        };
        let json = serde_json::to_string_pretty(&state).expect("state serialises");
        crash_point("write", t.state.step);
        write_atomic(&tmp.join("state.json"), json.as_bytes())?;
        // Read back what reached the disk before anything is replaced.
        verify_checkpoint(&tmp)?;
        // Swap: drop checkpoint.prev, checkpoint → checkpoint.prev,
        // tmp → checkpoint. Between the two renames only checkpoint.prev
        // exists, and resume_dir takes it.
        let ck = self.checkpoint_dir();
        let prev = self.prev_dir();
        if ck.join("state.json").exists() {
            if prev.exists() {
                std::fs::remove_dir_all(&prev).map_err(|e| io_err(&prev, "cannot clear", e))?;
            }
            std::fs::rename(&ck, &prev).map_err(|e| io_err(&ck, "cannot move aside", e))?;
            crash_point("swap", t.state.step);
        } else if ck.exists() {
            // A folder without state.json is not a checkpoint (never
            // written whole): replace it.
            std::fs::remove_dir_all(&ck).map_err(|e| io_err(&ck, "cannot clear", e))?;
        }
        std::fs::rename(&tmp, &ck).map_err(|e| io_err(&ck, "cannot install", e))?;
        sync_dir(&self.path);
        Ok(())
    }

    /// `DIR/checkpoint.prev`: the checkpoint before the last one.
    pub fn prev_dir(&self) -> PathBuf {
        self.path.join("checkpoint.prev")
    }

    /// The checkpoint folder to resume from: `checkpoint/`, or
    /// `checkpoint.prev/` if a swap was interrupted (or `checkpoint.old/`,
    /// the name older versions used).
    pub fn resume_dir(&self) -> TrainResult<PathBuf> {
        let ck = self.checkpoint_dir();
        if ck.join("state.json").exists() {
            return Ok(ck);
        }
        for other in [self.prev_dir(), self.path.join("checkpoint.old")] {
            if other.join("state.json").exists() {
                return Ok(other);
            }
        }
        Err(TrainError::checkpoint(
            &ck,
            "no checkpoint here (state.json missing): nothing to resume",
        ))
    }

    /// The configuration saved with the checkpoint.
    pub fn checkpoint_config(&self) -> TrainResult<TrainConfig> {
        Ok(TrainConfig::load(&self.resume_dir()?.join("config.toml"))?)
    }

    /// The trained backbone of a checkpoint and its configuration. `path`
    /// is a run directory or a checkpoint folder (holding `config.toml`
    /// and `backbone.safetensors`).
    pub fn load_backbone(gpu: &Gpu, path: &Path) -> TrainResult<(Box<dyn Encoder>, TrainConfig)> {
        let dir = if path.join("backbone.safetensors").exists() {
            path.to_path_buf()
        } else {
            RunDir::new(path).resume_dir().map_err(|_| {
                TrainError::checkpoint(
                    path,
                    "no checkpoint here: expected a run directory (with checkpoint/) or a \
                     checkpoint folder (with backbone.safetensors and config.toml)",
                )
            })?
        };
        if dir.join("state.json").exists() {
            verify_checkpoint(&dir)?;
        }
        let cfg = TrainConfig::load(&dir.join("config.toml"))?;
        let encoder = cfg.build_encoder(gpu, 0)?;
        checkpoint::load(gpu, encoder.store(), &dir.join("backbone.safetensors"))?;
        Ok((encoder, cfg))
    }

    /// The trained score network of a checkpoint (ScoreCL on or shuffled)
    /// and its configuration; `path` as for [`RunDir::load_backbone`].
    pub fn load_score(gpu: &Gpu, path: &Path) -> TrainResult<(crate::nn::ScoreNet, TrainConfig)> {
        let dir = if path.join("config.toml").exists() && path.join("state.json").exists() {
            path.to_path_buf()
        } else {
            RunDir::new(path).resume_dir().map_err(|_| {
                TrainError::checkpoint(path, "no checkpoint here: expected a run directory")
            })?
        };
        verify_checkpoint(&dir)?;
        let cfg = TrainConfig::load(&dir.join("config.toml"))?;
        let file = dir.join("score.safetensors");
        if !file.exists() {
            return Err(TrainError::checkpoint(
                &file,
                "missing: this run has no score network (trained with ScoreCL off or the augment control)",
            ));
        }
        let net = crate::nn::ScoreNet::new(
            gpu,
            crate::nn::ScoreConfig {
                width: cfg.scorecl.width,
                depth: cfg.scorecl.depth,
            },
            0,
        )?;
        checkpoint::load(gpu, &net.store, &file)?;
        Ok((net, cfg))
    }

    /// Rebuilds the trainer of the checkpoint in this directory, with
    /// `cfg` (normally [`RunDir::checkpoint_config`]) and `data`.
    pub fn resume<'g>(
        &self,
        gpu: &'g Gpu,
        cfg: TrainConfig,
        data: Dataset,
    ) -> TrainResult<Trainer<'g>> {
        self.resume_with(gpu, cfg, data, std::rc::Rc::new(crate::dist::Solo))
    }

    /// [`RunDir::resume`] as one rank of the data-parallel run `comm`: every
    /// rank loads the same checkpoint, whatever the world size that wrote
    /// it.
    pub fn resume_with<'g>(
        &self,
        gpu: &'g Gpu,
        cfg: TrainConfig,
        data: Dataset,
        comm: crate::dist::Link,
    ) -> TrainResult<Trainer<'g>> {
        let dir = self.resume_dir()?;
        let state_path = dir.join("state.json");
        let cs = verify_checkpoint(&dir)?;
        if cs.method != cfg.method.name() {
            return Err(TrainError::checkpoint(
                &state_path,
                format!(
                    "a {} checkpoint, the configuration says {}",
                    cs.method,
                    cfg.method.name()
                ),
            ));
        }
        let mut t = Trainer::with_comm(gpu, cfg, data, comm)?;
        let want = cs.state.step.to_string();
        let check_step = |path: &Path, meta: &std::collections::HashMap<String, String>| match meta
            .get("step")
        {
            Some(s) if *s == want => Ok(()),
            other => Err(TrainError::checkpoint(
                path,
                format!(
                    "written at step {}, state.json says step {want}",
                    other.map_or("(none)", |s| s.as_str())
                ),
            )),
        };
        let load = |name: &str, store: &ParamStore| -> TrainResult<()> {
            let path = dir.join(name);
            let meta = checkpoint::load_with(gpu, store, &path)?;
            check_step(&path, &meta)
        };
        load("backbone.safetensors", t.encoder.store())?;
        load("heads.safetensors", &t.heads)?;
        if let Some(net) = t.score_net() {
            load("score.safetensors", &net.store)?;
        }
        let opt_path = dir.join("optimizer.safetensors");
        let (tensors, meta) = checkpoint::read_f32_tensors(&opt_path)?;
        check_step(&opt_path, &meta)?;
        let wanted = t.optimizer_tensors();
        for (name, tensor) in &wanted {
            let (shape, values) = tensors.get(name).ok_or_else(|| {
                TrainError::checkpoint(&opt_path, format!("missing tensor `{name}`"))
            })?;
            if values.len() != tensor.len() {
                return Err(TrainError::checkpoint(
                    &opt_path,
                    format!(
                        "tensor `{name}` has shape {shape:?}, expected [{}]",
                        tensor.len()
                    ),
                ));
            }
            gpu.write(tensor, bytemuck::cast_slice(values))?;
        }
        if tensors.len() != wanted.len() {
            return Err(TrainError::checkpoint(
                &opt_path,
                format!(
                    "{} tensors, the optimizer has {}",
                    tensors.len(),
                    wanted.len()
                ),
            ));
        }
        t.state = cs.state;
        Ok(t)
    }

    /// Drops metric lines from after `state` (left by a run that stopped
    /// after its last checkpoint), so that a resumed run appends cleanly.
    pub fn trim_metrics(&self, state: &TrainState) -> TrainResult<()> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let keep: Vec<&str> = text
            .lines()
            .filter(|l| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    return false;
                };
                match v["kind"].as_str() {
                    Some("step") => v["step"].as_u64().is_some_and(|s| s < state.step),
                    Some("epoch") => v["epoch"].as_u64().is_some_and(|e| e < state.epoch),
                    _ => false,
                }
            })
            .collect();
        let mut out = keep.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        write_atomic(&path, out.as_bytes())?;
        Ok(())
    }
}

/// Fault injection for the crash tests: `SCORECL_CRASH_AT=POINT:STEP` ends
/// the process at once (as `kill -9` would, nothing cleaned up) when the
/// checkpoint of step STEP reaches POINT: `write` (its weight files are
/// written, state.json is not) or `swap` (the old checkpoint is moved to
/// checkpoint.prev/, the new one not yet installed).
fn crash_point(point: &str, step: u64) {
    if let Ok(v) = std::env::var("SCORECL_CRASH_AT") {
        if v == format!("{point}:{step}") {
            std::process::abort();
        }
    }
}

/// Flushes a directory's entries (the renames) to disk where the platform
/// allows it; best effort.
fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(path) {
        let _ = d.sync_all();
    }
}

struct Metrics {
    file: std::fs::File,
    path: PathBuf,
}

impl Metrics {
    fn open(path: PathBuf) -> TrainResult<Metrics> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, "cannot open", e))?;
        Ok(Metrics { file, path })
    }

    fn write(&mut self, v: serde_json::Value) -> TrainResult<()> {
        writeln!(self.file, "{v}").map_err(|e| io_err(&self.path, "cannot write", e))
    }
}

fn fmt_opt(v: Option<f32>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// Trains `t` until its last epoch (or `opts.max_steps`), logging to
/// `dir` and writing checkpoints every `train.checkpoint_every` epochs and
/// at the end. A non-finite loss returns [`TrainError::NonFinite`] without
/// touching the last checkpoint.
pub fn run_training(t: &mut Trainer, dir: &RunDir, opts: &RunOptions) -> TrainResult<RunSummary> {
    use indicatif::{ProgressBar, ProgressStyle};
    // In a data-parallel run rank 0 alone writes (configuration, metrics,
    // checkpoints, plots) and evaluates; the others only train.
    let writer = t.shard().rank == 0;
    let mut metrics = if writer {
        dir.create(&t.cfg)?;
        dir.trim_metrics(&t.state)?;
        Some(Metrics::open(dir.metrics_path())?)
    } else {
        None
    };
    let mut write = |v: serde_json::Value| -> TrainResult<()> {
        match &mut metrics {
            Some(m) => m.write(v),
            None => Ok(()),
        }
    };
    let n = t.cfg.train.batch_size as f64;
    let spe = t.steps_per_epoch();
    let epochs = t.cfg.train.epochs;
    let start = Instant::now();
    let (mut first, mut last): (Option<StepReport>, Option<StepReport>) = (None, None);
    let mut steps_here = 0u64;
    let stop_at = opts.max_steps.unwrap_or(u64::MAX);
    // The k-NN monitor: the test split, loaded once.
    let knn_test = if t.cfg.eval.knn_every > 0 && writer {
        Some(t.cfg.data.open(crate::data::Split::Test)?)
    } else {
        None
    };
    let mut last_knn = None;
    if t.cfg.conv_precision() != t.conv_precision() {
        eprintln!(
            "note: train.precision = \"{}\" needs shader-f16, which `{}` does not offer: \
             the convolutions run in {}",
            t.cfg.train.precision.name(),
            t.gpu().info.name,
            t.conv_precision().name()
        );
    }
    while !t.finished() && t.state.step < stop_at {
        let epoch = t.state.epoch;
        let bar = if opts.progress && writer {
            ProgressBar::new(spe)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg} ({elapsed})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(t.state.step_in_epoch);
        let epoch_start = Instant::now();
        let (mut sum_loss, mut sum_dsm, mut sum_wstd, mut k) = (0.0f64, 0.0f64, 0.0f64, 0u64);
        let mut epoch_weights: Vec<f32> = Vec::new();
        while t.state.epoch == epoch && !t.finished() && t.state.step < stop_at {
            let t0 = Instant::now();
            let r = t.step()?;
            let ips = n / t0.elapsed().as_secs_f64().max(1e-9);
            let (wm, ws) = r.weight_stats();
            sum_loss += r.loss as f64;
            sum_dsm += r.dsm_loss.unwrap_or(0.0) as f64;
            sum_wstd += ws as f64;
            if r.weighted {
                epoch_weights.extend_from_slice(&r.weights);
            }
            k += 1;
            steps_here += 1;
            bar.set_message(format!(
                "loss {:.4} | w {wm:.2}±{ws:.2} | dsm {} | {ips:.1} img/s",
                r.loss,
                fmt_opt(r.dsm_loss)
            ));
            bar.inc(1);
            if r.step % t.cfg.train.log_every == 0 || t.state.step_in_epoch == 0 {
                write(serde_json::json!({
                    "kind": "step",
                    "step": r.step,
                    "epoch": r.epoch,
                    "loss": r.loss,
                    "dsm_loss": r.dsm_loss,
                    "w_mean": wm,
                    "w_std": ws,
                    "weighted": r.weighted,
                    "lr": r.lr,
                    "images_per_s": ips,
                }))?;
            }
            first.get_or_insert_with(|| r.clone());
            last = Some(r);
        }
        bar.finish();
        let secs = epoch_start.elapsed().as_secs_f64();
        if t.state.epoch > epoch && k > 0 {
            let kf = k as f64;
            let every = t.cfg.eval.knn_every;
            let knn = match &knn_test {
                Some(test) if t.state.epoch % every == 0 || t.finished() => {
                    let r = crate::eval::knn_eval(
                        t.gpu(),
                        t.encoder.as_ref(),
                        &t.data,
                        test,
                        t.cfg.data.size,
                        &t.cfg.normalize(),
                        &t.cfg.eval.knn(),
                    )?;
                    if opts.progress {
                        println!(
                            "epoch {}: k-NN top-1 {:.2} % ({}/{})",
                            epoch + 1,
                            r.top1,
                            r.correct,
                            r.total
                        );
                    }
                    let top1 = r.top1;
                    last_knn = Some(r);
                    Some(top1)
                }
                _ => None,
            };
            write(serde_json::json!({
                "kind": "epoch",
                "epoch": epoch,
                "step": t.state.step,
                "loss_mean": sum_loss / kf,
                "dsm_loss_mean": t.score_net().map(|_| sum_dsm / kf),
                "w_std_mean": sum_wstd / kf,
                "w_quantiles": quantiles(&mut epoch_weights),
                "knn_top1": knn,
                "seconds": secs,
                "images_per_s": kf * n / secs.max(1e-9),
            }))?;
            if (t.state.epoch % t.cfg.train.checkpoint_every == 0 || t.finished()) && writer {
                dir.save(t)?;
            }
        }
    }
    if !t.finished() && writer {
        // Stopped by max_steps: checkpoint where we are.
        dir.save(t)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Plots of the metrics so far; a failure to draw does not fail the run.
    if writer {
        if let Err(e) = crate::plot::plot_run(&dir.path) {
            eprintln!("warning: no plots: {e}");
        }
    }
    Ok(RunSummary {
        steps: t.state.step,
        epochs: t.state.epoch,
        first_loss: first.as_ref().map(|r| r.loss),
        last_loss: last.as_ref().map(|r| r.loss),
        first_dsm_loss: first.as_ref().and_then(|r| r.dsm_loss),
        last_dsm_loss: last.as_ref().and_then(|r| r.dsm_loss),
        images_per_s: steps_here as f64 * n / seconds.max(1e-9),
        seconds,
        finished: t.finished(),
        knn: last_knn,
    })
}
