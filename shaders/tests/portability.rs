//! Every WGSL module the host ships, in every variant it builds (f32,
//! subgroups, f16) and every specialisation of its override constants,
//! through naga's SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL
//! (OpenGL 4.3 compute, and GLSL ES 3.10 as wgpu's GL backend emits)
//! writers, one entry point at a time, as wgpu does when it builds a
//! pipeline. No GPU needed.
//!
//! A variant is tried on a back end only where wgpu can offer its feature
//! there ([`offered`]); elsewhere the host takes the f32 path, which is
//! tried everywhere. Any rejection fails the test with the module, the
//! variant, the entry point, the constants and the writer's message.
//!
//! The same run renders `docs/PORTABILITY.md`; the test fails when the
//! committed file differs. `SCORECL_BLESS=1 cargo test -p scorecl-shaders
//! --test portability` rewrites it.

use std::collections::BTreeMap;

use naga::back::{glsl, hlsl, msl, spv, PipelineConstants};
mod common;

use common::capabilities;
use naga::valid::{ModuleInfo, ValidationFlags, Validator};
use naga::{Module as Ir, ShaderStage};
use scorecl_shaders::{Define, MODULES};

/// The writers, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Backend {
    Spirv,
    Msl,
    Hlsl,
    Glsl430,
    GlslEs310,
}

const BACKENDS: [Backend; 5] = [
    Backend::Spirv,
    Backend::Msl,
    Backend::Hlsl,
    Backend::Glsl430,
    Backend::GlslEs310,
];

impl Backend {
    fn title(self) -> &'static str {
        match self {
            Backend::Spirv => "SPIR-V (Vulkan)",
            Backend::Msl => "MSL (Metal)",
            Backend::Hlsl => "HLSL (DX12)",
            Backend::Glsl430 => "GLSL 4.30",
            Backend::GlslEs310 => "GLSL ES 3.10 (wgpu GL)",
        }
    }
}

/// Whether wgpu 30 can offer the variant's features on the back end: GL
/// has neither subgroups nor shader-f16, the others have both (given a
/// capable device: SPIR-V 1.3, MSL 2.1, shader model 6.0 / 6.2).
fn offered(b: Backend, defines: &[Define]) -> bool {
    if defines.contains(&Define::Coop) {
        // wgpu 30 has cooperative matrices on Metal and Vulkan only.
        return matches!(b, Backend::Spirv | Backend::Msl);
    }
    defines.is_empty() || !matches!(b, Backend::Glsl430 | Backend::GlslEs310)
}

/// Writes one entry point of a module whose overrides are resolved.
fn write(
    b: Backend,
    module: &Ir,
    info: &ModuleInfo,
    entry: &str,
    defines: &[Define],
) -> Result<(), String> {
    let sub = defines.contains(&Define::Subgroups);
    let f16 = defines.iter().any(|d| d.needs_f16());
    match b {
        Backend::Spirv => {
            let options = spv::Options {
                lang_version: if sub { (1, 3) } else { (1, 0) },
                ..Default::default()
            };
            let pipeline = spv::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: entry.into(),
            };
            spv::write_vec(module, info, &options, Some(&pipeline))
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Backend::Msl => {
            let options = msl::Options {
                lang_version: if defines.contains(&Define::Coop) {
                    (2, 3)
                } else if sub || f16 {
                    (2, 1)
                } else {
                    (2, 0)
                },
                ..Default::default()
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((ShaderStage::Compute, entry.into())),
                ..Default::default()
            };
            msl::write_string(module, info, &options, &pipeline)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Backend::Hlsl => {
            let options = hlsl::Options {
                shader_model: if f16 {
                    hlsl::ShaderModel::V6_2
                } else if sub {
                    hlsl::ShaderModel::V6_0
                } else {
                    hlsl::ShaderModel::V5_1
                },
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((ShaderStage::Compute, entry.into())),
            };
            let mut out = String::new();
            hlsl::Writer::new(&mut out, &options, &pipeline)
                .write(module, info, None)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Backend::Glsl430 | Backend::GlslEs310 => {
            let options = glsl::Options {
                version: if b == Backend::Glsl430 {
                    glsl::Version::Desktop(430)
                } else {
                    glsl::Version::new_gles(310)
                },
                ..Default::default()
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: entry.into(),
                multiview: None,
            };
            let mut out = String::new();
            glsl::Writer::new(
                &mut out,
                module,
                info,
                &options,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write())
            .map(drop)
            .map_err(|e| e.to_string())
        }
    }
}

/// Every assignment of the module's (boolean) override constants.
fn specialisations(module: &Ir) -> Vec<PipelineConstants> {
    let names: Vec<String> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect();
    (0..1u32 << names.len())
        .map(|bits| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), ((bits >> i) & 1) as f64))
                .collect()
        })
        .collect()
}

/// What one (module, entry point) row of the table holds.
#[derive(Default)]
struct Row {
    variants: Vec<String>,
    overrides: Vec<String>,
    specialisations: usize,
    /// Per back end: variants written (f32 plus offered ones), and the
    /// variants not offered there (they fall back to f32).
    cells: BTreeMap<Backend, (Vec<String>, Vec<String>)>,
}

fn variant_name(defines: &[Define]) -> String {
    if defines.is_empty() {
        "f32".into()
    } else {
        defines
            .iter()
            .map(|d| d.name().to_lowercase())
            .collect::<Vec<_>>()
            .join("+")
    }
}

#[test]
fn every_kernel_writes_to_every_backend() {
    let mut failures = Vec::new();
    let mut rows: BTreeMap<(usize, String), Row> = BTreeMap::new();
    let mut written = 0usize;
    for (mi, m) in MODULES.iter().enumerate() {
        for defines in m.variants {
            let src = m.source(defines);
            let vname = variant_name(defines);
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{} {vname}: {}", m.name, e.emit_to_string(&src)));
            let info = Validator::new(ValidationFlags::all(), capabilities(defines))
                .validate(&module)
                .unwrap_or_else(|e| panic!("{} {vname}: {}", m.name, e.emit_to_string(&src)));
            let specs = specialisations(&module);
            for ep in &module.entry_points {
                assert_eq!(ep.stage, ShaderStage::Compute, "{}::{}", m.name, ep.name);
                let row = rows.entry((mi, ep.name.clone())).or_default();
                row.variants.push(vname.clone());
                row.overrides = module
                    .overrides
                    .iter()
                    .filter_map(|(_, o)| o.name.clone())
                    .collect();
                row.specialisations = specs.len();
                for b in BACKENDS {
                    let cell = row.cells.entry(b).or_default();
                    if !offered(b, defines) {
                        cell.1.push(vname.clone());
                        continue;
                    }
                    for c in &specs {
                        let tag =
                            format!("{}::{} [{vname}] {c:?} → {}", m.name, ep.name, b.title());
                        let resolved = naga::back::pipeline_constants::process_overrides(
                            &module,
                            &info,
                            Some((ShaderStage::Compute, &ep.name)),
                            c,
                        );
                        let result = match resolved {
                            Ok((module, info)) => write(b, &module, &info, &ep.name, defines),
                            Err(e) => Err(format!("overrides: {e}")),
                        };
                        match result {
                            Ok(()) => written += 1,
                            Err(e) => failures.push(format!("{tag}: {e}")),
                        }
                    }
                    cell.0.push(vname.clone());
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rejections:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("wrote {written} (entry point, variant, constants, back end) combinations");

    // The table.
    let mut md = String::from(
        "# Portability of the kernels\n\n\
         Generated by `SCORECL_BLESS=1 cargo test -p scorecl-shaders --test portability` \
         (the same test fails in CI when this file is stale). Every WGSL entry point the \
         host ships, in every variant it builds and every assignment of its override \
         constants, is validated by naga and written by naga's SPIR-V, MSL, HLSL and GLSL \
         back ends, one entry point at a time, as wgpu builds pipelines. No GPU is needed, \
         so this proves that each back end's compiler input is produced; it does not run \
         the kernels there (only Vulkan on lavapipe, and GL, run in CI).\n\n\
         Versions asked of each writer (the lowest each variant needs): SPIR-V 1.0, 1.3 \
         with subgroups; MSL 2.0, 2.1 with subgroups or f16; HLSL shader model 5.1, 6.0 \
         with subgroups, 6.2 with f16; GLSL 4.30 core and GLSL ES 3.10.\n\n\
         Optional features and their fallback: `subgroups` (subgroup reductions and \
         shuffles; the fallback is the `f32` variant with workgroup-memory reductions) and \
         `f16` (f16 storage with f32 arithmetic; the fallback is f32 storage), and \
         `half_a`/`half_b` (a GEMM operand stored as f16 and accumulated in f32, for \
         `train.precision = \"f16\"`; the fallback is f32 operands). The host \
         picks a variant per adapter (`scorecl doctor` shows which); wgpu's GL backend \
         offers neither feature, so on GL every kernel runs its `f32` variant \
         (\"not offered\" below) and the entry points that exist only for a feature \
         (`gemm_sg8`, the f16 casts) are not used.\n\n",
    );
    md.push_str("| kernel | variants | override constants |");
    for b in BACKENDS {
        md.push_str(&format!(" {} |", b.title()));
    }
    md.push_str("\n| --- | --- | --- |");
    for _ in BACKENDS {
        md.push_str(" --- |");
    }
    md.push('\n');
    for ((mi, ep), row) in &rows {
        let overrides = if row.overrides.is_empty() {
            "—".to_string()
        } else {
            format!(
                "{} ({} specialisations)",
                row.overrides.join(", "),
                row.specialisations
            )
        };
        md.push_str(&format!(
            "| `{}::{ep}` | {} | {overrides} |",
            MODULES[*mi].name,
            row.variants.join(", ")
        ));
        for b in BACKENDS {
            let (ok, fallback) = &row.cells[&b];
            let cell = if ok.is_empty() {
                format!("not used (needs {})", fallback.join(", "))
            } else if fallback.is_empty() {
                format!("ok: {}", ok.join(", "))
            } else {
                format!(
                    "ok: {}; not offered: {}",
                    ok.join(", "),
                    fallback.join(", ")
                )
            };
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\n{} entry points in {} modules; {written} (entry point, variant, constants, back end) \
         combinations written, none rejected.\n",
        rows.len(),
        MODULES.len()
    ));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PORTABILITY.md");
    if std::env::var_os("SCORECL_BLESS").is_some() {
        std::fs::write(path, &md).unwrap();
    } else {
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == md,
            "docs/PORTABILITY.md is stale: run `SCORECL_BLESS=1 cargo test -p \
             scorecl-shaders --test portability` and commit it"
        );
    }
}

/// The check can fail: an f16 kernel, which SPIR-V takes, is rejected by
/// the GLSL ES writer (GL offers no shader-f16), and `write` reports it.
#[test]
fn a_rejected_variant_is_reported() {
    let src = "enable f16;\n@group(0) @binding(0) var<storage, read_write> x: array<f16>;\n\
               @compute @workgroup_size(1) fn main() { x[0] = x[0] * 2.0h; }\n";
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let info = Validator::new(ValidationFlags::all(), capabilities(&[Define::F16]))
        .validate(&module)
        .unwrap();
    assert!(write(Backend::Spirv, &module, &info, "main", &[Define::F16]).is_ok());
    let e = write(Backend::GlslEs310, &module, &info, "main", &[Define::F16]);
    assert!(e.is_err(), "GLSL ES accepted f16");
}
