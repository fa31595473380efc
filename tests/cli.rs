//! The `scorecl` binary: a missing adapter and an unknown adapter name give
//! a clear message and a non-zero exit, never a panic.
#[path = "../host/tests/common/mod.rs"]
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
fn unknown_device_names_the_choices() {
    if common::wgpu_gpu().is_none() {
        return;
    }
    let out = scorecl()
        .args(["--device", "no-such-device-xyz", "doctor"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-device-xyz") && err.contains("available") && err.contains("`cpu`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
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
        .join("configs")
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
    // A file that sets nothing would train on every default: refused,
    // naming the file and the way out.
    for (name, text) in [
        ("empty.toml", ""),
        ("comments.toml", "# nothing\n\n  # here\n"),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).unwrap();
        let e = err(&["--config", f.to_str().unwrap()]);
        assert!(
            e.contains(name) && e.contains("sets nothing") && e.contains("--allow-defaults"),
            "{e}"
        );
    }
    let e = err(&["--resume", tmp.path().to_str().unwrap()]);
    assert!(e.contains("nothing to resume"), "{e}");
    let e = err(&["--resume", tmp.path().to_str().unwrap(), "--epochs", "3"]);
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn eval_plot_and_the_knn_monitor_on_a_tiny_run() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // The tiny preset with the k-NN monitor after every epoch.
    let mut cfg = std::fs::read_to_string(preset("tiny-simclr.toml")).unwrap();
    cfg.push_str("\n[eval]\nknn_every = 1\nknn_k = 20\n");
    let cfg_path = tmp.path().join("cfg.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let stdout = ok(&scorecl()
        .args([
            "train",
            "--quiet",
            "--data",
            "builtin:64",
            "--epochs",
            "2",
            "--config",
        ])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap());
    assert!(stdout.contains("k-NN top-1 on the test split"), "{stdout}");
    // Each epoch record holds the monitor's top-1 and the weight quantiles.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 2);
    for e in &epochs {
        let k = e["knn_top1"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&k), "{e}");
        let q: Vec<f64> = e["w_quantiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(q.len(), 5, "{e}");
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{e}");
    }
    // Plots were written after training; each is an 800×500 PNG.
    for name in ["loss.png", "dsm_loss.png", "knn.png", "weights.png"] {
        let img = image::open(run.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (800, 500), "{name}");
        // Not a blank canvas.
        let rgb = img.to_rgb8();
        let dark = rgb
            .pixels()
            .filter(|p| p.0.iter().all(|c| *c < 128))
            .count();
        assert!(dark > 500, "{name}: {dark} dark pixels");
    }
    // `scorecl plot` redraws them.
    std::fs::remove_file(run.join("loss.png")).unwrap();
    let stdout = ok(&scorecl().arg("plot").arg(&run).output().unwrap());
    assert!(
        stdout.contains("loss.png") && run.join("loss.png").exists(),
        "{stdout}"
    );

    // k-NN as JSON: the dataset, both splits, the adapter.
    let stdout = ok(&scorecl()
        .args(["eval", "knn", "--json", "--k", "20", "--checkpoint"])
        .arg(&run)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["eval"], "knn");
    assert_eq!(v["dataset"], "builtin:64");
    assert_eq!(
        (v["train_images"].as_u64(), v["test_images"].as_u64()),
        (Some(64), Some(32))
    );
    let trained = v["top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&trained));
    assert!(v["adapter"].as_str().unwrap().contains("adapter"));
    // The monitor's last figure is the same evaluation.
    let last = epochs[1]["knn_top1"].as_f64().unwrap();
    assert!(
        (last - trained).abs() < 1e-9,
        "monitor {last} vs eval {trained}"
    );
    // The table, for the encoder at initialisation, from the checkpoint folder.
    let stdout = ok(&scorecl()
        .args(["eval", "knn", "--init", "--checkpoint"])
        .arg(run.join("checkpoint"))
        .output()
        .unwrap());
    assert!(
        stdout.contains("initialisation encoder") && stdout.contains("top-1"),
        "{stdout}"
    );
    // Linear probe as JSON (10 classes: no top-5).
    let stdout = ok(&scorecl()
        .args(["eval", "linear", "--json", "--epochs", "3", "--checkpoint"])
        .arg(&run)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["eval"], "linear");
    assert!((0.0..=100.0).contains(&v["top1"].as_f64().unwrap()), "{v}");
    assert!(v["top5"].is_null(), "{v}");

    // The probe: S per level of each augmentation family, ρ, CSV and PNG.
    let probe_dir = tmp.path().join("probe");
    let stdout = ok(&scorecl()
        .args(["probe", "--json", "--images", "16", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&probe_dir)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let fams = v["families"].as_array().unwrap();
    let names: Vec<&str> = fams.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["crop", "color_jitter", "grayscale", "blur", "solarize"]
    );
    for (f, levels) in fams.iter().zip([6, 7, 2, 5, 6]) {
        let l = f["levels"].as_array().unwrap();
        assert_eq!(l.len(), levels, "{f}");
        // The weakest level is the original image: no difference.
        assert_eq!(l[0]["mean_abs_diff"].as_f64(), Some(0.0), "{f}");
        assert!(
            l.iter().all(|x| x["mean"].as_f64().unwrap().is_finite()),
            "{f}"
        );
        if let Some(rho) = f["spearman"].as_f64() {
            assert!((-1.0..=1.0).contains(&rho), "{f}");
        }
        let name = f["name"].as_str().unwrap();
        let csv = std::fs::read_to_string(probe_dir.join(format!("{name}.csv"))).unwrap();
        assert!(csv.starts_with("family,strength,s_mean,s_std,mean_abs_diff,spearman\n"));
        assert_eq!(csv.lines().count(), levels + 1, "{csv}");
        let img = image::open(probe_dir.join(format!("{name}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (800, 500));
    }

    // A score network trained alone, then probed.
    let alone_dir = tmp.path().join("probe-alone");
    let stdout = ok(&scorecl()
        .args([
            "probe",
            "--json",
            "--images",
            "8",
            "--train-score-epochs",
            "1",
        ])
        .args(["--data", "builtin:32", "--config"])
        .arg(preset("tiny-simclr.toml"))
        .arg("--out")
        .arg(&alone_dir)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        v["source"]
            .as_str()
            .unwrap()
            .contains("trained alone for 1 epochs"),
        "{v}"
    );
    assert_eq!(v["families"].as_array().unwrap().len(), 5, "{v}");
    assert!(alone_dir.join("crop.csv").exists() && alone_dir.join("crop.png").exists());

    // Bad input: a missing checkpoint, missing data, bad probe settings.
    let fail = |args: &[&str]| {
        let out = scorecl().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let missing = tmp.path().join("nothing-here");
    let err = fail(&["eval", "knn", "--checkpoint", missing.to_str().unwrap()]);
    assert!(
        err.contains("nothing-here") && err.contains("no checkpoint"),
        "{err}"
    );
    let r = run.to_str().unwrap();
    let err = fail(&[
        "eval",
        "knn",
        "--checkpoint",
        r,
        "--data",
        "cifar10:/no/such/dir",
    ]);
    assert!(err.contains("data_batch_1.bin"), "{err}");
    let err = fail(&["eval", "linear", "--checkpoint", r, "--lr=-1"]);
    assert!(err.contains("linear.lr"), "{err}");
    let err = fail(&["probe", "--checkpoint", missing.to_str().unwrap()]);
    assert!(err.contains("nothing-here"), "{err}");
    let err = fail(&["probe"]);
    assert!(err.contains("--checkpoint"), "{err}");
    let err = fail(&["probe", "--checkpoint", r, "--train-score-epochs", "1"]);
    assert!(err.contains("cannot be used with"), "{err}");
    // A run without a score network cannot be probed.
    let off = tmp.path().join("off");
    ok(&scorecl()
        .args([
            "train",
            "--quiet",
            "--scorecl",
            "off",
            "--data",
            "builtin:32",
            "--epochs",
            "1",
        ])
        .args(["--batch-size", "16", "--config"])
        .arg(preset("tiny-simclr.toml"))
        .arg("--out")
        .arg(&off)
        .output()
        .unwrap());
    let err = fail(&["probe", "--checkpoint", off.to_str().unwrap()]);
    assert!(
        err.contains("score.safetensors") && err.contains("ScoreCL off"),
        "{err}"
    );
    let err = fail(&["plot", missing.to_str().unwrap()]);
    assert!(err.contains("metrics.jsonl"), "{err}");
}

#[test]
fn compare_runs_every_combination_once_and_tabulates() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let compare = || {
        scorecl()
            .args([
                "compare",
                "--quiet",
                "--data",
                "builtin:32",
                "--epochs",
                "1",
            ])
            .args(["--batch-size", "16", "--seeds", "0,1", "--config"])
            .arg(preset("tiny-simclr.toml"))
            .args(["--weightings", "off,on,shuffled,augment", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = ok(&compare());
    assert_eq!(first.matches(": k-NN top-1").count(), 8, "{first}");
    assert!(!first.contains("skipped"), "{first}");
    for w in ["off", "on", "shuffled", "augment"] {
        for seed in [0, 1] {
            let r = out.join(format!("simclr-{w}-{seed}/result.json"));
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
            assert_eq!(
                (v["weighting"].as_str(), v["seed"].as_u64()),
                (Some(w), Some(seed))
            );
            assert!((0.0..=100.0).contains(&v["top1"].as_f64().unwrap()));
        }
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    // The k-NN table: its rows up to the first blank line after them (the
    // DSM-per-level table follows with rows of its own).
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("| simclr"))
        .take_while(|l| l.starts_with("| simclr"))
        .collect();
    assert_eq!(rows.len(), 4, "{md}");
    assert!(md.contains("DSM loss per noise level"), "{md}");
    assert!(rows[3].contains("| augment | 2 |"), "{md}");
    assert!(
        rows[0].contains("| off | 2 |") && rows[0].ends_with("| — |"),
        "{md}"
    );
    assert!(rows.iter().all(|r| r.contains(" ± ")), "{md}");
    // Resumable: a second call runs nothing and gives the same table.
    let again = ok(&compare());
    assert_eq!(
        again.matches("(done before, skipped)").count(),
        8,
        "{again}"
    );
    assert_eq!(std::fs::read_to_string(out.join("compare.md")).unwrap(), md);
    // A bad weighting is named.
    let bad = scorecl()
        .args([
            "compare",
            "--quiet",
            "--weightings",
            "off,sometimes",
            "--config",
        ])
        .arg(preset("tiny-simclr.toml"))
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("sometimes") && err.contains("off, on, shuffled, augment"),
        "{err}"
    );
}

#[test]
fn doctor_lists_adapters_and_checks_the_chosen_one() {
    if common::gpu().is_none() {
        return;
    }
    let stdout = ok(&scorecl().args(["doctor", "--json"]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let adapters = v["adapters"].as_array().unwrap();
    assert!(!adapters.is_empty(), "{v}");
    for a in adapters {
        assert!(
            ["vulkan", "metal", "dx12", "gl"].contains(&a["backend"].as_str().unwrap()),
            "{a}"
        );
        assert!(
            a["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() >= 3, "{v}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{v}");
    assert_eq!(v["passed"], true);
    // The table form names the checks and ends with the verdict.
    let text = ok(&scorecl().arg("doctor").output().unwrap());
    assert!(
        text.contains("GEMM") && text.contains("NT-Xent") && text.contains("all checks passed"),
        "{text}"
    );
    // No adapter: a clear error, no panic.
    let backend = if cfg!(target_os = "macos") {
        "vulkan"
    } else {
        "metal"
    };
    let out = scorecl()
        .arg("doctor")
        .env("WGPU_BACKEND", backend)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no GPU adapter found"),
        "{err}"
    );
}

#[test]
fn bench_train_reports_speed_memory_and_kernels() {
    if common::gpu().is_none() {
        return;
    }
    let stdout = ok(&scorecl()
        .args(["bench", "train", "--json", "--profile", "--steps", "1"])
        .args(["--batch-size", "8", "--config"])
        .arg(preset("tiny-simclr.toml"))
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(!v["adapter"].as_str().unwrap().is_empty(), "{v}");
    for mode in ["off", "on"] {
        assert!(
            v[format!("{mode}_images_per_s")].as_f64().unwrap() > 0.0,
            "{v}"
        );
        assert!(
            v[format!("{mode}_dispatches_per_step")].as_u64().unwrap() > 10,
            "{v}"
        );
        // Host time until submission: positive, and below the whole step.
        let host_ms = v[format!("{mode}_host_ms_per_step")].as_f64().unwrap();
        let step_ms = 1e3 * 8.0 / v[format!("{mode}_images_per_s")].as_f64().unwrap();
        assert!(host_ms > 0.0 && host_ms < step_ms, "{v}");
    }
    assert_eq!(v["precision"], "f32", "{v}");
    // The score network and its buffers cost memory on top of the encoder.
    let (off, on) = (
        v["off_peak_memory_bytes"].as_u64().unwrap(),
        v["on_peak_memory_bytes"].as_u64().unwrap(),
    );
    assert!(off > 1 << 20 && on > off, "{v}");
    if common::gpu().unwrap().caps.timestamps {
        let p = v["profile"].as_array().unwrap();
        assert!(
            p.iter()
                .any(|k| k["kernel"].as_str().unwrap().contains("gemm")),
            "{v}"
        );
    }
}

/// One binary: `scorecl --help` names the main job (the bare invocation)
/// and every subcommand; an unknown subcommand is refused, not taken for
/// the main job.
#[test]
fn the_one_binary_offers_the_main_job_and_every_subcommand() {
    let out = scorecl().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("main job"), "{help}");
    for sub in [
        "train", "eval", "compare", "probe", "plot", "bench", "encoder", "doctor",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` missing from:\n{help}"
        );
    }
    let out = scorecl().arg("trian").output().unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("trian"), "{e}");
}
