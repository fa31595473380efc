//! Evaluation-view fidelity against PyTorch: scorecl's initial ResNet-18
//! (width 8, CIFAR stem, seed 0) on 32 real CIFAR-10 images through the
//! evaluation view (`Dataset::eval_params` + `eval::extract`) gives the
//! features torchvision gives through `Resize((s, s), antialias=True)` +
//! `Normalize` (fixture from `tests/reference/eval_view.py`, float64), at
//! views of 8, 16 and 32 px. Tolerance per tensor as the ResNet fixtures:
//! |got − want| ≤ 1e-3·(|want| + max|want|). The centred crop (the view
//! before issue 20) must miss them, so a wrong view cannot pass.
mod common;

use std::path::PathBuf;

use safetensors::SafeTensors;
use scorecl_host::data::{Dataset, EvalView};
use scorecl_host::eval::extract;
use scorecl_host::nn::{ResNet, ResNetConfig, Stem};
use scorecl_host::ops::augment::Normalize;

/// Largest |err| / (|want| + max|want|).
fn worst(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (w.abs() + scale))
        .fold(0.0, f32::max)
}

#[test]
fn cifar_features_through_the_eval_view_match_torchvision() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/eval_view/cifar10_w8.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let images = st.tensor("images").unwrap().data().to_vec();
    let n = images.len() / 3072;
    assert_eq!(n, 32);
    let labels: Vec<i64> = bytemuck::pod_collect_to_vec(st.tensor("labels").unwrap().data());
    let mut data = Dataset {
        images,
        labels: labels.iter().map(|&l| l as u32).collect(),
        h: 32,
        w: 32,
        classes: 10,
        class_names: Vec::new(),
        name: "eval_view fixture".into(),
        eval_view: EvalView::Resize,
    };
    for gpu in common::gpus() {
        let enc = ResNet::new(
            gpu,
            ResNetConfig::resnet18(8, Stem::Cifar { padding: 1 }),
            0,
        )
        .unwrap();
        for size in [8usize, 16, 32] {
            let want: Vec<f32> = bytemuck::pod_collect_to_vec(
                st.tensor(&format!("features.{size}")).unwrap().data(),
            );
            data.eval_view = EvalView::Resize;
            let f = extract(gpu, &enc, &data, size, &Normalize::CIFAR, 12).unwrap();
            let got = gpu.download(&f.tensor).unwrap();
            let w = worst(&got[..n * f.d], &want);
            assert!(
                w <= 1e-3,
                "{} view {size}: worst relative error {w} against torchvision",
                gpu.backend_name()
            );
            if size < 32 {
                data.eval_view = EvalView::CenterCrop;
                let f = extract(gpu, &enc, &data, size, &Normalize::CIFAR, 12).unwrap();
                let got = gpu.download(&f.tensor).unwrap();
                let w = worst(&got[..n * f.d], &want);
                assert!(w > 1e-2, "view {size}: the centred crop matched too ({w})");
            }
        }
    }
}
