//! ResNet-18 and ResNet-50 (base width 8) against torchvision, from the
//! fixtures of `tests/reference/resnet.py` (float64 PyTorch): one
//! training-mode forward, the backward of sum(features · R), every
//! parameter's gradient, the input's gradient and the updated running
//! statistics. Tolerance per tensor: |got − want| ≤ 1e-3·|want| +
//! 1e-3·max|want| (relative, with a floor at the tensor's own scale for
//! entries near zero). The largest errors are printed.
mod common;

use std::sync::atomic::Ordering;

use common::reference::{self, compare, f32s, i64s};
use safetensors::SafeTensors;
use scorecl_host::nn::{Encoder, ResNet, ResNetConfig, Stem};

fn fixture(name: &str) -> Vec<u8> {
    reference::fixture(&format!("resnet/{name}"))
}

fn check(file: &str, cfg: ResNetConfig, size: usize) {
    let Some(gpu) = common::gpu() else { return };
    let bytes = fixture(file);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let model = ResNet::new(gpu, cfg, 0).unwrap();
    let s = &model.store;
    // Load torchvision's weights by name.
    for p in &s.params {
        let v = f32s(&st, &format!("param.{}", p.name));
        assert_eq!(v.len(), p.value.len(), "{}", p.name);
        gpu.write(&p.value, bytemuck::cast_slice(&v)).unwrap();
    }
    for t in &s.states {
        gpu.write(
            &t.value,
            bytemuck::cast_slice(&f32s(&st, &format!("param.{}", t.name))),
        )
        .unwrap();
    }
    for c in &s.counters {
        c.value
            .store(i64s(&st, &format!("param.{}", c.name)), Ordering::Relaxed);
    }
    let n = 4;
    let x = gpu
        .upload(&f32s(&st, "input"), &[n, 3, size, size])
        .unwrap();
    let r = gpu
        .upload(&f32s(&st, "R"), &[n, model.feature_dim()])
        .unwrap();
    let ws = model.workspace(gpu, n, size, size, true).unwrap();
    let mut step = gpu.step("resnet reference");
    s.zero_grads(&mut step).unwrap();
    model.forward(&mut step, &ws, &x, true).unwrap();
    model.backward(&mut step, &ws, &x, &r).unwrap();
    let i_feat = step.readback(&ws.features);
    let i_dx = step.readback(ws.dinput.as_ref().unwrap());
    let i_grads: Vec<usize> = s.params.iter().map(|p| step.readback(&p.grad)).collect();
    let i_states: Vec<usize> = s.states.iter().map(|t| step.readback(&t.value)).collect();
    let out = step.submit().unwrap();
    let mut report = vec![
        (
            "features",
            compare(
                "features",
                &out.f32(i_feat)[..n * model.feature_dim()],
                &f32s(&st, "features"),
            ),
        ),
        (
            "input gradient",
            compare(
                "grad.input",
                &out.f32(i_dx)[..n * 3 * size * size],
                &f32s(&st, "grad.input"),
            ),
        ),
    ];
    let mut worst_grad = ("", 0.0f32);
    for (p, i) in s.params.iter().zip(&i_grads) {
        let e = compare(
            &format!("grad.{}", p.name),
            &out.f32(*i)[..p.value.len()],
            &f32s(&st, &format!("grad.{}", p.name)),
        );
        if e > worst_grad.1 {
            worst_grad = (&p.name, e);
        }
    }
    let mut worst_state = 0.0f32;
    for (t, i) in s.states.iter().zip(&i_states) {
        worst_state = worst_state.max(compare(
            &format!("state.{}", t.name),
            &out.f32(*i)[..t.value.len()],
            &f32s(&st, &format!("state.{}", t.name)),
        ));
    }
    for c in &s.counters {
        assert_eq!(
            c.value.load(Ordering::Relaxed),
            i64s(&st, &format!("state.{}", c.name)),
            "{}",
            c.name
        );
    }
    report.push(("parameter gradients", worst_grad.1));
    report.push(("running statistics", worst_state));
    let lines: Vec<String> = report
        .iter()
        .map(|(k, v)| format!("  {k:<20} {v:.2e}"))
        .collect();
    eprintln!(
        "{file} on {}: largest |err|/(|want| + max|want|):\n{}\n  (worst gradient: {})",
        gpu.info.name,
        lines.join("\n"),
        worst_grad.0
    );
}

#[test]
fn cifar_stem_matches_torchvision() {
    check(
        "cifar_w8.safetensors",
        ResNetConfig::resnet18(8, Stem::Cifar { padding: 1 }),
        32,
    );
}

/// ResNet-50's bottleneck blocks (the 1×1 – 3×3 – 1×1 convolutions, the
/// stride on the 3×3 as torchvision's v1.5, 4× expansion, a projection
/// shortcut at every stage's first block): the same forward and backward
/// check as ResNet-18's.
#[test]
fn resnet50_matches_torchvision() {
    check(
        "resnet50_cifar_w8.safetensors",
        ResNetConfig::resnet50(8, Stem::Cifar { padding: 1 }),
        32,
    );
}

#[test]
fn imagenet_stem_matches_torchvision() {
    check(
        "imagenet_w8.safetensors",
        ResNetConfig::resnet18(8, Stem::ImageNet),
        64,
    );
}

#[test]
fn parameter_names_are_torchvisions() {
    parameter_names_match(
        "cifar_w8.safetensors",
        ResNetConfig::resnet18(8, Stem::Cifar { padding: 1 }),
    );
    parameter_names_match(
        "resnet50_cifar_w8.safetensors",
        ResNetConfig::resnet50(8, Stem::Cifar { padding: 1 }),
    );
}

fn parameter_names_match(file: &str, cfg: ResNetConfig) {
    let Some(gpu) = common::gpu() else { return };
    let bytes = fixture(file);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut theirs: Vec<String> = st
        .names()
        .iter()
        .filter_map(|n| n.strip_prefix("param.").map(String::from))
        .collect();
    let model = ResNet::new(gpu, cfg, 0).unwrap();
    let s = &model.store;
    let mut ours: Vec<String> = s
        .params
        .iter()
        .map(|p| p.name.clone())
        .chain(s.states.iter().map(|t| t.name.clone()))
        .chain(s.counters.iter().map(|c| c.name.clone()))
        .collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);
    for p in &s.params {
        let t = st.tensor(&format!("param.{}", p.name)).unwrap();
        assert_eq!(t.shape(), &p.shape[..], "{}", p.name);
    }
}
