//! GEMM against its CPU twin (f64 accumulation) on shapes on and off the
//! tile grid, every transpose combination, batch with broadcast, bias,
//! ReLU, alpha and beta; both kernels, on the device with optional
//! features and on the portable fallback device.
//!
//! Tolerance per element: the forward error bound of an f32 dot product,
//! |err| ≤ γ·Σₖ|a_ik b_kj| + γ·|beta·c| + 1e-6 with γ = (K + 4)·ε_f32
//! (K products and sums, plus the epilogue's scale, add and bias).
mod common;

use common::{gpus, normals};
use scorecl_host::ops::gemm::{self, cpu, GemmKernel, GemmSpec};
use scorecl_host::{DType, Gpu};

/// Which operands are stored as f16.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Half {
    No,
    B,
    AB,
}

fn rounded(v: Vec<f32>, half: bool) -> Vec<f32> {
    if half {
        v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
    } else {
        v
    }
}

fn run(gpu: &Gpu, s: &GemmSpec, bias: bool, kernel: GemmKernel, seed: u64) {
    run_stored(gpu, s, bias, kernel, seed, Half::No)
}

/// f16 operands are rounded here and uploaded as f16, so the device reads
/// exactly the values the twin uses and the f32 bound applies unchanged.
fn run_stored(gpu: &Gpu, s: &GemmSpec, bias: bool, kernel: GemmKernel, seed: u64, half: Half) {
    let per = |broadcast: bool| if broadcast { 1 } else { s.batch };
    let outs = if s.reduce { 1 } else { s.batch };
    let (ha, hb) = (half == Half::AB, half != Half::No);
    let a = rounded(
        normals(seed, s.a_off + s.m * s.k * per(s.broadcast_a), 1.0),
        ha,
    );
    let b_rows = if s.trans_b { s.n } else { s.k };
    let b = rounded(
        normals(
            seed + 1,
            s.b_off + s.ld_b() * b_rows * per(s.broadcast_b),
            1.0,
        ),
        hb,
    );
    let c0 = normals(seed + 2, s.c_off + s.m * s.n * outs, 1.0);
    let bv = normals(seed + 3, s.n, 1.0);
    let up = |v: &[f32], h: bool| {
        if h {
            gpu.upload_f16(v, &[v.len()]).unwrap()
        } else {
            gpu.upload(v, &[v.len()]).unwrap()
        }
    };
    let ta = up(&a, ha);
    let tb = up(&b, hb);
    let tc = gpu.upload(&c0, &[c0.len()]).unwrap();
    let tbias = gpu.upload(&bv, &[s.n]).unwrap();
    let mut step = gpu.step("gemm test");
    gemm::gemm_with(&mut step, s, &ta, &tb, bias.then_some(&tbias), &tc, kernel).unwrap();
    let i = step.readback(&tc);
    let got = step.submit().unwrap().f32(i);
    let mut want = c0.clone();
    cpu::gemm(s, &a, &b, bias.then_some(&bv[..]), &mut want);
    // Σ|a||b| per element for the bound.
    let abs_a: Vec<f32> = a.iter().map(|x| x.abs()).collect();
    let abs_b: Vec<f32> = b.iter().map(|x| x.abs()).collect();
    let mut mag = vec![0.0f32; c0.len()];
    let plain = GemmSpec {
        alpha: 1.0,
        beta: 0.0,
        relu: false,
        ..*s
    };
    cpu::gemm(&plain, &abs_a, &abs_b, None, &mut mag);
    let terms = if s.reduce { s.batch } else { 1 };
    let gamma = ((s.k * terms) as f32 + 4.0) * f32::EPSILON;
    let used = gemm::kernel_for(gpu, s, kernel);
    for i in 0..want.len() {
        if i < s.c_off {
            assert_eq!(got[i], c0[i], "{used:?}: C before c_off was written");
            continue;
        }
        let col = (i - s.c_off) % s.n;
        let tol =
            gamma * (s.alpha.abs() * mag[i] + s.beta.abs() * c0[i].abs() + bv[col].abs()) + 1e-6;
        let err = (got[i] - want[i]).abs();
        assert!(
            err <= tol,
            "{used:?} {half:?} on {}: {s:?} bias {bias}: C[{i}] = {}, want {} (|err| {err:e} > {tol:e})",
            gpu.info.name,
            got[i],
            want[i]
        );
    }
}

fn spec(m: usize, n: usize, k: usize) -> GemmSpec {
    GemmSpec::new(m, n, k)
}

#[test]
fn shapes_on_and_off_the_grid() {
    for gpu in gpus() {
        for kernel in [
            GemmKernel::Portable,
            GemmKernel::Subgroup8,
            GemmKernel::Tiled,
            GemmKernel::Wide,
            GemmKernel::Coop,
        ] {
            let mut seed = 0;
            for (m, n, k) in [
                (1, 1, 1),
                (3, 17, 5),
                (17, 3, 129),
                (129, 33, 17),
                (8, 32, 4),
                (64, 64, 64),
                (33, 65, 12),
                (4, 4, 8),
                (100, 36, 128),
                (7, 129, 20),
                (257, 8, 4),
            ] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    seed += 10;
                    let s = GemmSpec {
                        trans_a: ta,
                        trans_b: tb,
                        ..spec(m, n, k)
                    };
                    run(gpu, &s, false, kernel, seed);
                }
            }
        }
    }
}

#[test]
fn epilogue_and_batch() {
    for gpu in gpus() {
        for kernel in [
            GemmKernel::Portable,
            GemmKernel::Subgroup8,
            GemmKernel::Tiled,
            GemmKernel::Wide,
            GemmKernel::Coop,
        ] {
            let mut seed = 1000;
            for (m, n, k, batch) in [(17, 20, 12, 3), (32, 64, 16, 2), (5, 3, 7, 4)] {
                for (ta, tb, ba, bb) in [
                    (false, false, false, false),
                    (true, false, true, false),
                    (false, true, false, true),
                    (true, true, false, false),
                ] {
                    for (alpha, beta, relu, bias) in [
                        (1.0, 0.0, false, true),
                        (0.5, 1.0, true, false),
                        (-2.0, 0.25, true, true),
                    ] {
                        seed += 10;
                        let s = GemmSpec {
                            batch,
                            trans_a: ta,
                            trans_b: tb,
                            broadcast_a: ba,
                            broadcast_b: bb,
                            alpha,
                            beta,
                            relu,
                            ..spec(m, n, k)
                        };
                        run(gpu, &s, bias, kernel, seed);
                    }
                }
            }
        }
    }
}

#[test]
fn kernel_choice_follows_adapter_and_alignment() {
    for gpu in gpus() {
        let aligned = spec(64, 64, 64);
        let odd_k = spec(64, 64, 27);
        let want_sg = gpu.caps.subgroups && gpu.caps.subgroup_size.0 >= 8;
        assert_eq!(
            gemm::kernel_for(gpu, &aligned, GemmKernel::Subgroup8) == GemmKernel::Subgroup8,
            want_sg
        );
        assert_eq!(
            gemm::kernel_for(gpu, &odd_k, GemmKernel::Subgroup8),
            GemmKernel::Portable
        );
        assert_eq!(
            gemm::kernel_for(gpu, &aligned, GemmKernel::Portable),
            GemmKernel::Portable
        );
        let t = GemmSpec {
            trans_a: true,
            ..spec(30, 64, 64)
        };
        assert_eq!(
            gemm::kernel_for(gpu, &t, GemmKernel::Subgroup8),
            GemmKernel::Portable,
            "M % 4 with Aᵀ"
        );
        // The workgroup-memory kernel runs any shape when asked for, and is
        // the automatic choice on GPUs only.
        assert_eq!(
            gemm::kernel_for(gpu, &odd_k, GemmKernel::Tiled),
            GemmKernel::Tiled
        );
        let gpu_class = matches!(
            gpu.caps.class,
            scorecl_host::AdapterClass::Discrete | scorecl_host::AdapterClass::Integrated
        );
        // Cooperative matrices only where the device was made with them
        // (SCORECL_COOP_MATRIX=1 and a fragment shape the kernel has);
        // asking for them elsewhere gives the automatic choice.
        let auto = gemm::kernel_for(gpu, &odd_k, GemmKernel::Auto);
        assert_eq!(auto == GemmKernel::Coop, gpu.caps.coop_f32);
        if !gpu.caps.coop_f32 {
            assert_eq!(auto == GemmKernel::Tiled, gpu_class);
        }
        assert_eq!(gemm::kernel_for(gpu, &odd_k, GemmKernel::Coop), auto);
        assert_eq!(
            gemm::kernel_for_f16(gpu, &odd_k, GemmKernel::Coop) == GemmKernel::Coop,
            gpu.caps.coop_f16
        );
    }
}

#[test]
fn wrong_shapes_are_named() {
    let Some(gpu) = gpus().into_iter().next() else {
        return;
    };
    let a = gpu.tensor(&[12], DType::F32).unwrap();
    let b = gpu.tensor(&[12], DType::F32).unwrap();
    let c = gpu.tensor(&[8], DType::F32).unwrap();
    let mut step = gpu.step("bad");
    let e = gemm::gemm(&mut step, &spec(3, 3, 4), &a, &b, None, &c).unwrap_err();
    assert!(e.to_string().contains("gemm C"), "{e}");
}

#[test]
fn offsets_and_batch_reduce() {
    for gpu in gpus() {
        for kernel in [
            GemmKernel::Portable,
            GemmKernel::Subgroup8,
            GemmKernel::Tiled,
            GemmKernel::Wide,
            GemmKernel::Coop,
        ] {
            let mut seed = 5000;
            for (m, n, k, batch) in [(8, 32, 16, 3), (17, 20, 12, 4), (64, 36, 8, 2)] {
                for (ta, tb, ba) in [
                    (false, false, true),
                    (true, false, false),
                    (false, true, false),
                ] {
                    for (a_off, b_off, c_off) in [(0, 0, 0), (4, 8, 12), (3, 5, 7)] {
                        for reduce in [false, true] {
                            seed += 10;
                            let s = GemmSpec {
                                batch,
                                trans_a: ta,
                                trans_b: tb,
                                broadcast_a: ba,
                                a_off,
                                b_off,
                                c_off,
                                reduce,
                                beta: if reduce { 1.0 } else { 0.0 },
                                ..spec(m, n, k)
                            };
                            run(gpu, &s, reduce, kernel, seed);
                        }
                    }
                }
            }
        }
    }
}

/// f16 operands (B alone, as for a convolution's weight gradient, or A and
/// B, as for its forward), widened on load with f32 accumulation, on the
/// portable and tiled kernels (asking for `gemm_sg8` falls back to the
/// portable one). Devices without shader-f16 refuse them by name.
#[test]
fn f16_operands_accumulate_in_f32() {
    for gpu in gpus() {
        let h = gpu.upload_f16(&[1.0; 16], &[16]).unwrap();
        let f = gpu.upload(&[1.0; 16], &[16]).unwrap();
        let c = gpu.tensor(&[16], DType::F32).unwrap();
        let mut step = gpu.step("f16 refused");
        let e = gemm::gemm(&mut step, &spec(4, 4, 4), &h, &f, None, &c);
        if !gpu.caps.f16 {
            let e = e.unwrap_err().to_string();
            assert!(e.contains("shader-f16"), "{e}");
            continue;
        }
        // An f16 A needs an f16 B (no such variant is built).
        let e = e.unwrap_err().to_string();
        assert!(e.contains("f16 A needs an f16 B"), "{e}");
        let mut seed = 9000;
        for kernel in [
            GemmKernel::Portable,
            GemmKernel::Subgroup8,
            GemmKernel::Tiled,
            GemmKernel::Wide,
            GemmKernel::Coop,
        ] {
            for half in [Half::B, Half::AB] {
                for (m, n, k, batch) in [(17, 20, 12, 3), (64, 36, 16, 2), (5, 3, 7, 1)] {
                    for (ta, tb, ba, reduce) in [
                        (false, false, true, false),
                        (true, false, false, false),
                        (false, true, false, true),
                        (true, true, true, false),
                    ] {
                        seed += 10;
                        let s = GemmSpec {
                            batch,
                            trans_a: ta,
                            trans_b: tb,
                            broadcast_a: ba,
                            reduce,
                            beta: if reduce { 1.0 } else { 0.0 },
                            a_off: 3,
                            b_off: 5,
                            c_off: 2,
                            ..spec(m, n, k)
                        };
                        run_stored(gpu, &s, !reduce, kernel, seed, half);
                    }
                }
            }
        }
    }
}

/// B with padded rows (`ldb` past n, or past k with Bᵀ), as a convolution's
/// column matrix is on CPU drivers: every kernel, batched; `gemm_sg8` takes
/// unaligned n when ldb is a multiple of 4.
#[test]
fn padded_b_rows() {
    for gpu in gpus() {
        let mut seed = 12_000;
        for kernel in [
            GemmKernel::Portable,
            GemmKernel::Subgroup8,
            GemmKernel::Tiled,
            GemmKernel::Wide,
        ] {
            for (m, n, k, tb, ldb) in [
                (8, 289, 64, false, 292),
                (17, 25, 12, false, 28),
                (5, 9, 16, true, 20),
                (32, 81, 8, false, 84),
            ] {
                seed += 10;
                let s = GemmSpec {
                    batch: 3,
                    broadcast_a: true,
                    trans_b: tb,
                    ldb,
                    ..spec(m, n, k)
                };
                if kernel == GemmKernel::Subgroup8 && !tb {
                    assert!(s.vec4_aligned(), "{s:?}");
                }
                run(gpu, &s, true, kernel, seed);
            }
        }
    }
}

/// `SCORECL_GEMM` / `GpuOptions::gemm` replaces the automatic choice (for
/// comparing kernels in whole training steps); a kernel the shape cannot
/// run still falls back, and an unknown name is refused by name.
#[test]
fn the_automatic_choice_can_be_overridden() {
    if common::gpu().is_none() {
        return;
    }
    let make = |name: &str| {
        scorecl_host::Gpu::new(&scorecl_host::GpuOptions {
            gemm: Some(name.into()),
            quiet: true,
            ..scorecl_host::GpuOptions::from_env()
        })
    };
    let gpu = make("wide").unwrap();
    let odd = spec(30, 17, 9);
    assert_eq!(
        gemm::kernel_for(&gpu, &odd, GemmKernel::Auto),
        GemmKernel::Wide
    );
    assert_eq!(
        gemm::kernel_for(&gpu, &odd, GemmKernel::Portable),
        GemmKernel::Portable,
        "an explicit choice is kept"
    );
    run(&gpu, &odd, true, GemmKernel::Auto, 77);
    if gpu.caps.subgroups && gpu.caps.subgroup_size.0 >= 8 {
        let gpu = make("sg8").unwrap();
        assert_eq!(
            gemm::kernel_for(&gpu, &odd, GemmKernel::Auto),
            GemmKernel::Portable,
            "sg8 cannot take an unaligned shape"
        );
    }
    let Err(e) = make("fastest") else {
        panic!("an unknown kernel name was accepted")
    };
    let e = e.to_string();
    assert!(e.contains("SCORECL_GEMM") && e.contains("fastest"), "{e}");
}

/// Products large enough for the native device to split them between
/// threads (column blocks of 1024 for wide products, the k range for deep
/// ones), with transposes, beta and the epilogue: the same bound against
/// the twin on every device.
#[test]
fn wide_and_deep_products_match_the_twin() {
    for gpu in gpus() {
        for (m, n, k) in [(12, 4100, 33), (9, 20, 8300)] {
            for (ta, tb) in [(false, false), (true, true)] {
                let s = GemmSpec {
                    trans_a: ta,
                    trans_b: tb,
                    alpha: 0.5,
                    beta: 1.0,
                    relu: true,
                    ..spec(m, n, k)
                };
                run(gpu, &s, true, GemmKernel::Auto, 77);
                let s = GemmSpec { beta: 0.0, ..s };
                run(gpu, &s, false, GemmKernel::Auto, 78);
            }
        }
    }
}
