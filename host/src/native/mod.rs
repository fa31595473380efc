//! The native CPU device: the steps that models, losses, training and
//! evaluation record (`crate::step`) executed by Rust kernels instead of
//! being encoded for wgpu. Every WGSL entry point has a Rust twin with the
//! same bindings and parameters, in the `native` module of its family's
//! `ops::` file (next to the dispatching code and the CPU reference); this
//! module holds what they share: host buffers, the binding accessors, the
//! registry and the parallel loops (rayon over this machine's cores).
//!
//! Matrix products go through the `faer` crate (see `ops::gemm::native` and
//! `docs/PERFORMANCE.md` for the comparison with `gemm` and
//! `matrixmultiply`). Everything is f32: the device offers no shader-f16, so
//! `train.precision = "f16"` runs in f32 there, as on adapters without it.
//! Results are deterministic for a given thread count: work is split into
//! fixed chunks and every sum has a fixed order.

use std::cell::{Cell, UnsafeCell};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, GpuError, Result};
use crate::kernel::{Binding, Kernel};
use crate::tensor::Buffer;

/// A kernel's Rust twin: runs one whole dispatch.
pub type KernelFn = fn(&Invocation) -> Result<()>;

/// The Rust twin of `module::entry`, if it has one.
pub(crate) fn kernel(module: &str, entry: &str) -> Option<KernelFn> {
    use crate::ops;
    match module {
        "elementwise" => ops::elementwise::native::kernel(entry),
        "gemm" => ops::gemm::native::kernel(entry),
        "reduce" => ops::reduce::native::kernel(entry),
        "rows" => ops::rows::native::kernel(entry),
        "rng" => ops::rng::native::kernel(entry),
        "optim" => ops::optim::native::kernel(entry),
        "dsm" => ops::dsm::native::kernel(entry),
        "pair_weights" => ops::pair_weights::native::kernel(entry),
        "simclr" => ops::simclr::native::kernel(entry),
        "simsiam" => ops::simsiam::native::kernel(entry),
        "vicreg" => ops::vicreg::native::kernel(entry),
        "wmse" => ops::wmse::native::kernel(entry),
        "conv" => ops::conv::native::kernel(entry),
        "pool" => ops::pool::native::kernel(entry),
        "batchnorm" => ops::batchnorm::native::kernel(entry),
        "augment" => ops::augment::native::kernel(entry),
        "unet" => ops::unet::native::kernel(entry),
        "knn" => ops::knn::native::kernel(entry),
        "xent" => ops::xent::native::kernel(entry),
        _ => None,
    }
}

/// Host memory of the native device: 64-byte aligned lines, zeroed at
/// creation. Kernels reach it through an [`Invocation`], which hands out
/// each written binding once and refuses bindings that alias a written one,
/// as wgpu's usage rules do.
pub struct HostBuffer {
    data: UnsafeCell<Vec<Line>>,
    size: u64,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

// SAFETY: the memory is only reached through `Invocation` (one mutable
// borrow per written binding, no written binding aliased within a
// dispatch), `write`/`read`/`zero`/`copy` between dispatches, and steps of
// one tensor are not run from two threads at once (as on a GPU queue).
unsafe impl Sync for HostBuffer {}
unsafe impl Send for HostBuffer {}

impl HostBuffer {
    /// `size` zeroed bytes, or an out-of-memory error naming `label`.
    pub(crate) fn alloc(size: u64, label: &str) -> Result<HostRef> {
        let lines = (size as usize).div_ceil(64);
        let mut v: Vec<Line> = Vec::new();
        v.try_reserve_exact(lines)
            .map_err(|e| GpuError::OutOfMemory {
                kernel: format!("buffer `{label}`"),
                message: format!("{size} bytes of host memory: {e}"),
            })?;
        v.resize(lines, Line([0; 64]));
        Ok(HostRef(Arc::new(HostBuffer {
            data: UnsafeCell::new(v),
            size,
        })))
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: the Vec is never resized after creation.
        unsafe { (*self.data.get()).as_mut_ptr() as *mut u8 }
    }

    fn check(&self, off: u64, bytes: u64) {
        assert!(
            off.checked_add(bytes).is_some_and(|e| e <= self.size),
            "host buffer range {off}+{bytes} past {}",
            self.size
        );
    }

    /// Copies `bytes` in at byte `off`.
    pub(crate) fn write(&self, off: u64, bytes: &[u8]) {
        self.check(off, bytes.len() as u64);
        // SAFETY: in range (checked); no dispatch runs on it meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr().add(off as usize), bytes.len())
        }
    }

    /// `bytes` bytes from `off`.
    pub(crate) fn read(&self, off: u64, bytes: u64) -> Vec<u8> {
        self.check(off, bytes);
        let mut v = vec![0u8; bytes as usize];
        // SAFETY: in range (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr().add(off as usize), v.as_mut_ptr(), v.len())
        }
        v
    }

    /// Zeroes `bytes` bytes from `off`.
    pub(crate) fn zero(&self, off: u64, bytes: u64) {
        self.check(off, bytes);
        // SAFETY: in range (checked).
        unsafe { std::ptr::write_bytes(self.ptr().add(off as usize), 0, bytes as usize) }
    }
}

/// A shared host buffer, equal and hashed by identity.
#[derive(Clone)]
pub struct HostRef(Arc<HostBuffer>);

impl std::ops::Deref for HostRef {
    type Target = HostBuffer;
    fn deref(&self) -> &HostBuffer {
        &self.0
    }
}

impl PartialEq for HostRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HostRef {}

impl std::hash::Hash for HostRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state)
    }
}

impl std::fmt::Debug for HostRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostBuffer({} bytes)", self.0.size)
    }
}

/// A copy command between host buffers (the two ranges may be in the same
/// buffer; they must not overlap, as wgpu requires).
pub(crate) fn copy(
    src: &HostBuffer,
    src_off: u64,
    dst: &HostBuffer,
    dst_off: u64,
    bytes: u64,
    what: &str,
) -> Result<()> {
    src.check(src_off, bytes);
    dst.check(dst_off, bytes);
    if std::ptr::eq(src, dst) && src_off < dst_off + bytes && dst_off < src_off + bytes {
        return Err(Error::shape(
            what,
            "copy between overlapping ranges of one buffer",
        ));
    }
    // SAFETY: in range (checked), not overlapping (checked).
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.ptr().add(src_off as usize),
            dst.ptr().add(dst_off as usize),
            bytes as usize,
        )
    }
    Ok(())
}

/// One dispatch as its Rust twin sees it: the parameters, the storage
/// bindings in binding order (as the host passed them), the workgroup grid,
/// the variant and the override constants.
pub struct Invocation<'a> {
    kernel: &'a Kernel,
    params: &'a [u8],
    buffers: Vec<(&'a HostBuffer, u64, Binding)>,
    /// The dispatch's workgroup counts.
    pub groups: [u32; 3],
    taken: Cell<u64>,
}

/// Runs one recorded dispatch on the native device.
pub(crate) fn dispatch(
    kernel: &Kernel,
    params: &[u8],
    buffers: &[(Buffer, u64)],
    groups: [u32; 3],
) -> Result<()> {
    let kinds: Vec<Binding> = kernel
        .bindings
        .iter()
        .map(|(_, b)| *b)
        .filter(|b| *b != Binding::Params)
        .collect();
    let f = match &kernel.exec {
        crate::kernel::Exec::Native(f) => *f,
        crate::kernel::Exec::Wgpu { .. } => {
            return Err(GpuError::Kernel {
                kernel: kernel.name.clone(),
                message: "a wgpu kernel given to the native CPU device".into(),
            }
            .into())
        }
    };
    let mut bound = Vec::with_capacity(buffers.len());
    for ((b, bytes), kind) in buffers.iter().zip(&kinds) {
        bound.push((b.host(&kernel.name)?, *bytes, *kind));
    }
    // wgpu's rule, which makes the mutable borrows below sound: a buffer
    // written by a dispatch is bound to it once.
    for (i, (b, _, kind)) in bound.iter().enumerate() {
        if *kind != Binding::ReadWrite {
            continue;
        }
        if bound
            .iter()
            .enumerate()
            .any(|(j, (o, _, _))| j != i && std::ptr::eq(*b, *o))
        {
            return Err(GpuError::Kernel {
                kernel: kernel.name.clone(),
                message: format!("storage binding {i} is written and bound more than once"),
            }
            .into());
        }
    }
    let inv = Invocation {
        kernel,
        params,
        buffers: bound,
        groups,
        taken: Cell::new(0),
    };
    f(&inv)
}

impl<'a> Invocation<'a> {
    /// The kernel's name (`module::entry[variant] constants`).
    pub fn name(&self) -> &str {
        &self.kernel.name
    }

    fn err(&self, message: String) -> Error {
        GpuError::Kernel {
            kernel: self.kernel.name.clone(),
            message,
        }
        .into()
    }

    /// The parameters struct (the bytes the host packed), checked against
    /// the kernel's WGSL struct as the dispatch's was.
    pub fn params<P: crate::kernel::KernelParams>(&self) -> Result<P> {
        self.kernel.check_params::<P>()?;
        let n = std::mem::size_of::<P>();
        if self.params.len() < n {
            return Err(self.err(format!("{} parameter bytes, {n} needed", self.params.len())));
        }
        Ok(bytemuck::pod_read_unaligned(&self.params[..n]))
    }

    /// Whether the override constant `name` is set (non-zero); absent
    /// constants take the WGSL default given.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        self.kernel
            .constants
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(default, |(_, v)| *v != 0.0)
    }

    /// Whether the variant has `define`.
    pub fn has(&self, define: scorecl_shaders::Define) -> bool {
        self.kernel.defines.contains(&define)
    }

    fn binding(&self, i: usize, want: Binding) -> Result<(&'a HostBuffer, u64)> {
        let Some((b, bytes, kind)) = self.buffers.get(i) else {
            return Err(self.err(format!("storage binding {i} not bound")));
        };
        if *kind != want {
            return Err(self.err(format!("storage binding {i} is {kind:?}, used as {want:?}")));
        }
        Ok((b, *bytes))
    }

    fn read<T: bytemuck::Pod>(&self, i: usize) -> Result<&'a [T]> {
        let (b, bytes) = self.binding(i, Binding::Read)?;
        let n = bytes as usize / std::mem::size_of::<T>();
        // SAFETY: the binding's bytes lie in the buffer (a tensor binds at
        // most its buffer); the buffer is 64-byte aligned; no binding of
        // this dispatch writes it (checked in `dispatch`).
        Ok(unsafe { std::slice::from_raw_parts(b.ptr() as *const T, n) })
    }

    #[allow(clippy::mut_from_ref)]
    fn write<T: bytemuck::Pod>(&self, i: usize) -> Result<&'a mut [T]> {
        let (b, bytes) = self.binding(i, Binding::ReadWrite)?;
        let bit = 1u64 << i.min(63);
        if self.taken.get() & bit != 0 {
            return Err(self.err(format!("storage binding {i} borrowed twice")));
        }
        self.taken.set(self.taken.get() | bit);
        let n = bytes as usize / std::mem::size_of::<T>();
        // SAFETY: as in `read`; this binding is the only one of the
        // dispatch on its buffer and is handed out once.
        Ok(unsafe { std::slice::from_raw_parts_mut(b.ptr() as *mut T, n) })
    }

    /// Read-only f32 binding `i` (storage bindings counted from 0).
    pub fn f32(&self, i: usize) -> Result<&'a [f32]> {
        self.read(i)
    }

    /// Read-only u32 binding `i`.
    pub fn u32(&self, i: usize) -> Result<&'a [u32]> {
        self.read(i)
    }

    /// Read-write f32 binding `i` (once per dispatch).
    pub fn f32_mut(&self, i: usize) -> Result<&'a mut [f32]> {
        self.write(i)
    }

    /// Read-write u32 binding `i` (once per dispatch).
    pub fn u32_mut(&self, i: usize) -> Result<&'a mut [u32]> {
        self.write(i)
    }

    /// An error naming the kernel: `what` is too short for `need` elements.
    pub fn short(&self, what: &str, have: usize, need: usize) -> Error {
        self.err(format!("{what}: {have} elements bound, {need} needed"))
    }
}

/// Fails with the kernel named when any of `lens` (bound, needed) is short.
pub(crate) fn need(inv: &Invocation, checks: &[(&str, usize, usize)]) -> Result<()> {
    for (what, have, want) in checks {
        if have < want {
            return Err(inv.short(what, *have, *want));
        }
    }
    Ok(())
}

/// `$vis fn $name(args) -> ret { body }` whose body is compiled for the
/// widest vector extension the CPU has, chosen at run time: AVX-512F, else
/// AVX2, else the build's baseline (SSE2 on x86-64). The body becomes an
/// `#[inline(always)]` function that each variant inlines. The binary runs
/// on any x86-64 and the loops use the CPU's full width where it has it.
/// Only the instructions change, not the operations or their order (Rust
/// neither fuses a multiplication and an addition nor reorders float
/// sums), so the bits are the same at every level.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Elements per parallel chunk of the elementwise loops: below it a loop
/// runs on the calling thread.
pub(crate) const CHUNK: usize = 16 * 1024;

/// `out[i] = f(i)` for `i < n`, in parallel chunks.
pub(crate) fn map(out: &mut [f32], n: usize, f: impl Fn(usize) -> f32 + Sync + Send) {
    let out = &mut out[..n];
    if n <= CHUNK {
        out.iter_mut().enumerate().for_each(|(i, o)| *o = f(i));
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, ch)| {
            let base = c * CHUNK;
            ch.iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = f(base + i));
        });
    }
}

/// `out[i] = f(a[i])` for `i < n`, in parallel chunks: [`map`] on slices,
/// so that the loop vectorises (no index to bounds-check).
pub(crate) fn map1(out: &mut [f32], a: &[f32], n: usize, f: impl Fn(f32) -> f32 + Sync + Send) {
    let (out, a) = (&mut out[..n], &a[..n]);
    let run = |o: &mut [f32], a: &[f32]| o.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x));
    if n <= CHUNK {
        run(out, a);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(o, a)| run(o, a));
    }
}

/// `out[i] = f(a[i], b[i])` for `i < n`, in parallel chunks, on slices
/// (see [`map1`]).
pub(crate) fn map2(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    n: usize,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) {
    let (out, a, b) = (&mut out[..n], &a[..n], &b[..n]);
    let run = |o: &mut [f32], a: &[f32], b: &[f32]| {
        o.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&x, &y))| *o = f(x, y))
    };
    if n <= CHUNK {
        run(out, a, b);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| run(o, a, b));
    }
}

/// `f(row, out_row)` for each `len`-element row of `out[..rows·len]`, rows in
/// parallel when the work (`rows·cost` elements) is large enough.
pub(crate) fn rows_mut<T: Send>(
    out: &mut [T],
    rows: usize,
    len: usize,
    cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if len == 0 {
        return;
    }
    let out = &mut out[..rows * len];
    if rows * cost.max(1) <= CHUNK || rows == 1 {
        out.chunks_mut(len).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        out.par_chunks_mut(len)
            .enumerate()
            .with_min_len((CHUNK / cost.max(1)).max(1))
            .for_each(|(r, o)| f(r, o));
    }
}

/// `f(i)` for `i < n` in parallel (each writes only what it owns, through
/// a [`SharedMut`]); `cost` is the elements of work per index.
pub(crate) fn for_each(n: usize, cost: usize, f: impl Fn(usize) + Sync + Send) {
    if n * cost.max(1) <= CHUNK || n == 1 {
        (0..n).for_each(f);
    } else {
        (0..n)
            .into_par_iter()
            .with_min_len((CHUNK / cost.max(1)).max(1))
            .for_each(f);
    }
}

/// A mutable slice shared by parallel iterations that write disjoint
/// elements (a row scattered with a stride, say).
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _p: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: users write disjoint elements (each `set` index is written by
// one iteration only), documented at each use.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T: Copy> SharedMut<'a, T> {
    pub(crate) fn new(s: &'a mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _p: std::marker::PhantomData,
        }
    }

    /// Element `i`, which only this iteration writes.
    pub(crate) fn get(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: in range; only the iteration that owns `i` touches it.
        unsafe { *self.ptr.add(i) }
    }

    /// Writes element `i`, which only this iteration owns.
    pub(crate) fn set(&self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: in range; only the iteration that owns `i` touches it.
        unsafe { *self.ptr.add(i) = v }
    }

    /// A raw pointer to element `i` for an API that takes one (the GEMM),
    /// writing only elements this iteration owns.
    pub(crate) fn ptr_at(&self, i: usize) -> *mut T {
        assert!(i <= self.len);
        // SAFETY: in range (one past the end at most).
        unsafe { self.ptr.add(i) }
    }

    /// The sub-slice `start..start + len`, owned by this iteration alone.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len);
        // SAFETY: in range; the caller's iteration owns this range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// A raw pointer that parallel tasks share to write disjoint parts of one
/// output (a GEMM's column blocks).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

// SAFETY: users write disjoint elements, documented at each use.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer `i` elements on.
    pub(crate) fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers stay within the checked output.
        unsafe { self.0.add(i) }
    }
}

/// The machine the native device runs on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuInfo {
    /// Worker threads (rayon's pool: `RAYON_NUM_THREADS`, else the cores).
    pub threads: usize,
    /// The widest SIMD level the GEMM crate can use here.
    pub simd: &'static str,
    /// The GEMM crate and its version.
    pub gemm: &'static str,
    /// Host memory in bytes (0 if unknown).
    pub memory: u64,
}

impl CpuInfo {
    /// This machine.
    pub fn detect() -> CpuInfo {
        CpuInfo {
            threads: rayon::current_num_threads(),
            simd: simd_level(),
            gemm: "faer 0.22",
            memory: host_memory(),
        }
    }

    /// The adapter description the rest of the host prints.
    pub(crate) fn adapter_info(&self) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: "scorecl CPU".into(),
            vendor: 0,
            device: 0,
            device_type: wgpu::DeviceType::Cpu,
            device_pci_bus_id: String::new(),
            driver: "native".into(),
            driver_info: format!(
                "{} threads, {}, GEMM: {}",
                self.threads, self.simd, self.gemm
            ),
            backend: wgpu::Backend::Noop,
            subgroup_min_size: 1,
            subgroup_max_size: 1,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    /// Limits in wgpu's terms: buffers up to the host memory (or 1 TiB),
    /// no per-binding or grid limits beyond 32-bit indices.
    pub(crate) fn limits(&self) -> wgpu::Limits {
        let mem = if self.memory > 0 {
            self.memory
        } else {
            1 << 40
        };
        wgpu::Limits {
            max_buffer_size: mem,
            max_storage_buffer_binding_size: mem.min(u32::MAX as u64 * 4),
            max_compute_workgroups_per_dimension: u32::MAX,
            ..wgpu::Limits::default()
        }
    }
}

fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "x86-64 AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "x86-64 AVX2+FMA";
        }
        if std::arch::is_x86_feature_detected!("sse4.1") {
            return "x86-64 SSE4.1";
        }
        "x86-64 SSE2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "aarch64 NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// Total host memory from /proc/meminfo (Linux), 0 elsewhere.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Σ_{i<n} f(i) in f32 with eight lanes per block of 1024 terms and the
/// block sums in f64: as accurate as the GPU's workgroup reductions for
/// any length, and in a fixed order.
pub(crate) fn sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut total = 0.0f64;
    let mut start = 0;
    while start < n {
        let end = (start + 1024).min(n);
        let mut lanes = [0.0f32; 8];
        let mut i = start;
        while i + 8 <= end {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += f(i + l);
            }
            i += 8;
        }
        for (l, lane) in lanes.iter_mut().enumerate().take(end - i) {
            *lane += f(i + l);
        }
        let block = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        total += block as f64;
        start = end;
    }
    total as f32
}

/// [`sum`] over a slice, `Σ f(xs[j])`, in its order (eight lanes per block
/// of 1024 terms, the block sums in f64): the same bits, written on
/// slices so that the lanes vectorise.
#[inline(always)]
pub(crate) fn sum_slice(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut total = 0.0f64;
    for block in xs.chunks(1024) {
        let mut lanes = [0.0f32; 8];
        let mut eights = block.chunks_exact(8);
        for e in &mut eights {
            for l in 0..8 {
                lanes[l] += f(e[l]);
            }
        }
        for (lane, &v) in lanes.iter_mut().zip(eights.remainder()) {
            *lane += f(v);
        }
        let block = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        total += block as f64;
    }
    total as f32
}

/// The largest of f(i), i < n (−f32::MAX for none, as the kernels' start).
pub(crate) fn max(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    (0..n).fold(-f32::MAX, |m, i| m.max(f(i)))
}
