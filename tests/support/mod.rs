//! Shared by the end-to-end training tests (`tests/train.rs`,
//! `tests/dist.rs`): the tiny configuration and a run's tensors.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use scorecl::host::nn::checkpoint::read_f32_tensors;
use scorecl::host::train::{TrainConfig, Trainer};

/// A tiny configuration with mild augmentations (so that ten steps
/// visibly reduce the loss).
pub fn tiny(method: &str, mode: &str) -> TrainConfig {
    let heads = match method {
        "simclr" => "[simclr]\nproj_hidden_dim = 64\nproj_output_dim = 32\n",
        "simsiam" => {
            "[simsiam]\nproj_hidden_dim = 64\nproj_output_dim = 64\npred_hidden_dim = 16\n"
        }
        "wmse" => "[wmse]\nproj_hidden_dim = 64\nproj_output_dim = 8\nw_size = 32\n",
        _ => "[vicreg]\nproj_hidden_dim = 64\nproj_output_dim = 64\n",
    };
    let optimizer = match method {
        "simclr" => "name = \"lars\"\nlr = 0.4\nweight_decay = 1e-4",
        "simsiam" => "name = \"sgd\"\nlr = 0.5\nweight_decay = 1e-5",
        "wmse" => "name = \"adam\"\nlr = 2e-2\nweight_decay = 1e-6",
        _ => "name = \"lars\"\nlr = 0.3\nweight_decay = 1e-4",
    };
    let text = format!(
        r#"
method = "{method}"
[model]
width = 8
{heads}
[data]
dataset = "builtin:64"
size = 16
[augment]
crop_scale = [0.5, 1.0]
jitter_prob = 0.0
gray_prob = 0.0
[optimizer]
{optimizer}
[schedule]
warmup_epochs = 1
[train]
epochs = 5
batch_size = 32
[scorecl]
mode = "{mode}"
width = 8
lr = 1e-3
"#
    );
    TrainConfig::parse(&text).unwrap()
}

/// Every parameter, buffer and optimizer state of a run, by name.
pub fn snapshot(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let gpu = t.gpu();
    let mut out = Vec::new();
    let mut stores = vec![t.encoder.store(), &t.heads];
    if let Some(s) = t.score_net() {
        stores.push(&s.store);
    }
    for s in stores {
        for p in &s.params {
            out.push((p.name.clone(), gpu.download(&p.value).unwrap()));
        }
        for st in &s.states {
            out.push((st.name.clone(), gpu.download(&st.value).unwrap()));
        }
    }
    for (name, tensor) in t.optimizer_tensors() {
        out.push((name, gpu.download(tensor).unwrap()));
    }
    out
}

/// The largest difference between the parameters and running statistics
/// of two snapshots, each tensor's relative to its own scale:
/// max |a − b| / max(max |b|, floor), and the tensor.
pub fn worst_rel(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], floor: f32) -> (f32, String) {
    let mut worst = (0.0f32, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        if name.contains("momentum_buffer") || name.contains("exp_avg") {
            // Optimizer moments are gradient sums with cancellation: their
            // rounding differences are checked through the parameters.
            continue;
        }
        let scale = y.iter().fold(floor, |m, v| m.max(v.abs()));
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f32, |m, (u, v)| m.max((u - v).abs()));
        let e = diff / scale;
        if e.is_nan() || e > worst.0 {
            worst = (e, name.clone());
        }
    }
    worst
}

/// The tests' tiny SimCLR with ScoreCL (`tests/support`: 64 images, 2 steps
/// an epoch, mild augmentations) at a hundredth of its learning rate, for
/// `epochs` epochs, written as a configuration file. Longer or faster runs
/// are chaotic: one rank on one thread and on two threads part by 1e-4 in
/// the loss by step 11 of the tiny preset at this rate, and by 1e-2 by
/// step 15.
pub fn calm_config(dir: &Path, epochs: u64) -> PathBuf {
    let mut cfg = tiny("simclr", "on");
    cfg.optimizer.lr *= 0.01;
    cfg.train.epochs = epochs;
    cfg.train.log_every = 1;
    let path = dir.join("calm.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    path
}

/// The losses of the steps a run logged (`metrics.jsonl`).
pub fn logged_losses(out: &Path) -> Vec<f32> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| v["loss"].as_f64().unwrap() as f32)
        .collect()
}

/// The checkpoint's model tensors by name (sorted), for `worst_rel`.
pub fn checkpoint_tensors(out: &Path) -> Vec<(String, Vec<f32>)> {
    let mut all: HashMap<String, Vec<f32>> = HashMap::new();
    for f in ["backbone", "heads", "score"] {
        let path = out.join("checkpoint").join(format!("{f}.safetensors"));
        let (t, _) = read_f32_tensors(&path).unwrap();
        all.extend(t.into_iter().map(|(k, (_, v))| (format!("{f}.{k}"), v)));
    }
    let mut v: Vec<_> = all.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `scorecl train --quiet --device cpu --config cfg --out out` plus
/// `extra`, run to its end.
pub fn train_cli(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scorecl"))
        .env("NODEVICE_SELECT", "1")
        .args(["train", "--quiet", "--device", "cpu", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Fails with the process's status and standard error unless it
/// succeeded.
pub fn assert_success(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}
