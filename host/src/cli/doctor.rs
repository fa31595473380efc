//! `scorecl doctor`: the adapters wgpu sees, the chosen device's paths, and checks against the core.

use super::{gpu, Cli};
use crate::{Gpu, GpuOptions};

pub(super) fn run(cli: &Cli, json: bool) -> anyhow::Result<()> {
    use crate::doctor;
    let adapters = doctor::adapters();
    if !json {
        println!("scorecl {}", env!("CARGO_PKG_VERSION"));
        println!("adapters wgpu sees ({}):", adapters.len());
        for (i, a) in adapters.iter().enumerate() {
            println!(
                "\n[{i}] {} ({}, {}), driver {}",
                a.name, a.backend, a.device_type, a.driver
            );
            println!(
                "    subgroups {} (sizes {}–{}), shader-f16 {}, timestamps {}",
                a.subgroups, a.subgroup_size.0, a.subgroup_size.1, a.shader_f16, a.timestamps
            );
            println!(
                "    scorecl uses: reductions in {}; GEMM {}; f16 {}",
                a.reductions,
                a.gemm,
                if a.shader_f16 {
                    "storage available (train.precision = \"f16\")"
                } else {
                    "off (train.precision = \"f16\" runs in f32)"
                }
            );
            println!(
                "    cooperative matrix: {}",
                if a.coop_matrix.is_empty() {
                    "none scorecl can use".to_string()
                } else {
                    format!(
                        "{} (opt in with SCORECL_COOP_MATRIX=1)",
                        a.coop_matrix.join(", ")
                    )
                }
            );
            let l = &a.limits;
            println!(
                "    limits: buffer {} MiB, storage binding {} MiB, {} storage buffers/stage, \
                 workgroup memory {} KiB, {} invocations/workgroup, {} workgroups/dimension",
                l.max_buffer_size >> 20,
                l.max_storage_buffer_binding_size >> 20,
                l.max_storage_buffers_per_shader_stage,
                l.max_compute_workgroup_storage_size >> 10,
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroups_per_dimension
            );
        }
    }
    let cpu_info = crate::native::CpuInfo::detect();
    if !json {
        println!(
            "\nnative CPU device (--device cpu): {} threads, {}, GEMM {}, memory {} MiB",
            cpu_info.threads,
            cpu_info.simd,
            cpu_info.gemm,
            cpu_info.memory >> 20
        );
    }
    let gpu = gpu(cli)?;
    let checks = doctor::self_check(&gpu)?;
    // The CPU device's checks too, when it is not the chosen device.
    let cpu_checks = if gpu.is_native() {
        Vec::new()
    } else {
        let cpu = Gpu::native(&GpuOptions {
            quiet: true,
            ..GpuOptions::default()
        })?;
        doctor::self_check(&cpu)?
    };
    let ok = checks.iter().chain(&cpu_checks).all(|c| c.passed);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "adapters": adapters,
                "cpu": cpu_info,
                "chosen": gpu.describe(),
                "checks": checks,
                "cpu_checks": cpu_checks,
                "passed": ok,
            })
        );
    } else {
        let print = |on: &str, checks: &[doctor::Check]| {
            println!("\nchecks on {on}:");
            for c in checks {
                println!(
                    "  {:4} {} (max rel. error {:.1e} ≤ {:.0e}, {:.1} ms)",
                    if c.passed { "ok" } else { "FAIL" },
                    c.name,
                    c.max_rel_err,
                    c.tolerance,
                    c.ms
                );
            }
        };
        print(&gpu.describe(), &checks);
        if !cpu_checks.is_empty() {
            print("the native CPU device", &cpu_checks);
        }
    }
    anyhow::ensure!(
        ok,
        "a check failed on `{}` or the native CPU device: the kernels do not match the \
         core there; please report it with this output",
        gpu.info.name
    );
    if !json {
        println!("all checks passed");
    }
    Ok(())
}
