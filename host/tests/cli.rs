//! The `scorecl` binary: a missing adapter and an unknown adapter name give
//! a clear message and a non-zero exit, never a panic.
mod common;

use std::process::Command;

fn scorecl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scorecl"));
    c.env("NODEVICE_SELECT", "1");
    c
}

#[test]
fn no_adapter_says_how_to_get_one() {
    // No Metal on Linux, no Vulkan/DX12 on macOS: an empty backend set.
    let backend = if cfg!(target_os = "macos") {
        "vulkan"
    } else {
        "metal"
    };
    let out = scorecl()
        .args(["bench", "gemm", "--only", "square 256"])
        .env("WGPU_BACKEND", backend)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_adapter_lists_the_available_ones() {
    if common::gpu().is_none() {
        return;
    }
    let out = scorecl()
        .args([
            "--adapter",
            "no-such-gpu-xyz",
            "bench",
            "gemm",
            "--only",
            "square 256",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-gpu-xyz") && err.contains("available"),
        "{err}"
    );
}

#[test]
fn bench_gemm_prints_its_table() {
    if common::gpu().is_none() {
        return;
    }
    let out = scorecl()
        .args([
            "bench",
            "gemm",
            "--only",
            "square 256",
            "--seconds",
            "0.1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"adapter\"") && text.contains("\"gflops\""),
        "{text}"
    );
}

#[test]
fn bad_kernel_value_names_the_option() {
    let out = scorecl()
        .args(["bench", "gemm", "--kernel", "fastest"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--kernel") && err.contains("portable"),
        "{err}"
    );
}

#[test]
fn encoder_init_writes_a_loadable_checkpoint() {
    let Some(gpu) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("scorecl-cli-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r18.safetensors");
    let out = scorecl()
        .args([
            "encoder", "init", "--width", "4", "--stem", "imagenet", "--out",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = scorecl_host::nn::ResNet::new(
        gpu,
        scorecl_host::nn::ResNetConfig::resnet18(4, scorecl_host::nn::Stem::ImageNet),
        9,
    )
    .unwrap();
    scorecl_host::nn::checkpoint::load(gpu, &model.store, &path).unwrap();
    let bad = scorecl()
        .args(["encoder", "init", "--stem", "tiny", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--stem"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_encoder_reports_images_per_second() {
    if common::gpu().is_none() {
        return;
    }
    let out = scorecl()
        .args([
            "bench",
            "encoder",
            "--width",
            "2",
            "--batch",
            "2",
            "--size",
            "16",
            "--seconds",
            "0.05",
            "--json",
            "--profile",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["train_images_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["adapter"].is_string());
}

fn preset(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name)
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn train_writes_checkpoints_and_metrics_and_resumes_exactly() {
    use scorecl_host::nn::checkpoint;
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let train = |extra: &[&str], out: &std::path::Path| {
        scorecl()
            .args(["train", "--config"])
            .arg(preset("tiny-simclr.toml"))
            .args(["--data", "builtin:128", "--epochs", "1", "--quiet", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    // One epoch of 4 steps (128 images, batch 32) straight through.
    let stdout = ok(&train(&[], &a));
    assert!(stdout.contains("finished after 4 steps"), "{stdout}");
    // The same run stopped after 2 steps, then resumed.
    let stdout = ok(&train(&["--max-steps", "2"], &b));
    assert!(stdout.contains("stopped after 2 steps"), "{stdout}");
    let stdout = ok(&scorecl()
        .args(["train", "--quiet", "--resume"])
        .arg(&b)
        .output()
        .unwrap());
    assert!(
        stdout.contains("resuming at step 2") && stdout.contains("finished after 4 steps"),
        "{stdout}"
    );
    for file in ["backbone", "heads", "score", "optimizer"] {
        let name = format!("checkpoint/{file}.safetensors");
        let (x, mx) = checkpoint::read_f32_tensors(&a.join(&name)).unwrap();
        let (y, my) = checkpoint::read_f32_tensors(&b.join(&name)).unwrap();
        assert!(x.len() > 3, "{name}");
        assert_eq!(mx.get("step"), my.get("step"), "{name}");
        assert_eq!(x.len(), y.len(), "{name}");
        for (k, (_, v)) in &x {
            common::assert_close(&format!("{name} {k}"), &y[k].1, v, 1e-6, 1e-5);
        }
    }
    // The backbone loads as a torchvision ResNet-18 state dict.
    let gpu = common::gpu().unwrap();
    let model = scorecl_host::nn::ResNet::new(
        gpu,
        scorecl_host::nn::ResNetConfig::resnet18(8, scorecl_host::nn::Stem::Cifar { padding: 1 }),
        1,
    )
    .unwrap();
    checkpoint::load(
        gpu,
        &model.store,
        &a.join("checkpoint/backbone.safetensors"),
    )
    .unwrap();
    // Metrics: 4 step lines (log_every 1), then one epoch line.
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let kinds: Vec<String> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["step", "step", "step", "step", "epoch"]);
    let resumed = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(resumed.lines().count(), 5, "{resumed}");
    // A second run into the same directory is refused.
    let again = train(&[], &a);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"));
}

#[test]
fn train_names_bad_options_keys_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = scorecl().arg("train").args(args).output().unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!e.contains("panicked"), "{e}");
        e
    };
    let cfg = preset("tiny-vicreg.toml");
    let cfg = cfg.to_str().unwrap();
    let e = err(&["--config", cfg, "--scorecl", "maybe"]);
    assert!(e.contains("scorecl.mode") && e.contains("allowed"), "{e}");
    let e = err(&["--config", cfg, "--method", "byol"]);
    assert!(e.contains("byol"), "{e}");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nepochz = 3\n").unwrap();
    let e = err(&["--config", bad.to_str().unwrap()]);
    assert!(e.contains("epochz"), "{e}");
    let e = err(&["--config", "/no/such/config.toml"]);
    assert!(
        e.contains("/no/such/config.toml") && e.contains("cannot read"),
        "{e}"
    );
    let e = err(&["--resume", tmp.path().to_str().unwrap()]);
    assert!(e.contains("nothing to resume"), "{e}");
    let e = err(&["--resume", tmp.path().to_str().unwrap(), "--epochs", "3"]);
    assert!(e.contains("cannot be used with"), "{e}");
}
