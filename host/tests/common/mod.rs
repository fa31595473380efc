//! Shared by the device tests: one device per test binary for each set of
//! options (the native CPU device always exists; a wgpu adapter is skipped,
//! with the reason printed, only when none exists and CI is not set), and
//! the comparison helpers with stated tolerances.
#![allow(dead_code)]

use std::sync::OnceLock;

use scorecl_host::{Error, Gpu, GpuError, GpuOptions};

fn make(opts: GpuOptions) -> Option<Gpu> {
    match Gpu::new(&opts) {
        Ok(g) => Some(g),
        Err(Error::Gpu(e @ GpuError::NoAdapter { .. })) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {e}");
            record_skip(&opts);
            None
        }
        Err(e) => panic!("no GPU for the tests (CI requires one): {e}"),
    }
}

/// Notes a device this test binary could not open, as one file per
/// (binary, device options) under `target/tmp/skipped/`, so that the test
/// command (`scripts/test.sh`) prints how many device passes were skipped
/// at its end instead of leaving them in captured output.
fn record_skip(opts: &GpuOptions) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped");
    let exe = std::env::current_exe().ok();
    let bin = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Test binaries are named `<test>-<hash>`.
    let bin = bin.rsplit_once('-').map_or(bin.as_str(), |(t, _)| t);
    let what = format!(
        "{bin} device={} subgroups={} f16={}",
        opts.device.as_deref().unwrap_or("default"),
        !opts.no_subgroups,
        !opts.no_f16
    );
    let name: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(name), what + "\n");
    }
}

/// The device the environment chooses (`SCORECL_DEVICE`, `WGPU_BACKEND`;
/// by default a real GPU, else the native CPU device), as users get it.
pub fn gpu() -> Option<&'static Gpu> {
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| make(GpuOptions::from_env())).as_ref()
}

/// Options for a wgpu adapter: the environment's choice when it names one,
/// else the best adapter wgpu sees (lavapipe on a machine without a GPU).
fn wgpu_options() -> GpuOptions {
    let mut o = GpuOptions::from_env();
    if o.device
        .as_deref()
        .is_none_or(|d| d.eq_ignore_ascii_case("cpu"))
    {
        o.device = Some("gpu".into());
    }
    o
}

/// A wgpu adapter with every optional feature it has: the WGSL kernels.
pub fn wgpu_gpu() -> Option<&'static Gpu> {
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| make(wgpu_options())).as_ref()
}

/// The same adapter with subgroups and f16 switched off: the portable path.
pub fn fallback_gpu() -> Option<&'static Gpu> {
    static G: OnceLock<Option<Gpu>> = OnceLock::new();
    G.get_or_init(|| {
        make(GpuOptions {
            no_subgroups: true,
            no_f16: true,
            ..wgpu_options()
        })
    })
    .as_ref()
}

/// The native CPU device (the kernels' Rust twins).
pub fn cpu() -> &'static Gpu {
    static G: OnceLock<Gpu> = OnceLock::new();
    G.get_or_init(|| {
        Gpu::native(&GpuOptions {
            quiet: true,
            ..GpuOptions::default()
        })
        .expect("the native CPU device")
    })
}

/// Every device: each kernel test runs its body on the wgpu adapter with
/// its optional paths, on its fallbacks, and on the native CPU device.
pub fn gpus() -> Vec<&'static Gpu> {
    [wgpu_gpu(), fallback_gpu(), Some(cpu())]
        .into_iter()
        .flatten()
        .collect()
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

/// Asserts a gradient: |err| ≤ rel·|want| + floor·max(max|want|, 0.01)
/// per element. Relative error means nothing for entries near zero, so the
/// floor is a fraction of the gradient's own scale; the 0.01 keeps a
/// gradient that is zero in exact arithmetic (SimCLR with n = 1), where
/// both sides hold rounding noise of order 1e-10, from demanding equality.
pub fn assert_grad(what: &str, got: &[f32], want: &[f32], rel: f32, floor: f32) {
    let scale = want.iter().fold(0.01f32, |m, v| m.max(v.abs()));
    assert_close(what, got, want, floor * scale, rel);
}

/// Uploads `a` and `b` stacked as one [2n, d] tensor.
pub fn stacked(gpu: &Gpu, a: &[f32], b: &[f32], d: usize) -> scorecl_host::Tensor {
    let v: Vec<f32> = a.iter().chain(b).copied().collect();
    gpu.upload(&v, &[v.len() / d, d]).unwrap()
}

/// Pair weights in [0, 2) with one zero (a pair that does not count).
pub fn pair_weights(seed: u64, n: usize) -> Vec<f32> {
    let mut w: Vec<f32> = normals(seed, n, 1.0)
        .iter()
        .map(|v| v.abs().min(1.99))
        .collect();
    if n > 2 {
        w[1] = 0.0;
    }
    w
}

/// Runs a GPU pair loss on `[a; b]` (2n × d) with pair weights `w`: `op`
/// gets the step, the stacked input, the weights, the gradient and the loss
/// tensors. Returns the loss and the gradient read back.
pub fn run_pair_loss(
    gpu: &Gpu,
    a: &[f32],
    b: &[f32],
    w: &[f32],
    d: usize,
    op: impl FnOnce(
        &mut scorecl_host::Step,
        &scorecl_host::Tensor,
        &scorecl_host::Tensor,
        &scorecl_host::Tensor,
        &scorecl_host::Tensor,
    ) -> scorecl_host::Result<()>,
) -> (f32, Vec<f32>) {
    let z = stacked(gpu, a, b, d);
    let tw = gpu.upload(w, &[w.len()]).unwrap();
    let grad = gpu
        .tensor(&[a.len() + b.len()], scorecl_host::DType::F32)
        .unwrap();
    let loss = gpu.tensor(&[1], scorecl_host::DType::F32).unwrap();
    let mut s = gpu.step("pair loss");
    op(&mut s, &z, &tw, &grad, &loss).unwrap();
    let (ig, il) = (s.readback(&grad), s.readback(&loss));
    let out = s.submit().unwrap();
    (out.f32(il)[0], out.f32(ig)[..a.len() + b.len()].to_vec())
}

/// Reading the PyTorch fixtures written by `tests/reference/*.py` and
/// comparing against them.
pub mod reference {
    use safetensors::{Dtype, SafeTensors};

    /// The bytes of `tests/fixtures/<path>`.
    pub fn fixture(path: &str) -> Vec<u8> {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(path);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A float32 tensor of the fixture.
    pub fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture lacks `{name}`"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        bytemuck::pod_collect_to_vec(t.data())
    }

    /// A one-element int64 tensor of the fixture.
    pub fn i64s(st: &SafeTensors, name: &str) -> i64 {
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture lacks `{name}`"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        i64::from_le_bytes(t.data().try_into().unwrap())
    }

    /// The bound of [`compare`]: |got − want| ≤ 1e-3·(|want| + max|want|).
    pub const TOLERANCE: f32 = 1e-3;

    /// Asserts |got − want| ≤ [`TOLERANCE`]·(|want| + max|want|) per
    /// element (relative, with a floor at the tensor's own scale for
    /// entries near zero), naming the first failing element; returns the
    /// largest |got − want| / (|want| + max|want|).
    pub fn compare(what: &str, got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        let mut worst = 0.0f32;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ratio = (g - w).abs() / (w.abs() + scale);
            assert!(
                ratio <= TOLERANCE,
                "{what}[{i}]: got {g}, PyTorch {w} (scale {scale})"
            );
            worst = worst.max(ratio);
        }
        worst
    }
}
