//! `scorecl doctor`: what a user runs first on a new machine and what a bug
//! report should contain. It lists every adapter wgpu can see (backend,
//! driver, limits, and which optional paths the project would take there),
//! then runs two quick checks on the chosen adapter against the core: a
//! GEMM (the portable kernel and the one chosen for the adapter, against
//! the f64 CPU twin) and the weighted NT-Xent loss with its gradient
//! (against `scorecl_core::simclr`). Kernel portability without the
//! hardware is `docs/PORTABILITY.md` (shaders/tests/portability.rs).

use serde::Serialize;

use scorecl_core::rng::Philox;
use scorecl_core::simclr::{self, SimClrConfig};
use scorecl_core::{GradPair, Views};

use crate::error::Result;
use crate::gpu::{adapter_details, class_of, AdapterDetails, Gpu};
use crate::ops::gemm::{self, GemmKernel, GemmSpec};
use crate::ops::simclr::SimClr;
use crate::tensor::DType;
use crate::AdapterClass;

/// One adapter as the doctor reports it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    /// Adapter name.
    pub name: String,
    /// Backend (vulkan, metal, dx12, gl).
    pub backend: String,
    /// Device type.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Optional features the project can use, and whether it would.
    pub subgroups: bool,
    /// Subgroup size range (min, max) as reported.
    pub subgroup_size: (u32, u32),
    /// 16-bit floats in shaders.
    pub shader_f16: bool,
    /// Timestamp queries (per-kernel times in `scorecl bench`).
    pub timestamps: bool,
    /// The cooperative-matrix shapes scorecl's GEMM could use there with
    /// `SCORECL_COOP_MATRIX=1` (empty: none).
    pub coop_matrix: Vec<&'static str>,
    /// Where reductions go: `subgroups` or `workgroup memory`.
    pub reductions: &'static str,
    /// The GEMM the automatic choice takes on an aligned shape.
    pub gemm: &'static str,
    /// The limits that bound model, batch and dataset sizes.
    pub limits: Limits,
}

/// The limits that matter here.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Largest buffer (bytes).
    pub max_buffer_size: u64,
    /// Largest storage binding (bytes).
    pub max_storage_buffer_binding_size: u64,
    /// Storage buffers per compute stage.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Workgroup memory (bytes).
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
}

fn report(a: &AdapterDetails) -> AdapterReport {
    let i = &a.info;
    let sub = a.features.contains(wgpu::Features::SUBGROUP);
    let class = class_of(i.device_type);
    AdapterReport {
        name: i.name.clone(),
        backend: i.backend.to_str().to_string(),
        device_type: format!("{:?}", i.device_type),
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        subgroups: sub,
        subgroup_size: (i.subgroup_min_size, i.subgroup_max_size),
        shader_f16: a.features.contains(wgpu::Features::SHADER_F16),
        timestamps: a.features.contains(wgpu::Features::TIMESTAMP_QUERY),
        coop_matrix: {
            let (f32s, f16s) = crate::gpu::coop_shapes(&a.coop);
            let usable = a
                .features
                .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
                && i.subgroup_max_size <= 32;
            let mut v = Vec::new();
            if usable && f32s {
                v.push("8x8 f32");
            }
            if usable && f16s {
                v.push("16x16 f16->f32");
            }
            v
        },
        reductions: if sub { "subgroups" } else { "workgroup memory" },
        // The rule of `ops::gemm`'s automatic choice.
        gemm: if sub && class == AdapterClass::Cpu && i.subgroup_min_size >= 8 {
            "gemm_sg8 (subgroup broadcast, CPU drivers)"
        } else if matches!(class, AdapterClass::Discrete | AdapterClass::Integrated) {
            "gemm_tiled (64×64 tiles in workgroup memory)"
        } else {
            "gemm (portable, register-blocked 4×4)"
        },
        limits: Limits {
            max_buffer_size: a.limits.max_buffer_size,
            max_storage_buffer_binding_size: a.limits.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: a.limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: a.limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: a.limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: a.limits.max_compute_workgroups_per_dimension,
        },
    }
}

/// Every adapter wgpu sees with the environment's backends.
pub fn adapters() -> Vec<AdapterReport> {
    adapter_details().iter().map(report).collect()
}

/// One check on the chosen adapter.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Largest error relative to the reference's scale.
    pub max_rel_err: f64,
    /// The bound it must stay under.
    pub tolerance: f64,
    /// `max_rel_err <= tolerance` (and finite).
    pub passed: bool,
    /// Wall time of the GPU part (ms).
    pub ms: f64,
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs() as f64));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - *w as f64).abs())
        .fold(0.0f64, |m, e| if e.is_nan() { f64::NAN } else { m.max(e) });
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    worst / scale
}

fn check(name: String, max_rel_err: f64, tolerance: f64, ms: f64) -> Check {
    Check {
        name,
        passed: max_rel_err.is_finite() && max_rel_err <= tolerance,
        max_rel_err,
        tolerance,
        ms,
    }
}

/// The GEMM (both kernels the adapter may run, on a vec4-aligned shape
/// with bias and ReLU; with f16 operands where the adapter has shader-f16)
/// and the weighted NT-Xent with its gradient, each
/// against the core. Tolerances: 1e-4 of the output's scale (f32
/// accumulation order).
pub fn self_check(gpu: &Gpu) -> Result<Vec<Check>> {
    let rng = Philox::new(0xd0c7, 1);
    let normals = |offset: u64, n: usize| {
        let mut v = vec![0.0f32; n];
        rng.fill_normal(offset, &mut v);
        v
    };
    let mut out = Vec::new();
    let (m, n, k) = (128, 96, 256);
    let a = normals(0, m * k);
    let b = normals(1 << 24, k * n);
    let bias = normals(1 << 25, n);
    let spec = GemmSpec {
        relu: true,
        ..GemmSpec::new(m, n, k)
    };
    let mut want = vec![0.0f32; m * n];
    gemm::cpu::gemm(&spec, &a, &b, Some(&bias), &mut want);
    let (ta, tb, tbias) = (
        gpu.upload(&a, &[m, k])?,
        gpu.upload(&b, &[k, n])?,
        gpu.upload(&bias, &[n])?,
    );
    let tc = gpu.tensor(&[m, n], DType::F32)?;
    let mut kinds = vec![GemmKernel::Portable, GemmKernel::Tiled, GemmKernel::Wide];
    let auto = gemm::kernel_for(gpu, &spec, GemmKernel::Auto);
    if !kinds.contains(&auto) {
        kinds.push(auto);
    }
    if gpu.is_native() {
        // One product there, whichever entry point the host names.
        kinds = vec![GemmKernel::Auto];
    }
    if gpu.caps.coop_f32 && !kinds.contains(&GemmKernel::Coop) {
        kinds.push(GemmKernel::Coop);
    }
    for kind in kinds {
        let t0 = std::time::Instant::now();
        let mut s = gpu.step("doctor gemm");
        gemm::gemm_with(&mut s, &spec, &ta, &tb, Some(&tbias), &tc, kind)?;
        let r = s.readback(&tc);
        let got = s.submit()?.f32(r)[..m * n].to_vec();
        let what = if gpu.is_native() {
            "native (faer)".to_string()
        } else {
            format!("{kind:?} kernel")
        };
        out.push(check(
            format!("GEMM {m}×{n}×{k} + bias + ReLU, {what}, vs f64 CPU"),
            rel_err(&got, &want),
            1e-4,
            t0.elapsed().as_secs_f64() * 1e3,
        ));
    }

    // f16 operands with f32 accumulation (train.precision = "f16"): the
    // operands are rounded here, so the f64 twin sees what the device reads.
    if gpu.caps.f16 {
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
        };
        let (ah, bh) = (round(&a), round(&b));
        let mut want = vec![0.0f32; m * n];
        gemm::cpu::gemm(&spec, &ah, &bh, Some(&bias), &mut want);
        let (ta, tb) = (gpu.upload_f16(&ah, &[m, k])?, gpu.upload_f16(&bh, &[k, n])?);
        let mut kinds = vec![GemmKernel::Portable, GemmKernel::Tiled];
        if gpu.caps.coop_f16 {
            kinds.push(GemmKernel::Coop);
        }
        for kind in kinds {
            let t0 = std::time::Instant::now();
            let mut s = gpu.step("doctor gemm f16");
            gemm::gemm_with(&mut s, &spec, &ta, &tb, Some(&tbias), &tc, kind)?;
            let r = s.readback(&tc);
            let got = s.submit()?.f32(r)[..m * n].to_vec();
            out.push(check(
                format!("GEMM {m}×{n}×{k}, f16 operands, {kind:?} kernel, vs f64 CPU"),
                rel_err(&got, &want),
                1e-4,
                t0.elapsed().as_secs_f64() * 1e3,
            ));
        }
    }

    // Weighted NT-Xent and its gradient.
    let (pairs, d) = (32, 64);
    let z = normals(1 << 26, 2 * pairs * d);
    let w: Vec<f32> = normals(1 << 27, pairs)
        .iter()
        .map(|v| v.abs().min(2.0))
        .collect();
    let cfg = SimClrConfig { temperature: 0.2 };
    let (za, zb) = z.split_at(pairs * d);
    let (mut ga, mut gb) = (vec![0.0f32; pairs * d], vec![0.0f32; pairs * d]);
    let mut scratch = vec![0.0f32; simclr::scratch_len(pairs, d)];
    let want_loss = simclr::loss(
        Views::new(za, zb, pairs, d)?,
        Some(&w),
        &cfg,
        Some(GradPair::new(&mut ga, &mut gb)),
        &mut scratch,
    )?;
    let want_grad: Vec<f32> = ga.into_iter().chain(gb).collect();
    let op = SimClr::new(gpu, pairs, d)?;
    let (tz, tw) = (gpu.upload(&z, &[2 * pairs, d])?, gpu.upload(&w, &[pairs])?);
    let (tg, tl) = (
        gpu.tensor(&[2 * pairs, d], DType::F32)?,
        gpu.tensor(&[1], DType::F32)?,
    );
    let t0 = std::time::Instant::now();
    let mut s = gpu.step("doctor simclr");
    op.forward_backward(&mut s, &tz, &tw, &cfg, &tg, &tl)?;
    let (rg, rl) = (s.readback(&tg), s.readback(&tl));
    let r = s.submit()?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let (loss, grad) = (r.f32(rl)[0], r.f32(rg)[..2 * pairs * d].to_vec());
    out.push(check(
        format!("weighted NT-Xent loss ({pairs} pairs × {d}), vs scorecl-core"),
        rel_err(&[loss], &[want_loss]),
        1e-4,
        ms,
    ));
    out.push(check(
        "weighted NT-Xent gradient, vs scorecl-core".into(),
        rel_err(&grad, &want_grad),
        1e-4,
        ms,
    ));
    Ok(out)
}
