//! The runtime's promises: a training-like step allocates nothing after
//! its first run, kernels are built once, wgpu errors come back naming the
//! kernel, limits are enforced before wgpu sees a request.
mod common;

use std::sync::Arc;

use common::normals;
use scorecl_host::core::optim::SgdConfig;
use scorecl_host::core::simclr::SimClrConfig;
use scorecl_host::ops::{gemm, optim, simclr::SimClr};
use scorecl_host::{grid, DType, Error, Gpu, GpuError, GpuOptions};

/// A device of its own, so that no other test allocates on it meanwhile.
fn private_gpu() -> Option<Gpu> {
    common::gpu()?;
    Some(
        Gpu::new(&GpuOptions {
            quiet: true,
            ..GpuOptions::from_env()
        })
        .unwrap(),
    )
}

#[test]
fn steps_allocate_nothing_after_the_first() {
    let Some(gpu) = private_gpu() else { return };
    let (n, d, h) = (8, 16, 32);
    // A linear encoder trained by SimCLR: z = x·W, loss, dW = xᵀ dz, SGD.
    let x = gpu
        .upload(&normals(1, 2 * n * h, 1.0), &[2 * n, h])
        .unwrap();
    let wts = gpu.upload(&normals(2, h * d, 0.2), &[h, d]).unwrap();
    let mom = gpu.zeros(&[h, d]).unwrap();
    let flags = gpu.tensor(&[1], scorecl_host::DType::U32).unwrap();
    let pair_w = gpu.upload(&vec![1.0; n], &[n]).unwrap();
    let z = gpu.tensor(&[2 * n, d], DType::F32).unwrap();
    let dz = gpu.tensor(&[2 * n, d], DType::F32).unwrap();
    let dw = gpu.tensor(&[h, d], DType::F32).unwrap();
    let loss = gpu.tensor(&[1], DType::F32).unwrap();
    let simclr = SimClr::new(&gpu, n, d).unwrap();
    let run = |first: bool| -> f32 {
        let mut s = gpu.step("train step");
        gemm::gemm(
            &mut s,
            &gemm::GemmSpec::new(2 * n, d, h),
            &x,
            &wts,
            None,
            &z,
        )
        .unwrap();
        simclr
            .forward_backward(&mut s, &z, &pair_w, &SimClrConfig::default(), &dz, &loss)
            .unwrap();
        let back = gemm::GemmSpec {
            trans_a: true,
            ..gemm::GemmSpec::new(h, d, 2 * n)
        };
        gemm::gemm(&mut s, &back, &x, &dz, None, &dw).unwrap();
        let sgd = SgdConfig {
            momentum: 0.9,
            ..Default::default()
        };
        let guard = optim::Guard {
            flags: &flags,
            slot: 0,
        };
        optim::sgd(&mut s, &wts, &dw, &mom, 0.5, &sgd, first, guard).unwrap();
        let i = s.readback(&loss);
        s.submit().unwrap().f32(i)[0]
    };
    let first = run(true);
    let created = gpu.buffers_created();
    let mut last = first;
    for _ in 0..5 {
        last = run(false);
    }
    assert_eq!(
        gpu.buffers_created(),
        created,
        "steps after the first allocated buffers"
    );
    assert!(last < first, "the loss went down: {first} → {last}");
}

#[test]
fn kernels_are_built_once() {
    let Some(gpu) = common::gpu() else { return };
    let m = &scorecl_host::shaders::ELEMENTWISE;
    let a = gpu.kernel(m, "axpby", &[], &[]).unwrap();
    let b = gpu.kernel(m, "axpby", &[], &[]).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let c = gpu
        .kernel(&scorecl_host::shaders::GEMM, "gemm", &[], &[("RELU", 1.0)])
        .unwrap();
    let d = gpu
        .kernel(&scorecl_host::shaders::GEMM, "gemm", &[], &[("RELU", 0.0)])
        .unwrap();
    assert!(
        !Arc::ptr_eq(&c, &d),
        "another specialisation is another pipeline"
    );
}

#[test]
fn validation_errors_name_the_kernel() {
    let Some(gpu) = private_gpu() else { return };
    // The same buffer bound read-only and read-write in one dispatch is a
    // usage conflict that wgpu reports at encoding time.
    let t = gpu.upload(&[1.0; 64], &[64]).unwrap();
    let mut s = gpu.step("conflict");
    scorecl_host::ops::elementwise::axpby(&mut s, 1.0, &t, 1.0, &t, &t).unwrap();
    match s.submit() {
        Err(Error::Gpu(GpuError::Kernel { kernel, message })) => {
            assert!(kernel.contains("elementwise::axpby"), "{kernel}: {message}");
        }
        other => panic!("expected a kernel error, got {other:?}"),
    }
    // The device stays usable afterwards.
    let mut s = gpu.step("after");
    let i = s.readback(&t);
    assert_eq!(s.submit().unwrap().f32(i)[0], 1.0);
    // A wrong number of buffers is refused before wgpu sees it.
    let k = gpu
        .kernel(&scorecl_host::shaders::ELEMENTWISE, "axpby", &[], &[])
        .unwrap();
    let mut s = gpu.step("count");
    let e = s
        .dispatch(&k, &Axpby::default(), &[("a", &t)], [1, 1, 1])
        .unwrap_err();
    assert!(e.to_string().contains("elementwise::axpby"), "{e}");
}

#[test]
fn a_misnamed_or_missing_binding_is_refused_naming_the_kernel_and_binding() {
    let Some(gpu) = common::gpu() else { return };
    let k = gpu
        .kernel(&scorecl_host::shaders::ELEMENTWISE, "axpby", &[], &[])
        .unwrap();
    assert_eq!(k.storage_names, ["a", "b", "out"]);
    let (a, b, out) = (
        gpu.upload(&[1.0; 4], &[4]).unwrap(),
        gpu.upload(&[2.0; 4], &[4]).unwrap(),
        gpu.tensor(&[4], DType::F32).unwrap(),
    );
    let p = Axpby {
        n: 4,
        alpha: 1.0,
        beta: 1.0,
        ..Default::default()
    };
    let mut s = gpu.step("bind");
    // Swapped: the same count, the names in the wrong places.
    let e = s
        .dispatch(
            &k,
            &p,
            scorecl_host::bind![b = &a, a = &b, out = &out],
            [1, 1, 1],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("elementwise::axpby"), "{e}");
    assert!(
        e.contains("storage binding 0 is `a`, the dispatch passes `b`"),
        "{e}"
    );
    // Missing: every binding named in the message.
    let e = s
        .dispatch(&k, &p, scorecl_host::bind![a = &a, out = &out], [1, 1, 1])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2 buffers given (a, out), the kernel binds 3 (a, b, out)"),
        "{e}"
    );
    // Right: runs, and computes a + b.
    s.dispatch(
        &k,
        &p,
        scorecl_host::bind![a = &a, b = &b, out = &out],
        grid(4, 256),
    )
    .unwrap();
    let i = s.readback(&out);
    assert_eq!(s.submit().unwrap().f32(i), [3.0; 4]);
}

// `elementwise.wgsl`'s `Params`, declared as the host does, and three ways
// of getting it wrong.
scorecl_host::kernel_params! {
    #[derive(Default)]
    struct Axpby { n: u32, alpha: f32, beta: f32, cols: u32, block: u32, _p: [u32; 3] }
}
scorecl_host::kernel_params! {
    #[derive(Default)]
    struct Renamed { n: u32, alpha: f32, gamma: f32, cols: u32, block: u32, _p: [u32; 3] }
}
scorecl_host::kernel_params! {
    #[derive(Default)]
    struct Swapped { n: u32, beta: f32, alpha: f32, cols: u32, block: u32, _p: [u32; 3] }
}
scorecl_host::kernel_params! {
    #[derive(Default)]
    struct Short { n: u32, alpha: f32, beta: f32, cols: u32, block: u32, _p: [u32; 2] }
}
scorecl_host::kernel_params! {
    #[derive(Default)]
    struct Retyped { n: u32, alpha: f32, beta: f32, cols: f32, block: u32, _p: [u32; 3] }
}

#[test]
fn params_that_differ_from_the_wgsl_struct_are_refused_naming_kernel_and_field() {
    let Some(gpu) = common::gpu() else { return };
    let k = gpu
        .kernel(&scorecl_host::shaders::ELEMENTWISE, "axpby", &[], &[])
        .unwrap();
    let t = gpu.upload(&[1.0; 4], &[4]).unwrap();
    let run = |f: &dyn Fn(&mut scorecl_host::Step) -> scorecl_host::Result<()>| {
        let mut s = gpu.step("params");
        f(&mut s).map(|_| ())
    };
    let groups = [1, 1, 1];
    let ok = run(&|s| {
        s.dispatch(
            &k,
            &Axpby::default(),
            scorecl_host::bind![a = &t, b = &t, out = &t],
            groups,
        )
    });
    assert!(ok.is_ok(), "the matching struct is accepted: {ok:?}");
    let cases: [(&str, scorecl_host::Result<()>, &str); 4] = [
        (
            "renamed",
            run(&|s| {
                s.dispatch(
                    &k,
                    &Renamed::default(),
                    scorecl_host::bind![a = &t, b = &t, out = &t],
                    groups,
                )
            }),
            "field `beta` is not in the Rust struct",
        ),
        (
            "swapped",
            run(&|s| {
                s.dispatch(
                    &k,
                    &Swapped::default(),
                    scorecl_host::bind![a = &t, b = &t, out = &t],
                    groups,
                )
            }),
            "field `alpha`: Rust offset 8",
        ),
        (
            "short",
            run(&|s| {
                s.dispatch(
                    &k,
                    &Short::default(),
                    scorecl_host::bind![a = &t, b = &t, out = &t],
                    groups,
                )
            }),
            "size: Rust 28 bytes, WGSL 32 bytes",
        ),
        (
            "retyped",
            run(&|s| {
                s.dispatch(
                    &k,
                    &Retyped::default(),
                    scorecl_host::bind![a = &t, b = &t, out = &t],
                    groups,
                )
            }),
            "field `cols`: Rust offset 12 F32×1, WGSL offset 12 U32×1",
        ),
    ];
    for (what, got, want) in cases {
        let e = got.expect_err(what).to_string();
        assert!(e.contains("elementwise::axpby"), "{what}: {e}");
        assert!(e.contains(want), "{what}: {e}");
    }
    // The struct matched once stays accepted (the check is cached per type).
    let again = run(&|s| {
        s.dispatch(
            &k,
            &Axpby::default(),
            scorecl_host::bind![a = &t, b = &t, out = &t],
            groups,
        )
    });
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn limits_are_checked_with_a_clear_message() {
    let Some(gpu) = common::gpu() else { return };
    let too_big = gpu.caps.limits.max_buffer_size as usize / 4 + 16;
    let e = gpu.tensor(&[too_big], DType::F32).unwrap_err();
    assert!(e.to_string().contains("max_buffer_size"), "{e}");
}

#[test]
fn memory_counters_follow_tensors() {
    // A device of its own: the shared one is used by other tests at once.
    if common::gpu().is_none() {
        return;
    }
    let gpu = scorecl_host::Gpu::new(&scorecl_host::GpuOptions {
        quiet: true,
        ..scorecl_host::GpuOptions::from_env()
    })
    .unwrap();
    let m0 = gpu.memory();
    let a = gpu.tensor(&[1000], scorecl_host::DType::F32).unwrap();
    let b = gpu.tensor(&[3], scorecl_host::DType::F32).unwrap(); // rounded up to 16 bytes
    let m1 = gpu.memory();
    assert_eq!(m1.in_use_bytes - m0.in_use_bytes, 4000 + 16);
    assert_eq!(m1.allocated_bytes - m0.allocated_bytes, 4000 + 16);
    drop(a);
    let m2 = gpu.memory();
    assert_eq!(m2.in_use_bytes, m1.in_use_bytes - 4000);
    assert_eq!(m2.peak_in_use_bytes, m1.in_use_bytes);
    // Reused from the pool: nothing new allocated, the peak is kept.
    let c = gpu.tensor(&[1000], scorecl_host::DType::F32).unwrap();
    assert_eq!(gpu.memory().allocated_bytes, m1.allocated_bytes);
    drop((b, c));
    gpu.reset_memory_peak();
    assert_eq!(gpu.memory().peak_in_use_bytes, gpu.memory().in_use_bytes);
}

#[test]
fn every_entry_points_params_match_its_familys_rust_struct() {
    let structs = scorecl_host::ops::params_structs();
    let mut checked = 0;
    for module in scorecl_host::shaders::MODULES {
        let Some((_, decl)) = structs.iter().find(|(m, _)| m.name == module.name) else {
            panic!(
                "module `{}` has no Rust parameters struct in ops::params_structs",
                module.name
            );
        };
        for defines in module.variants {
            let entries = scorecl_host::kernel::module_params(module, defines).unwrap();
            assert!(
                !entries.is_empty(),
                "{}{defines:?}: no entry point takes parameters",
                module.name
            );
            for (entry, layout) in entries {
                let kernel = format!("{}::{entry}{defines:?}", module.name);
                layout
                    .check_fields(&kernel, decl.name, decl.size, decl.fields)
                    .unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
    }
    // Every family, most in two or more variants.
    assert!(checked > 100, "only {checked} entry points checked");
}

/// Threads that build the same kernel at once all get the one kernel the
/// cache keeps (the first cached wins; none replaces it).
#[test]
fn kernels_built_at_once_by_several_threads_are_one() {
    let gpu = common::cpu();
    let ks: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    gpu.kernel(&scorecl_host::shaders::ROWS, "l2norm", &[], &[])
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let again = gpu
        .kernel(&scorecl_host::shaders::ROWS, "l2norm", &[], &[])
        .unwrap();
    for k in &ks {
        assert!(
            Arc::ptr_eq(k, &again),
            "a thread's kernel is not the cached one"
        );
    }
}
