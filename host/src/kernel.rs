//! Compute kernels: a pipeline and its bind-group layout, built once per
//! (module, entry point, variant, override constants) and cached.
//!
//! The layout is read from the WGSL itself with naga: the entry point's
//! `var<uniform>` (binding 0, the kernel's parameters, bound with a dynamic
//! offset into the step's parameter arena) and its `var<storage>` buffers,
//! read-only or read-write as declared, in binding order, with their
//! names. Dispatches pass their tensors in that order, each named as the
//! WGSL variable it binds ([`bind!`](crate::bind)), and a name out of place
//! is refused.
//!
//! The parameters struct is declared once in Rust with [`kernel_params!`],
//! which records each field's name, offset and type ([`KernelParams`]);
//! the first dispatch of a kernel with a given Rust struct (and the native
//! twin's first read of it) compares that with the WGSL struct naga
//! reflects, and refuses a difference naming the kernel and the field.

use std::num::NonZeroU64;
use std::sync::Arc;

use scorecl_shaders::{Define, Module};

use crate::error::{Error, GpuError, Result};
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

/// The scalar type of a parameters field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `f32`.
    F32,
}

/// One field of a kernel's parameters struct: name, byte offset, scalar
/// type and number of scalars (1, or a vector's or array's length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamField {
    /// The field's name (a leading `_` marks padding, which is not
    /// compared).
    pub name: &'static str,
    /// Byte offset in the struct.
    pub offset: usize,
    /// Scalar type.
    pub scalar: Scalar,
    /// Scalars in the field.
    pub count: usize,
}

/// A Rust type a parameters field may have.
pub trait ParamType {
    /// Its scalar type.
    const SCALAR: Scalar;
    /// Scalars in it.
    const COUNT: usize;
}

impl ParamType for u32 {
    const SCALAR: Scalar = Scalar::U32;
    const COUNT: usize = 1;
}

impl ParamType for i32 {
    const SCALAR: Scalar = Scalar::I32;
    const COUNT: usize = 1;
}

impl ParamType for f32 {
    const SCALAR: Scalar = Scalar::F32;
    const COUNT: usize = 1;
}

impl<T: ParamType, const N: usize> ParamType for [T; N] {
    const SCALAR: Scalar = T::SCALAR;
    const COUNT: usize = N * T::COUNT;
}

/// A kernel's parameters struct, with the layout [`kernel_params!`]
/// records for the check against its WGSL twin.
pub trait KernelParams: bytemuck::Pod + 'static {
    /// The struct's name (in messages).
    const NAME: &'static str;
    /// Its fields in declaration order.
    const FIELDS: &'static [ParamField];
}

/// Declares a kernel's parameters struct: `#[repr(C)]`, `Pod`, and its
/// [`KernelParams`] layout, so that dispatching it to a kernel whose WGSL
/// `Params` differs in size, a field's name, offset or type fails naming
/// the kernel and the field.
///
/// ```ignore
/// kernel_params! {
///     #[derive(Default)]
///     struct Params { n: u32, scale: f32, _p: [u32; 2] }
/// }
/// ```
#[macro_export]
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty ),*
        }

        impl $crate::kernel::KernelParams for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [$crate::kernel::ParamField] = &[
                $( $crate::kernel::ParamField {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    scalar: <$ty as $crate::kernel::ParamType>::SCALAR,
                    count: <$ty as $crate::kernel::ParamType>::COUNT,
                } ),*
            ];
        }
    };
}

/// The storage tensors of a dispatch, each named as the WGSL variable it
/// binds: `bind![x, out]` passes the tensors `x` and `out` to the bindings
/// `x` and `out`; `bind![x, w = weight, out = &self.y]` names an
/// expression. [`Step::dispatch`](crate::Step::dispatch) checks the names
/// against the kernel's, in binding order.
#[macro_export]
macro_rules! bind {
    ($($name:ident $(= $e:expr)?),* $(,)?) => {
        &[$( (stringify!($name), $crate::bind!(@one $name $(= $e)?)) ),*]
    };
    (@one $name:ident) => { $name };
    (@one $name:ident = $e:expr) => { $e };
}

/// The WGSL parameters struct of an entry point, as naga lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The WGSL struct's name.
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// Its members: name, offset, scalar type, scalars.
    pub fields: Vec<(String, usize, Scalar, usize)>,
}

impl ParamsLayout {
    /// Whether the Rust struct `P` has this layout: the same size, and
    /// every member that is not padding (a leading `_`) at the same offset
    /// with the same type on both sides. The error names `kernel`, the
    /// struct and the first field that differs.
    pub fn check<P: KernelParams>(&self, kernel: &str) -> Result<()> {
        self.check_fields(kernel, P::NAME, std::mem::size_of::<P>(), P::FIELDS)
    }

    /// [`check`](Self::check) on a layout given by value.
    pub fn check_fields(
        &self,
        kernel: &str,
        rust: &str,
        size: usize,
        fields: &[ParamField],
    ) -> Result<()> {
        let err = |message: String| {
            Error::from(GpuError::Kernel {
                kernel: kernel.to_string(),
                message: format!(
                    "parameters: Rust `{rust}` and WGSL `{}` differ: {message}",
                    self.name
                ),
            })
        };
        let pad = |n: &str| n.starts_with('_');
        for (name, offset, scalar, count) in self.fields.iter().filter(|f| !pad(&f.0)) {
            let Some(f) = fields.iter().find(|f| f.name == name) else {
                return Err(err(format!("field `{name}` is not in the Rust struct")));
            };
            if f.offset != *offset || f.scalar != *scalar || f.count != *count {
                return Err(err(format!(
                    "field `{name}`: Rust offset {} {:?}×{}, WGSL offset {offset} {scalar:?}×{count}",
                    f.offset, f.scalar, f.count
                )));
            }
        }
        if let Some(f) = fields
            .iter()
            .find(|f| !pad(f.name) && !self.fields.iter().any(|w| w.0 == f.name))
        {
            return Err(err(format!("field `{}` is not in the WGSL struct", f.name)));
        }
        if size != self.size {
            return Err(err(format!(
                "size: Rust {size} bytes, WGSL {} bytes",
                self.size
            )));
        }
        Ok(())
    }
}

/// The WGSL layout of `ty` (a struct) in `m`, or an error naming why not.
fn params_layout(
    m: &naga::Module,
    ty: naga::Handle<naga::Type>,
) -> std::result::Result<ParamsLayout, String> {
    let t = &m.types[ty];
    let naga::TypeInner::Struct { members, span } = &t.inner else {
        return Err("the params uniform is not a struct".into());
    };
    let scalar_of = |s: naga::Scalar| match (s.kind, s.width) {
        (naga::ScalarKind::Uint, 4) => Ok(Scalar::U32),
        (naga::ScalarKind::Sint, 4) => Ok(Scalar::I32),
        (naga::ScalarKind::Float, 4) => Ok(Scalar::F32),
        other => Err(format!("unsupported scalar {other:?} in the params struct")),
    };
    let mut fields = Vec::new();
    for mb in members {
        let name = mb.name.clone().unwrap_or_default();
        let (scalar, count) = match &m.types[mb.ty].inner {
            naga::TypeInner::Scalar(s) => (scalar_of(*s)?, 1),
            naga::TypeInner::Vector { size, scalar } => (scalar_of(*scalar)?, *size as usize),
            other => {
                return Err(format!(
                    "params member `{name}`: unsupported type {other:?}"
                ))
            }
        };
        fields.push((name, mb.offset as usize, scalar, count));
    }
    Ok(ParamsLayout {
        name: t.name.clone().unwrap_or_default(),
        size: *span as usize,
        fields,
    })
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
    /// The storage bindings' names (the WGSL variables), in binding order:
    /// a dispatch names each tensor it passes ([`bind!`](crate::bind)).
    pub storage_names: Vec<String>,
    /// `@workgroup_size` of the entry point.
    pub workgroup_size: [u32; 3],
    /// The variant and the override constants (read by the native twins).
    pub(crate) defines: Vec<Define>,
    pub(crate) constants: Vec<(&'static str, f64)>,
    /// The WGSL parameters struct (`None` for native-only kernels, whose
    /// Rust struct is the only declaration).
    pub params_layout: Option<ParamsLayout>,
    /// Rust parameter structs already checked against `params_layout`.
    checked: std::sync::Mutex<Vec<std::any::TypeId>>,
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

    /// Checks `P` against the WGSL parameters struct (once per type).
    pub fn check_params<P: KernelParams>(&self) -> Result<()> {
        let Some(layout) = &self.params_layout else {
            return Ok(());
        };
        let id = std::any::TypeId::of::<P>();
        if self.checked.lock().unwrap().contains(&id) {
            return Ok(());
        }
        layout.check::<P>(&self.name)?;
        self.checked.lock().unwrap().push(id);
        Ok(())
    }
}

/// Bindings of an entry point, its workgroup size, its parameters struct
/// and the names of its storage bindings in binding order.
type Reflection = (
    Vec<(u32, Binding)>,
    [u32; 3],
    Option<ParamsLayout>,
    Vec<String>,
);

/// A parsed and validated module.
type Parsed = (naga::Module, naga::valid::ModuleInfo);

fn parse(src: &str, name: &str) -> Result<Parsed> {
    let err = |message: String| {
        Error::from(GpuError::Kernel {
            kernel: name.to_string(),
            message,
        })
    };
    let m = naga::front::wgsl::parse_str(src).map_err(|e| err(e.emit_to_string(src)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&m)
    .map_err(|e| err(e.emit_to_string(src)))?;
    Ok((m, info))
}

fn reflect(module: &Module, src: &str, entry: &str, name: &str) -> Result<Reflection> {
    let (m, info) = parse(src, name)?;
    reflect_parsed(module, &m, &info, entry, name)
}

fn reflect_parsed(
    module: &Module,
    m: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    name: &str,
) -> Result<Reflection> {
    let err = |message: String| {
        Error::from(GpuError::Kernel {
            kernel: name.to_string(),
            message,
        })
    };
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
    let mut layout = None;
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
            naga::AddressSpace::Uniform => {
                layout = Some(params_layout(m, var.ty).map_err(err)?);
                Binding::Params
            }
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    Binding::ReadWrite
                } else {
                    Binding::Read
                }
            }
            other => return Err(err(format!("unsupported binding space {other:?}"))),
        };
        bindings.push((rb.binding, kind, var.name.clone().unwrap_or_default()));
    }
    bindings.sort_by_key(|(b, _, _)| *b);
    let names = bindings
        .iter()
        .filter(|(_, k, _)| *k != Binding::Params)
        .map(|(_, _, n)| n.clone())
        .collect();
    let bindings: Vec<(u32, Binding)> = bindings.into_iter().map(|(b, k, _)| (b, k)).collect();
    if let Some(pos) = bindings.iter().position(|(_, k)| *k == Binding::Params) {
        if bindings[pos].0 != 0 {
            return Err(err("the params uniform must be binding 0".into()));
        }
    }
    Ok((bindings, ep.workgroup_size, layout, names))
}

/// The parameters struct of every entry point of `module` in the variant
/// `defines` that takes one, as dispatches reflect it: `(entry, layout)`.
pub fn module_params(module: &Module, defines: &[Define]) -> Result<Vec<(String, ParamsLayout)>> {
    let name = format!("{}{defines:?}", module.name);
    let (m, info) = parse(&module.source(defines), &name)?;
    let mut out = Vec::new();
    for ep in &m.entry_points {
        let kernel = format!("{}::{}{defines:?}", module.name, ep.name);
        if let (_, _, Some(layout), _) = reflect_parsed(module, &m, &info, &ep.name, &kernel)? {
            out.push((ep.name.clone(), layout));
        }
    }
    Ok(out)
}

/// A Rust parameters struct by value (for the test that checks every
/// module's struct against every entry point).
#[derive(Debug, Clone, Copy)]
pub struct ParamsDecl {
    /// The struct's name.
    pub name: &'static str,
    /// Its size in bytes.
    pub size: usize,
    /// Its fields.
    pub fields: &'static [ParamField],
}

impl ParamsDecl {
    /// The declaration of `P`.
    pub const fn of<P: KernelParams>() -> ParamsDecl {
        ParamsDecl {
            name: P::NAME,
            size: std::mem::size_of::<P>(),
            fields: P::FIELDS,
        }
    }
}

impl Gpu {
    /// Caches `kernel` under `key`, or returns the one another thread
    /// cached first (two threads may build the same kernel at once; all
    /// callers then share one).
    fn cache(&self, key: KernelKey, kernel: Arc<Kernel>) -> Arc<Kernel> {
        self.kernels
            .lock()
            .unwrap()
            .entry(key)
            .or_insert(kernel)
            .clone()
    }

    /// A kernel of the native CPU device with no WGSL twin: an op that the
    /// CPU runs better whole than as the GPU's sequence of passes (the
    /// convolution's wide column layout, `ops::conv`). `bindings` are its
    /// storage bindings in order, named; it takes a parameters struct.
    pub(crate) fn native_kernel(
        &self,
        entry: &'static str,
        bindings: &[(&'static str, Binding)],
        f: crate::native::KernelFn,
    ) -> Result<Arc<Kernel>> {
        if !self.is_native() {
            return Err(GpuError::Kernel {
                kernel: format!("native::{entry}"),
                message: "a native CPU kernel asked for on a wgpu device".into(),
            }
            .into());
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
        all.extend(
            bindings
                .iter()
                .enumerate()
                .map(|(i, (_, b))| (i as u32 + 1, *b)),
        );
        let kernel = Arc::new(Kernel {
            name: format!("native::{entry}"),
            exec: Exec::Native(f),
            bindings: all,
            storage_names: bindings.iter().map(|(n, _)| n.to_string()).collect(),
            workgroup_size: [1, 1, 1],
            defines: Vec::new(),
            constants: Vec::new(),
            params_layout: None,
            checked: Default::default(),
        });
        Ok(self.cache(key, kernel))
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
                let raw = std::fs::read_to_string(&path).map_err(|e| {
                    Error::file(&path, format!("kernel `{name}` (SCORECL_SHADER_DIR): {e}"))
                })?;
                Module {
                    raw: Box::leak(raw.into_boxed_str()),
                    ..*module
                }
                .source(&defines)
            }
            None => module.source(&defines),
        };
        let (bindings, workgroup_size, params_layout, storage_names) =
            reflect(module, &src, entry, &name)?;
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
                    storage_names,
                    workgroup_size,
                    defines,
                    constants: constants.to_vec(),
                    params_layout,
                    checked: Default::default(),
                });
                return Ok(self.cache(key, kernel));
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
                storage_names,
                workgroup_size,
                defines: defines.clone(),
                constants: constants.to_vec(),
                params_layout,
                checked: Default::default(),
            }
        })?;
        let kernel = Arc::new(kernel);
        Ok(self.cache(key, kernel))
    }
}
