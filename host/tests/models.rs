//! The score network and the MLP heads: their backward passes agree with
//! finite differences of their own forward passes. Per parameter tensor, a
//! random direction v within that tensor: the analytic directional
//! derivative ⟨∇L, v⟩ against central differences (L(θ + hv) −
//! L(θ − hv))/2h of L = Σ out·R (summed in f64 on the CPU), for
//! h ∈ {1e-3, 3e-4, 1e-4, 3e-5}. The closest must be within 1 % of
//! |⟨∇L, v⟩| + 1e-2. In a ReLU network a step that carries units across
//! their kink biases that step's difference (seen: 10 % at h = 1e-3), and
//! f32 rounding spoils the smallest steps (about 1 % at h = 1e-5); each
//! spoils some step sizes, while a wrong connection spoils all of them.
mod common;

use common::normals;
use scorecl_host::nn::{Mlp, MlpLayer, ParamStore, ScoreConfig, ScoreNet};
use scorecl_host::{DType, Gpu, Tensor};

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.download(t).unwrap()[..t.len()].to_vec()
}

/// Checks every parameter of `store` against finite differences of `loss`
/// (which runs a forward and returns Σ out·R) given `grads_of` (which runs
/// the backward and leaves the gradients in the store).
fn directional_check(gpu: &Gpu, store: &ParamStore, loss: &dyn Fn() -> f64, what: &str) {
    for (i, p) in store.params.iter().enumerate() {
        let theta = read(gpu, &p.value);
        let g = read(gpu, &p.grad);
        let v = normals(1000 + i as u64, theta.len(), 1.0);
        let analytic: f64 = g.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
        let set = |delta: f32| {
            let moved: Vec<f32> = theta.iter().zip(&v).map(|(t, d)| t + delta * d).collect();
            gpu.write(&p.value, bytemuck::cast_slice(&moved)).unwrap();
            loss()
        };
        let diffs: Vec<f64> = [1e-3f32, 3e-4, 1e-4, 3e-5]
            .iter()
            .map(|&h| (set(h) - set(-h)) / (2.0 * h as f64))
            .collect();
        gpu.write(&p.value, bytemuck::cast_slice(&theta)).unwrap();
        let best = diffs
            .iter()
            .map(|fd| (fd - analytic).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(
            best <= 0.01 * analytic.abs() + 1e-2,
            "{what} {}: analytic {analytic}, finite differences {diffs:?}",
            p.name
        );
    }
}

#[test]
fn score_network_gradients_match_finite_differences_and_forward_only_workspaces_agree() {
    let Some(gpu) = common::gpu() else { return };
    let (n, h, w) = (2, 8, 6);
    // Depth 2: two blocks per stage, so the chaining of blocks is checked.
    let net = ScoreNet::new(gpu, ScoreConfig { width: 4, depth: 2 }, 3).unwrap();
    // Move conv_out and the FiLM layers off their zero initialisation so
    // that every parameter carries a gradient.
    for p in &net.store.params {
        if p.name.contains("film") || p.name.starts_with("conv_out") {
            let v = normals(p.name.len() as u64, p.value.len(), 0.2);
            gpu.write(&p.value, bytemuck::cast_slice(&v)).unwrap();
        }
    }
    let ws = net.workspace(gpu, n, h, w).unwrap();
    let x = gpu
        .upload(&normals(1, n * 3 * h * w, 0.5), &[n, 3, h, w])
        .unwrap();
    let sig = [0.3f32, 0.05];
    let sigma = gpu.upload(&sig, &[n]).unwrap();
    let logsig = gpu.upload(&sig.map(f32::ln), &[n]).unwrap();
    let r = normals(2, n * 3 * h * w, 1.0);
    let tr = gpu.upload(&r, &[n * 3 * h * w]).unwrap();
    let loss = || -> f64 {
        let mut s = gpu.step("score forward");
        net.forward(&mut s, &ws, &x, &sigma, &logsig).unwrap();
        let i = s.readback(&ws.score);
        s.submit().unwrap().f32(i)[..r.len()]
            .iter()
            .zip(&r)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let mut s = gpu.step("score backward");
    net.store.zero_grads(&mut s).unwrap();
    net.forward(&mut s, &ws, &x, &sigma, &logsig).unwrap();
    net.backward(&mut s, &ws, &x, &sigma, &logsig, &tr).unwrap();
    s.submit().unwrap();
    directional_check(gpu, &net.store, &loss, "score network");
    assert!(net.macs_per_image(32, 32) > 0);
    // A forward-only workspace gives the same scores bit for bit, and
    // refuses the backward pass.
    let fws = net.forward_workspace(gpu, n, h, w).unwrap();
    let mut s = gpu.step("score forward twice");
    net.forward(&mut s, &ws, &x, &sigma, &logsig).unwrap();
    net.forward(&mut s, &fws, &x, &sigma, &logsig).unwrap();
    let (i, j) = (s.readback(&ws.score), s.readback(&fws.score));
    let out = s.submit().unwrap();
    assert_eq!(out.f32(i)[..r.len()], out.f32(j)[..r.len()]);
    let mut s = gpu.step("score backward");
    let e = net
        .backward(&mut s, &fws, &x, &sigma, &logsig, &tr)
        .unwrap_err();
    assert!(e.to_string().contains("forward pass only"), "{e}");
}

#[test]
fn mlp_gradients_match_finite_differences() {
    let Some(gpu) = common::gpu() else { return };
    let n = 6;
    let mut store = ParamStore::default();
    let spec = [
        MlpLayer::Linear {
            fan_in: 5,
            fan_out: 8,
            bias: false,
        },
        MlpLayer::BatchNorm {
            features: 8,
            affine: true,
        },
        MlpLayer::Relu,
        MlpLayer::Linear {
            fan_in: 8,
            fan_out: 7,
            bias: true,
        },
        MlpLayer::BatchNorm {
            features: 7,
            affine: false,
        },
    ];
    let mlp = Mlp::new(gpu, &mut store, "projector", &spec, 1).unwrap();
    let names: Vec<&str> = store.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "projector.0.weight",
            "projector.1.weight",
            "projector.1.bias",
            "projector.3.weight",
            "projector.3.bias"
        ]
    );
    assert_eq!(store.states[2].name, "projector.4.running_mean");
    let ws = mlp.workspace(gpu, n).unwrap();
    let x = gpu.upload(&normals(3, n * 5, 1.0), &[n, 5]).unwrap();
    let r = normals(4, n * 7, 1.0);
    let tr = gpu.upload(&r, &[n * 7]).unwrap();
    let loss = || -> f64 {
        let mut s = gpu.step("mlp forward");
        mlp.forward(&mut s, &store, &ws, &x, true).unwrap();
        let i = s.readback(ws.output());
        s.submit().unwrap().f32(i)[..r.len()]
            .iter()
            .zip(&r)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let mut s = gpu.step("mlp backward");
    store.zero_grads(&mut s).unwrap();
    mlp.forward(&mut s, &store, &ws, &x, true).unwrap();
    mlp.backward(&mut s, &store, &ws, &x, &tr).unwrap();
    s.submit().unwrap();
    directional_check(gpu, &store, &loss, "mlp");
    // The input gradient, the same way.
    let g = read(gpu, ws.input_grad());
    let xv = read(gpu, &x);
    let v = normals(9, xv.len(), 1.0);
    let analytic: f64 = g.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
    let at = |d: f32| {
        let moved: Vec<f32> = xv.iter().zip(&v).map(|(t, e)| t + d * e).collect();
        gpu.write(&x, bytemuck::cast_slice(&moved)).unwrap();
        loss()
    };
    let fd = (at(1e-3) - at(-1e-3)) / 2e-3;
    assert!(
        (fd - analytic).abs() <= 0.02 * analytic.abs() + 1e-3,
        "input: {analytic} vs {fd}"
    );
    let bad = Mlp::new(
        gpu,
        &mut ParamStore::default(),
        "p",
        &[
            MlpLayer::Linear {
                fan_in: 3,
                fan_out: 4,
                bias: true,
            },
            MlpLayer::BatchNorm {
                features: 5,
                affine: true,
            },
        ],
        0,
    );
    assert!(bad.is_err(), "mismatched widths are refused");
    let _ = DType::F32;
}
