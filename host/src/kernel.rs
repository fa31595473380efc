//! Compute kernels: a pipeline and its bind-group layout, built once per
//! (module, entry point, variant, override constants) and cached.
//!
//! The layout is read from the WGSL itself with naga: the entry point's
//! `var<uniform>` (binding 0, the kernel's parameters, bound with a dynamic
//! offset into the step's parameter arena) and its `var<storage>` buffers,
//! read-only or read-write as declared, in binding order. Dispatches pass
//! their tensors in that order.

use std::num::NonZeroU64;
use std::sync::Arc;

use scorecl_shaders::{Define, Module};

use crate::error::{GpuError, Result};
use crate::gpu::Gpu;

/// Bytes reserved per dispatch for the parameters struct.
pub const PARAMS_SLOT: u64 = 256;

/// How a kernel binds one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The parameters uniform (binding 0).
    Params,
    /// A read-only storage buffer.
    Read,
    /// A read-write storage buffer.
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    module: &'static str,
    entry: &'static str,
    defines: Vec<Define>,
    constants: Vec<(&'static str, u64)>,
}

/// How a kernel runs: a wgpu pipeline, or its Rust twin on the native CPU
/// device.
pub(crate) enum Exec {
    Wgpu {
        pipeline: wgpu::ComputePipeline,
        layout: wgpu::BindGroupLayout,
    },
    Native(crate::native::KernelFn),
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exec::Wgpu { .. } => write!(f, "wgpu pipeline"),
            Exec::Native(_) => write!(f, "native"),
        }
    }
}

/// A compiled kernel.
#[derive(Debug)]
pub struct Kernel {
    /// `module::entry[variant]`, used in every error about it.
    pub name: String,
    pub(crate) exec: Exec,
    /// Bindings in binding order (binding 0 is `Params` if present).
    pub bindings: Vec<(u32, Binding)>,
    /// `@workgroup_size` of the entry point.
    pub workgroup_size: [u32; 3],
    /// The variant and the override constants (read by the native twins).
    pub(crate) defines: Vec<Define>,
    pub(crate) constants: Vec<(&'static str, f64)>,
}

impl Kernel {
    pub(crate) fn pipeline(&self) -> &wgpu::ComputePipeline {
        match &self.exec {
            Exec::Wgpu { pipeline, .. } => pipeline,
            Exec::Native(_) => unreachable!("native kernels are run by crate::native"),
        }
    }

    pub(crate) fn layout(&self) -> &wgpu::BindGroupLayout {
        match &self.exec {
            Exec::Wgpu { layout, .. } => layout,
            Exec::Native(_) => unreachable!("native kernels are run by crate::native"),
        }
    }

    /// Number of storage buffers a dispatch must pass.
    pub fn storage_count(&self) -> usize {
        self.bindings
            .iter()
            .filter(|(_, b)| *b != Binding::Params)
            .count()
    }

    /// Whether the kernel takes a parameters uniform.
    pub fn has_params(&self) -> bool {
        self.bindings.iter().any(|(_, b)| *b == Binding::Params)
    }
}

/// Bindings of an entry point and its workgroup size.
type Reflection = (Vec<(u32, Binding)>, [u32; 3]);

fn reflect(module: &Module, src: &str, entry: &str, name: &str) -> Result<Reflection> {
    let err = |message: String| GpuError::Kernel {
        kernel: name.to_string(),
        message,
    };
    let m = naga::front::wgsl::parse_str(src).map_err(|e| err(e.emit_to_string(src)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&m)
    .map_err(|e| err(e.emit_to_string(src)))?;
    let (index, ep) = m
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == entry)
        .ok_or_else(|| {
            err(format!(
                "no entry point `{entry}` in module `{}`",
                module.name
            ))
        })?;
    let uses = info.get_entry_point(index);
    let mut bindings = Vec::new();
    for (handle, var) in m.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        if uses[handle].is_empty() {
            continue;
        }
        if rb.group != 0 {
            return Err(err(format!(
                "binding group {} (only group 0 is used)",
                rb.group
            )));
        }
        let kind = match var.space {
            naga::AddressSpace::Uniform => Binding::Params,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    Binding::ReadWrite
                } else {
                    Binding::Read
                }
            }
            other => return Err(err(format!("unsupported binding space {other:?}"))),
        };
        bindings.push((rb.binding, kind));
    }
    bindings.sort_by_key(|(b, _)| *b);
    if let Some(pos) = bindings.iter().position(|(_, k)| *k == Binding::Params) {
        if bindings[pos].0 != 0 {
            return Err(err("the params uniform must be binding 0".into()));
        }
    }
    Ok((bindings, ep.workgroup_size))
}

impl Gpu {
    /// A kernel of the native CPU device with no WGSL twin: an op that the
    /// CPU runs better whole than as the GPU's sequence of passes (the
    /// convolution's wide column layout, `ops::conv`). `bindings` are its
    /// storage bindings in order; it takes a parameters struct.
    pub(crate) fn native_kernel(
        &self,
        entry: &'static str,
        bindings: &[Binding],
        f: crate::native::KernelFn,
    ) -> Result<Arc<Kernel>> {
        if !self.is_native() {
            return Err(GpuError::Kernel {
                kernel: format!("native::{entry}"),
                message: "a native CPU kernel asked for on a wgpu device".into(),
            });
        }
        let key = KernelKey {
            module: "native",
            entry,
            defines: Vec::new(),
            constants: Vec::new(),
        };
        if let Some(k) = self.kernels.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let mut all = vec![(0, Binding::Params)];
        all.extend(bindings.iter().enumerate().map(|(i, b)| (i as u32 + 1, *b)));
        let kernel = Arc::new(Kernel {
            name: format!("native::{entry}"),
            exec: Exec::Native(f),
            bindings: all,
            workgroup_size: [1, 1, 1],
            defines: Vec::new(),
            constants: Vec::new(),
        });
        self.kernels.lock().unwrap().insert(key, kernel.clone());
        Ok(kernel)
    }

    /// The kernel `entry` of `module` in the variant `defines`, with
    /// pipeline-overridable constants; built on first use, then cached.
    pub fn kernel(
        &self,
        module: &'static Module,
        entry: &'static str,
        defines: &[Define],
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Kernel>> {
        let mut defines = defines.to_vec();
        defines.sort();
        defines.dedup();
        let key = KernelKey {
            module: module.name,
            entry,
            defines: defines.clone(),
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        };
        if let Some(k) = self.kernels.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let mut name = format!("{}::{entry}", module.name);
        if !defines.is_empty() {
            name.push_str(&format!("{defines:?}"));
        }
        for (k, v) in constants {
            name.push_str(&format!(" {k}={v}"));
        }
        // Development switch: SCORECL_SHADER_DIR=shaders/wgsl reads the
        // module from disk, so a kernel can be changed without a rebuild.
        let src = match std::env::var_os("SCORECL_SHADER_DIR") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("{}.wgsl", module.name));
                let raw = std::fs::read_to_string(&path).map_err(|e| GpuError::Kernel {
                    kernel: name.clone(),
                    message: format!("SCORECL_SHADER_DIR: {}: {e}", path.display()),
                })?;
                Module {
                    raw: Box::leak(raw.into_boxed_str()),
                    ..*module
                }
                .source(&defines)
            }
            None => module.source(&defines),
        };
        let (bindings, workgroup_size) = reflect(module, &src, entry, &name)?;
        let device = match &self.backend {
            crate::gpu::Backend::Wgpu { device, .. } => device,
            crate::gpu::Backend::Native(_) => {
                let f =
                    crate::native::kernel(module.name, entry).ok_or_else(|| GpuError::Kernel {
                        kernel: name.clone(),
                        message: "no native CPU implementation of this entry point".into(),
                    })?;
                let kernel = Arc::new(Kernel {
                    name,
                    exec: Exec::Native(f),
                    bindings,
                    workgroup_size,
                    defines,
                    constants: constants.to_vec(),
                });
                self.kernels.lock().unwrap().insert(key, kernel.clone());
                return Ok(kernel);
            }
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding: *binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    Binding::Params => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: NonZeroU64::new(PARAMS_SLOT),
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *kind == Binding::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let kernel = self.scoped(&name, || {
            let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&name),
                source: wgpu::ShaderSource::Wgsl(src.as_str().into()),
            });
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&name),
                entries: &entries,
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&name),
                layout: Some(&pl),
                module: &shader,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            Kernel {
                name: name.clone(),
                exec: Exec::Wgpu { pipeline, layout },
                bindings,
                workgroup_size,
                defines: defines.clone(),
                constants: constants.to_vec(),
            }
        })?;
        let kernel = Arc::new(kernel);
        self.kernels.lock().unwrap().insert(key, kernel.clone());
        Ok(kernel)
    }
}
