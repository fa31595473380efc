//! Shared by the GPU tests: one device per test binary for each set of
//! options, a skip (with the reason printed) only when no adapter exists
//! and CI is not set, and the comparison helpers with stated tolerances.
#![allow(dead_code)]

use std::sync::OnceLock;

use scorecl_host::{Gpu, GpuError, GpuOptions};

fn make(opts: GpuOptions) -> Option<Gpu> {
    match Gpu::new(&opts) {
        Ok(g) => Some(g),
        Err(e @ GpuError::NoAdapter { .. }) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("no GPU for the tests (CI requires one): {e}"),
    }
}

/// The device with every optional feature the adapter has.
pub fn gpu() -> Option<&'static Gpu> {
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| make(GpuOptions::from_env())).as_ref()
}

/// The same adapter with subgroups and f16 switched off: the portable path.
pub fn fallback_gpu() -> Option<&'static Gpu> {
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| {
        make(GpuOptions {
            no_subgroups: true,
            no_f16: true,
            ..GpuOptions::from_env()
        })
    })
    .as_ref()
}

/// Both devices: every kernel test runs its body on each, so the optional
/// paths and their fallbacks are both covered.
pub fn gpus() -> Vec<&'static Gpu> {
    [gpu(), fallback_gpu()].into_iter().flatten().collect()
}

/// Asserts |got − want| ≤ abs + rel·|want| elementwise, naming the first
/// failing index.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = abs + rel * w.abs();
        assert!(
            err <= tol,
            "{what}[{i}]: got {g}, want {w} (|err| {err:e} > {tol:e})"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
}

/// Deterministic test data from the core's Philox: normals times `scale`.
pub fn normals(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    scorecl_host::core::rng::Philox::new(seed, 0x7e57).fill_normal(0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}
