//! The device context: a wgpu device (instance from the environment,
//! adapter choice, explicitly requested features and limits) or the native
//! CPU device (`crate::native`: the same recorded steps run by Rust
//! kernels), with the kernel cache and the buffer pool.
//!
//! Device choice ([`GpuOptions::device`], `--device`, `SCORECL_DEVICE`):
//! `cpu` is the native CPU device; `gpu` the best wgpu adapter (discrete,
//! integrated, virtual, other, then software drivers such as lavapipe);
//! anything else an adapter name substring. Without a choice a real GPU
//! (discrete, integrated or virtual) is taken if wgpu sees one, else the
//! native CPU device; Mesa's lavapipe / llvmpipe only when asked for (by
//! `gpu`, an adapter name, `SCORECL_ADAPTER` or `WGPU_BACKEND`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, GpuError, Result};
use crate::kernel::{Kernel, KernelKey};
use crate::tensor::{Pool, Tensor};

/// What kind of processor the adapter is; kernels may pick variants by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterClass {
    /// A software rasteriser (lavapipe, WARP, SwiftShader).
    Cpu,
    /// A discrete GPU.
    Discrete,
    /// An integrated GPU.
    Integrated,
    /// Anything else (virtual, unknown).
    Other,
    /// The native CPU device: kernels in Rust, no wgpu.
    Native,
}

/// What the device was created with: optional features actually enabled
/// and the limits the kernels must respect.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Subgroup operations are enabled.
    pub subgroups: bool,
    /// Smallest and largest subgroup size the adapter reports.
    pub subgroup_size: (u32, u32),
    /// `f16` in shaders is enabled.
    pub f16: bool,
    /// Timestamp queries are enabled.
    pub timestamps: bool,
    /// Cooperative matrices are enabled (opt-in, [`GpuOptions::coop_matrix`])
    /// with 8 × 8 × 8 f32 fragments: the GEMM of f32 operands may use them.
    pub coop_f32: bool,
    /// Cooperative matrices are enabled with 16 × 16 × 16 f16 → f32
    /// fragments (and shader-f16): the GEMM of f16 operands may use them.
    pub coop_f16: bool,
    /// The GEMM kernel that replaces the automatic choice
    /// ([`GpuOptions::gemm`]); kernels the shape or device cannot run still
    /// fall back.
    pub gemm: Option<crate::ops::gemm::GemmKernel>,
    /// Adapter class.
    pub class: AdapterClass,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
}

/// How to choose and configure the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// `cpu` (the native CPU device), `gpu` (the best wgpu adapter, CPU
    /// drivers last) or an adapter name substring (`SCORECL_DEVICE`,
    /// `--device`); `None`: a real GPU if wgpu sees one, else `cpu`.
    pub device: Option<String>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Do not use subgroups even if the adapter has them.
    pub no_subgroups: bool,
    /// Do not use shader f16 even if the adapter has it.
    pub no_f16: bool,
    /// Do not use timestamp queries.
    pub no_timestamps: bool,
    /// Use wgpu's experimental cooperative matrices for GEMMs where the
    /// adapter offers a fragment shape scorecl has a kernel for (off by
    /// default: the feature is experimental in wgpu 30).
    pub coop_matrix: bool,
    /// Replace the automatic GEMM choice by this kernel: `auto`, `portable`,
    /// `sg8`, `tiled`, `wide` or `coop` (`SCORECL_GEMM`; for comparing
    /// kernels in whole training steps).
    pub gemm: Option<String>,
    /// Do not print the chosen adapter.
    pub quiet: bool,
    /// A data-parallel run's rank on this machine (MPI's local rank): with
    /// no adapter named, the rank takes the (local rank mod count)-th of
    /// the best adapters (each rank its own GPU).
    pub local_rank: Option<usize>,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl GpuOptions {
    /// Options from the environment: `SCORECL_DEVICE` (`cpu`, `gpu` or a
    /// name substring), `SCORECL_ADAPTER` (name substring),
    /// `SCORECL_NO_SUBGROUPS`, `SCORECL_NO_F16`, `SCORECL_NO_TIMESTAMPS`,
    /// `SCORECL_COOP_MATRIX` (any non-empty value but `0`), `SCORECL_GEMM`
    /// (a kernel name). wgpu's own variables (`WGPU_BACKEND`,
    /// …) choose the backends.
    pub fn from_env() -> Self {
        GpuOptions {
            device: std::env::var("SCORECL_DEVICE")
                .ok()
                .filter(|s| !s.is_empty()),
            adapter: std::env::var("SCORECL_ADAPTER")
                .ok()
                .filter(|s| !s.is_empty()),
            no_subgroups: env_flag("SCORECL_NO_SUBGROUPS"),
            no_f16: env_flag("SCORECL_NO_F16"),
            no_timestamps: env_flag("SCORECL_NO_TIMESTAMPS"),
            coop_matrix: env_flag("SCORECL_COOP_MATRIX"),
            gemm: std::env::var("SCORECL_GEMM").ok().filter(|s| !s.is_empty()),
            quiet: false,
            local_rank: None,
        }
    }
}

/// What executes the recorded steps.
pub(crate) enum Backend {
    /// A wgpu device and its queue.
    Wgpu {
        device: wgpu::Device,
        queue: wgpu::Queue,
    },
    /// The native CPU device.
    Native(crate::native::CpuInfo),
}

/// The device (a wgpu adapter's, or the native CPU device): what it can
/// do, and the caches. Models, losses, training and evaluation run on
/// either unchanged.
pub struct Gpu {
    pub(crate) backend: Backend,
    /// The adapter's description (for the native CPU device: backend
    /// `Noop`, device type `Cpu`, driver `native`; see [`Gpu::is_native`]).
    pub info: wgpu::AdapterInfo,
    /// Enabled optional features and limits.
    pub caps: Caps,
    pub(crate) kernels: Mutex<HashMap<KernelKey, Arc<Kernel>>>,
    /// Bind groups by kernel, parameter arena and buffers (see `step.rs`).
    pub(crate) bind_groups: Mutex<HashMap<crate::step::BindKey, wgpu::BindGroup>>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) params: Mutex<Option<wgpu::Buffer>>,
    dummy: OnceLock<Tensor>,
    lost: Arc<Mutex<Option<String>>>,
}

static PRINTED: AtomicBool = AtomicBool::new(false);

fn instance() -> (wgpu::Instance, wgpu::Backends) {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let backends = desc.backends;
    (wgpu::Instance::new(desc), backends)
}

/// Every adapter wgpu can see with the environment's backends.
pub fn adapters() -> Vec<wgpu::AdapterInfo> {
    let (instance, backends) = instance();
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(|a| a.get_info())
        .collect()
}

/// What an adapter offers: its description, optional features and limits.
#[derive(Debug, Clone)]
pub struct AdapterDetails {
    /// Name, backend, device type, driver.
    pub info: wgpu::AdapterInfo,
    /// Every optional feature it has.
    pub features: wgpu::Features,
    /// Its limits.
    pub limits: wgpu::Limits,
    /// The cooperative-matrix fragment shapes it lists (empty without the
    /// feature).
    pub coop: Vec<wgpu::CooperativeMatrixProperties>,
}

/// [`adapters`] with each adapter's features and limits.
pub fn adapter_details() -> Vec<AdapterDetails> {
    let (instance, backends) = instance();
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(|a| AdapterDetails {
            info: a.get_info(),
            features: a.features(),
            limits: a.limits(),
            coop: a.cooperative_matrix_properties(),
        })
        .collect()
}

/// The class (CPU, discrete, integrated, other) of a device type.
pub fn class_of(t: wgpu::DeviceType) -> AdapterClass {
    match t {
        wgpu::DeviceType::Cpu => AdapterClass::Cpu,
        wgpu::DeviceType::DiscreteGpu => AdapterClass::Discrete,
        wgpu::DeviceType::IntegratedGpu => AdapterClass::Integrated,
        _ => AdapterClass::Other,
    }
}

/// Preference order when no name is given: real GPUs first, the software
/// adapter as the fallback.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// The device chosen by [`GpuOptions::from_env`].
    pub fn from_env() -> Result<Gpu> {
        Gpu::new(&GpuOptions::from_env())
    }

    /// Chooses the device (see the module documentation) and creates it.
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let device = opts.device.as_deref().map(str::trim);
        if device.is_some_and(|d| d.eq_ignore_ascii_case("cpu")) {
            return Gpu::native(opts);
        }
        let asked = device.is_some()
            || opts.adapter.is_some()
            || std::env::var_os("WGPU_BACKEND").is_some_and(|v| !v.is_empty());
        let mut opts = opts.clone();
        if let Some(d) = device {
            if !d.eq_ignore_ascii_case("gpu") {
                opts.adapter = Some(d.to_string());
            }
        }
        let (instance, backends) = instance();
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        if !asked {
            // No choice made: a real GPU, else the native CPU device.
            let real = adapters
                .first()
                .is_some_and(|a| rank(a.get_info().device_type) <= 2);
            if !real {
                return Gpu::native(&opts);
            }
        }
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter {
                backends: format!("{backends:?}"),
            }
            .into());
        }
        let adapter = match &opts.adapter {
            Some(wanted) => {
                let w = wanted.to_lowercase();
                let pos = adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&w));
                match pos {
                    Some(i) => adapters.swap_remove(i),
                    None => {
                        let available = adapters
                            .iter()
                            .map(|a| {
                                let i = a.get_info();
                                format!("`{}` ({:?})", i.name, i.backend)
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(GpuError::AdapterNotFound {
                            wanted: wanted.clone(),
                            available,
                        }
                        .into());
                    }
                }
            }
            None => {
                // The adapters of the best kind, one per local rank.
                let best = rank(adapters[0].get_info().device_type);
                let same = adapters
                    .iter()
                    .take_while(|a| rank(a.get_info().device_type) == best)
                    .count();
                adapters.swap_remove(opts.local_rank.unwrap_or(0) % same)
            }
        };
        let gemm = gemm_override(&opts)?;
        let info = adapter.get_info();
        let have = adapter.features();
        let mut features = wgpu::Features::empty();
        let mut want = |f: wgpu::Features, off: bool| {
            let on = !off && have.contains(f);
            if on {
                features |= f;
            }
            on
        };
        let subgroups = want(wgpu::Features::SUBGROUP, opts.no_subgroups);
        let f16 = want(wgpu::Features::SHADER_F16, opts.no_f16);
        let timestamps = want(wgpu::Features::TIMESTAMP_QUERY, opts.no_timestamps);
        // Cooperative matrices: opt-in, only with a fragment shape the GEMM
        // has a kernel for, and subgroups at most 32 wide (the kernel's
        // workgroup of 32 must hold whole subgroups).
        let (sf32, sf16) = coop_shapes(&adapter.cooperative_matrix_properties());
        let coop_ok = opts.coop_matrix
            && have.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && info.subgroup_max_size <= 32;
        let coop_f32 = coop_ok && sf32;
        let coop_f16 = coop_ok && sf16 && f16;
        let experimental = if coop_f32 || coop_f16 {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: the user opted in (SCORECL_COOP_MATRIX); wgpu marks
            // the feature experimental. `scorecl doctor` checks the kernel
            // against the CPU twin on the adapter.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("scorecl"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::Device {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        // Errors outside any scope must not abort the process: they are
        // reported through scopes where they matter, and logged here.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            eprintln!("scorecl: uncaptured GPU error: {e}");
        }));
        let caps = Caps {
            subgroups,
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
            f16,
            timestamps,
            coop_f32,
            coop_f16,
            gemm,
            class: class_of(info.device_type),
            limits,
        };
        if !opts.quiet && !PRINTED.swap(true, Ordering::Relaxed) {
            eprintln!("scorecl: {}", describe(&info, &caps));
        }
        Ok(Gpu::assemble(
            Backend::Wgpu { device, queue },
            info,
            caps,
            lost,
        ))
    }

    /// A device with empty caches and pool.
    fn assemble(
        backend: Backend,
        info: wgpu::AdapterInfo,
        caps: Caps,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Gpu {
        Gpu {
            backend,
            info,
            caps,
            kernels: Mutex::new(HashMap::new()),
            bind_groups: Mutex::new(HashMap::new()),
            pool: Arc::new(Pool::default()),
            params: Mutex::new(None),
            dummy: OnceLock::new(),
            lost,
        }
    }

    /// The native CPU device (`--device cpu`): every kernel a Rust twin of
    /// its WGSL entry point, run by rayon over this machine's cores.
    pub fn native(opts: &GpuOptions) -> Result<Gpu> {
        let cpu = crate::native::CpuInfo::detect();
        let info = cpu.adapter_info();
        let gemm = gemm_override(opts)?;
        let caps = Caps {
            subgroups: false,
            subgroup_size: (1, 1),
            f16: false,
            // Dispatches are timed with the host clock.
            timestamps: !opts.no_timestamps,
            coop_f32: false,
            coop_f16: false,
            gemm,
            class: AdapterClass::Native,
            limits: cpu.limits(),
        };
        if !opts.quiet && !PRINTED.swap(true, Ordering::Relaxed) {
            eprintln!("scorecl: {}", describe(&info, &caps));
        }
        let lost = Arc::new(Mutex::new(None));
        Ok(Gpu::assemble(Backend::Native(cpu), info, caps, lost))
    }

    /// Whether this is the native CPU device.
    pub fn is_native(&self) -> bool {
        matches!(self.backend, Backend::Native(_))
    }

    /// The backend's name: `native`, or wgpu's (`vulkan`, `metal`, `dx12`,
    /// `gl`).
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Native(_) => "native",
            Backend::Wgpu { .. } => self.info.backend.to_str(),
        }
    }

    /// The native CPU device's description (threads, SIMD, GEMM crate), or
    /// `None` on a wgpu device.
    pub fn cpu_info(&self) -> Option<&crate::native::CpuInfo> {
        match &self.backend {
            Backend::Native(c) => Some(c),
            Backend::Wgpu { .. } => None,
        }
    }

    /// The wgpu device and queue (`None` on the native CPU device).
    pub fn wgpu(&self) -> Option<(&wgpu::Device, &wgpu::Queue)> {
        match &self.backend {
            Backend::Wgpu { device, queue } => Some((device, queue)),
            Backend::Native(_) => None,
        }
    }

    /// One line naming the adapter, backend, driver and enabled features.
    pub fn describe(&self) -> String {
        describe(&self.info, &self.caps)
    }

    /// A one-element zero tensor bound where a kernel's optional input
    /// (a bias, say) is absent.
    pub fn dummy(&self) -> Result<&Tensor> {
        if let Some(t) = self.dummy.get() {
            return Ok(t);
        }
        let t = self.zeros(&[1])?;
        Ok(self.dummy.get_or_init(|| t))
    }

    /// The variant of the kernels with workgroup reductions: the subgroup
    /// path where the device has subgroups, the shared-memory path otherwise.
    pub fn subgroup_defines(&self) -> &'static [scorecl_shaders::Define] {
        if self.caps.subgroups {
            &[scorecl_shaders::Define::Subgroups]
        } else {
            &[]
        }
    }

    /// Waits until the GPU has finished all submitted work (the native CPU
    /// device finishes each step in its submit).
    pub fn sync(&self) -> Result<()> {
        let Backend::Wgpu { device, .. } = &self.backend else {
            return Ok(());
        };
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Kernel {
                kernel: "sync".into(),
                message: e.to_string(),
            })?;
        self.check_lost()
    }

    /// `Err(DeviceLost)` once the device is gone.
    pub(crate) fn check_lost(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(msg) => Err(GpuError::DeviceLost(msg).into()),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes
    /// and turns what they catch into an error naming `what`.
    pub(crate) fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let Backend::Wgpu { device, .. } = &self.backend else {
            return Ok(f());
        };
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
            pollster::block_on(internal.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(GpuError::from_wgpu(what, e).into());
        }
        self.check_lost()?;
        Ok(out)
    }

    /// Storage buffers created so far (pool misses). A training step that
    /// reuses its buffers leaves this unchanged after the first step.
    pub fn buffers_created(&self) -> u64 {
        self.pool.created()
    }
}

/// `SCORECL_GEMM` / [`GpuOptions::gemm`] parsed.
fn gemm_override(opts: &GpuOptions) -> Result<Option<crate::ops::gemm::GemmKernel>> {
    match opts.gemm.as_deref() {
        None | Some("auto") => Ok(None),
        Some(name) => Ok(Some(crate::ops::gemm::GemmKernel::parse(name).ok_or_else(
            || {
                Error::config(
                    "SCORECL_GEMM",
                    format!("`{name}`: allowed auto, portable, sg8, tiled, wide, coop"),
                )
            },
        )?)),
    }
}

fn describe(info: &wgpu::AdapterInfo, caps: &Caps) -> String {
    if caps.class == AdapterClass::Native {
        return format!(
            "adapter `{}` (native CPU device), {}",
            info.name, info.driver_info
        );
    }
    let mut extras = Vec::new();
    if caps.subgroups {
        extras.push(format!(
            "subgroups {}–{}",
            caps.subgroup_size.0, caps.subgroup_size.1
        ));
    }
    if caps.f16 {
        extras.push("shader-f16".to_string());
    }
    if caps.timestamps {
        extras.push("timestamps".to_string());
    }
    if caps.coop_f32 || caps.coop_f16 {
        let mut shapes = Vec::new();
        if caps.coop_f32 {
            shapes.push("8×8 f32");
        }
        if caps.coop_f16 {
            shapes.push("16×16 f16→f32");
        }
        extras.push(format!("cooperative matrix {}", shapes.join(", ")));
    }
    format!(
        "adapter `{}` ({:?}, {:?}), driver {} {}{}",
        info.name,
        info.backend,
        info.device_type,
        info.driver,
        info.driver_info,
        if extras.is_empty() {
            String::new()
        } else {
            format!("; {}", extras.join(", "))
        }
    )
}

/// Which of the GEMM kernel's cooperative fragment shapes the adapter
/// lists: (8 × 8 × 8 f32 → f32, 16 × 16 × 16 f16 → f32).
pub fn coop_shapes(props: &[wgpu::CooperativeMatrixProperties]) -> (bool, bool) {
    use wgpu::CooperativeScalarType as T;
    let has = |size: u32, ab: T| {
        props.iter().any(|p| {
            p.m_size == size
                && p.n_size == size
                && p.k_size == size
                && p.ab_type == ab
                && p.cr_type == T::F32
        })
    };
    (has(8, T::F32), has(16, T::F16))
}
