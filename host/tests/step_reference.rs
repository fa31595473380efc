//! One whole training step against PyTorch, in the manner of llm.c's
//! test_gpt2: the fixtures of `tests/reference/step.py` (float64) hold one
//! step of each method with ScoreCL on, on a width-8 ResNet-18 with the
//! method's heads and the score network, from given weights, batch, views
//! and DSM noise. The trainer runs the same step (`Trainer::step_given`:
//! its own order and kernels, only the random draws given) on every device,
//! and every tensor of the step is compared: the per-view score statistics,
//! the pair weights, the loss, every parameter's gradient (encoder, heads,
//! score network), the running statistics after both views, the DSM loss,
//! and for SimCLR the LARS update of every parameter.
//!
//! Tolerance, as `resnet_reference.rs`: |got − want| ≤ 1e-3·(|want| +
//! max|want|) per tensor. A gradient that is zero in exact arithmetic (a
//! bias before a batch norm or W-MSE's whitening, VICReg's last bias: the
//! loss does not change when every row shifts alike) holds only rounding
//! noise on both sides, so it has no scale of its own: where PyTorch's
//! float64 value is below 1e-10 × the step's largest encoder or head
//! gradient G, ours must be below 1e-6 × G (f32 rounding, 6e-8, with room
//! for the sums). The largest ratio per group is printed.
mod common;

use std::sync::atomic::Ordering;

use common::reference::{compare, f32s, fixture, i64s};
use safetensors::SafeTensors;
use scorecl_host::data::{Dataset, EvalView};
use scorecl_host::nn::ParamStore;
use scorecl_host::train::{GivenInputs, TrainConfig, Trainer};
use scorecl_host::Gpu;

/// Writes every parameter, state and counter of `store` from the
/// fixture's `param.<prefix><name>`; returns how many were written.
fn load(gpu: &Gpu, store: &ParamStore, prefix: &str, st: &SafeTensors) -> usize {
    for p in &store.params {
        let v = f32s(st, &format!("param.{prefix}{}", p.name));
        assert_eq!(v.len(), p.value.len(), "{prefix}{}", p.name);
        gpu.write(&p.value, bytemuck::cast_slice(&v)).unwrap();
    }
    for t in &store.states {
        let v = f32s(st, &format!("param.{prefix}{}", t.name));
        assert_eq!(v.len(), t.value.len(), "{prefix}{}", t.name);
        gpu.write(&t.value, bytemuck::cast_slice(&v)).unwrap();
    }
    for c in &store.counters {
        let v = i64s(st, &format!("param.{prefix}{}", c.name));
        c.value.store(v, Ordering::Relaxed);
    }
    store.params.len() + store.states.len() + store.counters.len()
}

/// The largest comparison ratio and the tensor it came from.
#[derive(Default)]
struct Worst(f32, String);

impl Worst {
    fn add(&mut self, what: &str, got: &[f32], want: &[f32]) {
        let r = compare(what, got, want);
        if r >= self.0 {
            *self = Worst(r, what.to_string());
        }
    }
}

fn check(gpu: &Gpu, method: &str) {
    let bytes = fixture(&format!("step/{method}.safetensors"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .expect("the fixture's metadata holds its configuration");
    let cfg = TrainConfig::parse(text).unwrap();
    let (n, size) = (cfg.train.batch_size, cfg.data.size);
    let images = st.tensor("images").unwrap().data().to_vec();
    assert_eq!(images.len(), n * 3 * size * size);
    let data = Dataset {
        images,
        labels: vec![0; n],
        h: size,
        w: size,
        classes: 1,
        class_names: vec!["fixture".into()],
        name: format!("step/{method}.safetensors"),
        eval_view: EvalView::Resize,
    };
    let mut tr = Trainer::new(gpu, cfg, data).unwrap();
    let score = &tr.score_net().expect("ScoreCL is on").store;
    let loaded = load(gpu, tr.encoder.store(), "backbone.", &st)
        + load(gpu, &tr.heads, "", &st)
        + load(gpu, score, "score.", &st);
    let in_fixture = st
        .names()
        .iter()
        .filter(|k| k.starts_with("param."))
        .count();
    assert_eq!(loaded, in_fixture, "every tensor of the fixture is loaded");

    let before = |store: &ParamStore| -> Vec<Vec<f32>> {
        store
            .params
            .iter()
            .map(|p| gpu.download(&p.value).unwrap()[..p.value.len()].to_vec())
            .collect()
    };
    let (enc0, heads0) = (before(tr.encoder.store()), before(&tr.heads));
    let given = (
        f32s(&st, "clean"),
        f32s(&st, "views01"),
        f32s(&st, "views"),
        f32s(&st, "dsm_noise"),
        f32s(&st, "dsm_sigma"),
    );
    let report = tr
        .step_given(&GivenInputs {
            clean: &given.0,
            views01: &given.1,
            views: &given.2,
            dsm_noise: &given.3,
            dsm_sigma: &given.4,
        })
        .unwrap();

    let mut lines = Vec::new();
    let stats = report.stats.as_deref().expect("weighted step");
    lines.push((
        "score statistics",
        compare("stats", stats, &f32s(&st, "stats")),
    ));
    let w = compare("weights", &report.weights, &f32s(&st, "weights"));
    lines.push(("pair weights", w));
    let loss = compare("loss", &[report.loss], &f32s(&st, "loss"));
    lines.push(("loss", loss));
    let dsm = report.dsm_loss.expect("the score network trains");
    lines.push((
        "DSM loss",
        compare("dsm_loss", &[dsm], &f32s(&st, "dsm_loss")),
    ));

    let read = |t: &scorecl_host::Tensor| gpu.download(t).unwrap()[..t.len()].to_vec();
    let score = &tr.score_net().unwrap().store;
    let (mut grads, mut score_grads, mut states, mut updates) = (
        Worst::default(),
        Worst::default(),
        Worst::default(),
        Worst::default(),
    );
    let trained = [
        ("backbone.", tr.encoder.store(), &enc0),
        ("", &tr.heads, &heads0),
    ];
    // G: the largest gradient of the encoder and heads.
    let g_max = trained
        .iter()
        .flat_map(|(prefix, store, _)| store.params.iter().map(move |p| (prefix, p)))
        .flat_map(|(prefix, p)| f32s(&st, &format!("grad.{prefix}{}", p.name)))
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let mut zeros = Vec::new();
    for (prefix, store, before) in trained {
        for (p, p0) in store.params.iter().zip(before) {
            let name = format!("{prefix}{}", p.name);
            let (got, want) = (read(&p.grad), f32s(&st, &format!("grad.{name}")));
            let zero = want.iter().all(|v| v.abs() < 1e-10 * g_max);
            if zero {
                let noise = got.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(
                    noise <= 1e-6 * g_max,
                    "grad.{name}: zero in exact arithmetic, got up to {noise:e} (G = {g_max})"
                );
                zeros.push(format!("{name} {:.1e}", noise / g_max));
            } else {
                grads.add(&format!("grad.{name}"), &got, &want);
            }
            let key = format!("update.{name}");
            if st.names().iter().any(|k| **k == key) {
                // The update in f64 from both f32 values: exact.
                let delta: Vec<f32> = read(&p.value)
                    .iter()
                    .zip(p0)
                    .map(|(a, b)| (*a as f64 - *b as f64) as f32)
                    .collect();
                if zero {
                    // A zero gradient's update is lr times its noise (a
                    // 1-D tensor: no weight decay, no LARS scaling).
                    let noise = delta.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let bound = 1e-6 * g_max * tr.cfg.scaled_lr();
                    assert!(noise <= bound, "{key}: {noise:e} above {bound:e}");
                } else {
                    updates.add(&key, &delta, &f32s(&st, &key));
                }
            }
        }
        for t in &store.states {
            let name = format!("state.{prefix}{}", t.name);
            states.add(&name, &read(&t.value), &f32s(&st, &name));
        }
        for c in &store.counters {
            let name = format!("state.{prefix}{}", c.name);
            assert_eq!(c.value.load(Ordering::Relaxed), i64s(&st, &name), "{name}");
        }
    }
    for p in &score.params {
        let name = format!("grad.score.{}", p.name);
        score_grads.add(&name, &read(&p.grad), &f32s(&st, &name));
    }
    let lars = st.names().iter().any(|k| k.starts_with("update."));
    assert_eq!(
        lars,
        method == "simclr",
        "which fixtures hold the LARS update"
    );
    let mut groups = vec![
        ("gradients", grads),
        ("score-net gradients", score_grads),
        ("running statistics", states),
    ];
    if lars {
        groups.push(("LARS updates", updates));
    }
    let mut text: Vec<String> = lines
        .iter()
        .map(|(k, v)| format!("  {k:<22} {v:.2e}"))
        .collect();
    text.extend(
        groups
            .iter()
            .map(|(k, w)| format!("  {k:<22} {:.2e} ({})", w.0, w.1)),
    );
    eprintln!(
        "{method} step on {}: largest |err|/(|want| + max|want|):\n{}\n  zero gradients, |got|/G: {}",
        gpu.info.name,
        text.join("\n"),
        zeros.join(", ")
    );
}

fn on_every_device(method: &str) {
    for gpu in common::gpus() {
        check(gpu, method);
    }
}

#[test]
fn simclr_step_with_scorecl_and_lars_matches_pytorch() {
    on_every_device("simclr");
}

#[test]
fn simsiam_step_with_scorecl_matches_pytorch() {
    on_every_device("simsiam");
}

#[test]
fn wmse_step_with_scorecl_matches_pytorch() {
    on_every_device("wmse");
}

#[test]
fn vicreg_step_with_scorecl_matches_pytorch() {
    on_every_device("vicreg");
}
