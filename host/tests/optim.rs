//! Optimizer updates on the GPU against scorecl-core's rules, over several
//! steps (so momentum and moments carry over). The kernels perform the
//! core's f32 operations in the same order; tolerance 4 ulp relative plus
//! 1e-7 absolute per step (a fused multiply-add may round differently), and
//! for LARS the norms are f32 sums on the GPU against f64 in the core:
//! 1e-5 relative.
mod common;

use common::{gpus, normals};
use scorecl_host::core::optim::{self, AdamConfig, LarsConfig, SgdConfig};
use scorecl_host::ops::optim as gpu_optim;
use scorecl_host::{DType, Gpu, Tensor};

/// A guard slot of its own (slot 1 of 3, so the slot index is honoured).
fn flags(gpu: &Gpu) -> Tensor {
    gpu.upload_u32(&[0, 0, 0], &[3]).unwrap()
}

fn guard(f: &Tensor) -> gpu_optim::Guard<'_> {
    gpu_optim::Guard { flags: f, slot: 1 }
}

fn up(gpu: &Gpu, v: &[f32]) -> Tensor {
    gpu.upload(v, &[v.len()]).unwrap()
}

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.download(t).unwrap()[..t.len()].to_vec()
}

fn close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs() + 1e-7,
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn sgd_matches_the_core() {
    for gpu in gpus() {
        for (n, cfg) in [
            (1, SgdConfig::default()),
            (
                129,
                SgdConfig {
                    momentum: 0.9,
                    weight_decay: 5e-4,
                    ..Default::default()
                },
            ),
            (
                1000,
                SgdConfig {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 1e-4,
                    ..Default::default()
                },
            ),
            (
                17,
                SgdConfig {
                    momentum: 0.5,
                    dampening: 0.3,
                    ..Default::default()
                },
            ),
        ] {
            let mut p = normals(1, n, 1.0);
            let mut b = vec![0.0f32; n];
            let (tp, tb) = (up(gpu, &p), up(gpu, &b));
            let f = flags(gpu);
            for t in 0..4 {
                let g = normals(10 + t, n, 0.1);
                let tg = up(gpu, &g);
                let mut s = gpu.step("sgd");
                gpu_optim::sgd(&mut s, &tp, &tg, &tb, 0.1, &cfg, t == 0, guard(&f)).unwrap();
                s.submit().unwrap();
                optim::sgd_step(&mut p, &g, &mut b, 0.1, &cfg, t == 0).unwrap();
            }
            close("sgd params", &read(gpu, &tp), &p, 4.0 * 4.0 * f32::EPSILON);
            close(
                "sgd momentum",
                &read(gpu, &tb),
                &b,
                4.0 * 4.0 * f32::EPSILON,
            );
        }
    }
}

#[test]
fn lars_matches_the_core() {
    for gpu in gpus() {
        let base = LarsConfig {
            weight_decay: 1e-5,
            ..Default::default()
        };
        for (n, cfg, is_1d) in [
            (12, base, false),
            (6, base, true),
            (
                1000,
                LarsConfig {
                    clip_lr: false,
                    eta: 0.001,
                    ..base
                },
                false,
            ),
            (
                17,
                LarsConfig {
                    exclude_bias_n_norm: false,
                    weight_decay: 1e-4,
                    ..base
                },
                true,
            ),
            (
                129,
                LarsConfig {
                    nesterov: true,
                    weight_decay: 1e-3,
                    ..base
                },
                false,
            ),
        ] {
            let mut p = normals(2, n, 0.5);
            let mut b = vec![0.0f32; n];
            let (tp, tb) = (up(gpu, &p), up(gpu, &b));
            let norms = gpu.tensor(&[6], DType::F32).unwrap();
            let f = flags(gpu);
            for t in 0..3 {
                let g = normals(20 + t, n, 0.1);
                let tg = up(gpu, &g);
                let mut s = gpu.step("lars");
                gpu_optim::lars(
                    &mut s,
                    &tp,
                    &tg,
                    &tb,
                    &norms,
                    2,
                    0.4,
                    &cfg,
                    is_1d,
                    t == 0,
                    guard(&f),
                )
                .unwrap();
                s.submit().unwrap();
                optim::lars_step(&mut p, &g, &mut b, 0.4, &cfg, is_1d, t == 0).unwrap();
            }
            close("lars params", &read(gpu, &tp), &p, 1e-5);
            close("lars momentum", &read(gpu, &tb), &b, 1e-5);
        }
    }
}

#[test]
fn adam_and_adamw_match_the_core() {
    for gpu in gpus() {
        for (n, cfg) in [
            (1, AdamConfig::default()),
            (
                129,
                AdamConfig {
                    weight_decay: 0.05,
                    ..Default::default()
                },
            ),
            (1000, AdamConfig::adamw()),
            (
                17,
                AdamConfig {
                    beta1: 0.5,
                    beta2: 0.9,
                    eps: 1e-6,
                    ..AdamConfig::adamw()
                },
            ),
        ] {
            let mut p = normals(3, n, 1.0);
            let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
            let (tp, tm, tv) = (up(gpu, &p), up(gpu, &m), up(gpu, &v));
            let f = flags(gpu);
            for t in 1..=5 {
                let g = normals(30 + t as u64, n, 1.0);
                let tg = up(gpu, &g);
                let mut s = gpu.step("adam");
                gpu_optim::adam(&mut s, &tp, &tg, &tm, &tv, 1e-3, t, &cfg, guard(&f)).unwrap();
                s.submit().unwrap();
                optim::adam_step(&mut p, &g, &mut m, &mut v, 1e-3, t, &cfg).unwrap();
            }
            close("adam params", &read(gpu, &tp), &p, 5.0 * 4.0 * f32::EPSILON);
            close("adam m", &read(gpu, &tm), &m, 5.0 * 4.0 * f32::EPSILON);
            close("adam v", &read(gpu, &tv), &v, 5.0 * 4.0 * f32::EPSILON);
        }
    }
}

/// The guard fused into the updates: a NaN or ±inf in the gradient, the
/// updated value or a moment sets its bit in the tensor's own slot (and
/// only there); finite updates set none (checked after every update of
/// the tests above as well, here explicitly).
#[test]
fn the_update_guard_flags_non_finite_gradients_values_and_moments() {
    use gpu_optim::{GUARD_GRAD, GUARD_M1, GUARD_M2, GUARD_PARAM};
    let n = 300;
    for gpu in gpus() {
        let name = gpu.backend_name();
        let run = |g: &[f32], p: &[f32], which: &str| -> Vec<u32> {
            let (tp, tg) = (up(gpu, p), up(gpu, g));
            let (m, v) = (up(gpu, &vec![0.0; n]), up(gpu, &vec![0.0; n]));
            let f = flags(gpu);
            let mut s = gpu.step("guard");
            match which {
                "sgd" => {
                    let c = SgdConfig {
                        momentum: 0.9,
                        ..Default::default()
                    };
                    gpu_optim::sgd(&mut s, &tp, &tg, &m, 0.1, &c, true, guard(&f)).unwrap()
                }
                "lars" => {
                    let norms = gpu.tensor(&[2], DType::F32).unwrap();
                    let c = LarsConfig::default();
                    gpu_optim::lars(
                        &mut s,
                        &tp,
                        &tg,
                        &m,
                        &norms,
                        0,
                        0.1,
                        &c,
                        false,
                        true,
                        guard(&f),
                    )
                    .unwrap()
                }
                _ => gpu_optim::adam(
                    &mut s,
                    &tp,
                    &tg,
                    &m,
                    &v,
                    1e-3,
                    1,
                    &AdamConfig::default(),
                    guard(&f),
                )
                .unwrap(),
            }
            let i = s.readback(&f);
            s.submit().unwrap().u32(i)[..3].to_vec()
        };
        let p = normals(4, n, 1.0);
        let g = normals(5, n, 0.1);
        for which in ["sgd", "lars", "adam"] {
            assert_eq!(run(&g, &p, which), [0, 0, 0], "{name} {which}: finite");
            let mut gn = g.clone();
            gn[257] = f32::NAN;
            let bits = run(&gn, &p, which)[1];
            assert!(
                bits & GUARD_GRAD != 0 && bits & GUARD_PARAM != 0,
                "{name} {which}: {bits}"
            );
            assert!(
                bits & GUARD_M1 != 0,
                "{name} {which}: NaN reaches the moment: {bits}"
            );
            if which == "adam" {
                assert!(bits & GUARD_M2 != 0, "{name} adam: {bits}");
            }
            let mut pi = p.clone();
            pi[3] = f32::INFINITY;
            let f = run(&g, &pi, which);
            assert_eq!(
                (f[0], f[2]),
                (0, 0),
                "{name} {which}: other slots untouched"
            );
            assert!(
                f[1] & GUARD_PARAM != 0,
                "{name} {which}: inf parameter: {}",
                f[1]
            );
        }
    }
}
