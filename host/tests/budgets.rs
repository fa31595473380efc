//! Dispatches per training step and peak device memory of the tiny
//! presets, pinned as upper bounds on the devices the tests run on (the
//! native CPU device, Mesa's lavapipe through Vulkan and llvmpipe through
//! GL): a change that adds dispatches or memory to a step fails here, and
//! raising a pin is a decision made in the diff. Measured with
//! `scorecl bench train --config configs/tiny-METHOD.toml --steps 1` on
//! 2026-12-02; the memory pins lowered on 2026-12-03, when the two views'
//! encoder workspaces began to share their gradient buffers, and again
//! (ScoreCL on) when the score network's workspaces began to share the
//! buffers no later operation reads.

mod common;

use scorecl_host::train::TrainConfig;
use scorecl_host::Gpu;

/// (device class, method, ScoreCL mode) → (dispatches per step, peak MiB).
const PINS: &[(&str, &str, &str, usize, f64)] = &[
    ("cpu", "simclr", "off", 386, 19.5),
    ("cpu", "simclr", "on", 499, 33.5),
    ("cpu", "simsiam", "off", 373, 19.5),
    ("cpu", "simsiam", "on", 486, 33.5),
    ("cpu", "wmse", "off", 329, 20.0),
    ("cpu", "wmse", "on", 442, 34.0),
    ("cpu", "vicreg", "off", 416, 19.5),
    ("cpu", "vicreg", "on", 529, 33.5),
    ("lavapipe", "simclr", "off", 572, 22.5),
    ("lavapipe", "simclr", "on", 733, 46.5),
    ("lavapipe", "simsiam", "off", 559, 23.0),
    ("lavapipe", "simsiam", "on", 720, 46.5),
    ("lavapipe", "wmse", "off", 515, 23.0),
    ("lavapipe", "wmse", "on", 676, 47.0),
    ("lavapipe", "vicreg", "off", 602, 22.5),
    ("lavapipe", "vicreg", "on", 763, 46.5),
    ("llvmpipe-gl", "simclr", "off", 572, 22.5),
    ("llvmpipe-gl", "simclr", "on", 733, 46.5),
    ("llvmpipe-gl", "simsiam", "off", 559, 23.0),
    ("llvmpipe-gl", "simsiam", "on", 720, 46.5),
    ("llvmpipe-gl", "wmse", "off", 515, 23.0),
    ("llvmpipe-gl", "wmse", "on", 676, 47.0),
    ("llvmpipe-gl", "vicreg", "off", 602, 22.5),
    ("llvmpipe-gl", "vicreg", "on", 763, 46.5),
];

/// Which pins apply to `gpu`, if any.
fn class(gpu: &Gpu) -> Option<&'static str> {
    if gpu.is_native() {
        return Some("cpu");
    }
    let llvmpipe = gpu.info.name.contains("llvmpipe");
    match gpu.info.backend {
        wgpu::Backend::Vulkan if llvmpipe => Some("lavapipe"),
        wgpu::Backend::Gl if llvmpipe => Some("llvmpipe-gl"),
        _ => None,
    }
}

fn preset(method: &str) -> TrainConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(format!("tiny-{method}.toml"));
    TrainConfig::load(&path).unwrap()
}

#[test]
fn tiny_steps_stay_within_their_pinned_dispatches_and_memory() {
    let mut devices = vec![common::cpu()];
    devices.extend(common::wgpu_gpu());
    let mut checked = 0;
    for gpu in devices {
        let Some(class) = class(gpu) else {
            eprintln!("no pins for `{}` ({:?})", gpu.info.name, gpu.info.backend);
            continue;
        };
        let mut measured = Vec::new();
        let mut over = Vec::new();
        for method in ["simclr", "simsiam", "wmse", "vicreg"] {
            let rows = scorecl_host::bench::time_train(
                gpu,
                &preset(method),
                1,
                &["off", "on"],
                false,
                std::rc::Rc::new(scorecl_host::dist::Solo),
            )
            .unwrap();
            for r in rows {
                let mib = r.peak_memory_bytes as f64 / (1 << 20) as f64;
                measured.push(format!(
                    "(\"{class}\", \"{method}\", \"{}\", {}, {mib:.2}),",
                    r.mode, r.dispatches_per_step
                ));
                let Some(&(_, _, _, d, m)) = PINS
                    .iter()
                    .find(|p| p.0 == class && p.1 == method && p.2 == r.mode)
                else {
                    over.push(format!("{method} {}: no pin", r.mode));
                    continue;
                };
                if r.dispatches_per_step > d {
                    over.push(format!(
                        "{method} {}: {} dispatches per step, pinned at {d}",
                        r.mode, r.dispatches_per_step
                    ));
                }
                if mib > m {
                    over.push(format!(
                        "{method} {}: {mib:.2} MiB peak, pinned at {m}",
                        r.mode
                    ));
                }
                checked += 1;
            }
        }
        assert!(
            over.is_empty(),
            "{class} (`{}`): {}\nmeasured:\n{}",
            gpu.info.name,
            over.join("; "),
            measured.join("\n")
        );
    }
    assert!(checked >= 8, "the native CPU device always has pins");
}
