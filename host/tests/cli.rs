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
