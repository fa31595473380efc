//! GEMM (`shaders/wgsl/gemm.wgsl`): `C = act(alpha·op(A)·op(B) + beta·C + bias)`
//! with optional transposes, a batch dimension (each operand batched or
//! broadcast) and a fused bias/ReLU epilogue. CPU twin: [`cpu::gemm`];
//! tests: `host/tests/gemm.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::{Define, GEMM};

use crate::error::{Error, Result};
use crate::kernel_params;
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// Shape and options of one (batched) GEMM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmSpec {
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Number of products (1: no batch).
    pub batch: usize,
    /// A is stored k × m (use Aᵀ).
    pub trans_a: bool,
    /// B is stored n × k (use Bᵀ).
    pub trans_b: bool,
    /// One A for every batch entry.
    pub broadcast_a: bool,
    /// One B for every batch entry.
    pub broadcast_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing C (0: overwrite; C is then not read).
    pub beta: f32,
    /// ReLU after bias.
    pub relu: bool,
    /// Element offsets of A, B and C in their tensors (sub-ranges).
    pub a_off: usize,
    /// See `a_off`.
    pub b_off: usize,
    /// See `a_off`.
    pub c_off: usize,
    /// Sum the batch into one C instead of one C per entry.
    pub reduce: bool,
    /// Row length of B's storage when its rows are padded (0: packed, n,
    /// or k with `trans_b`); B's batch stride follows it.
    pub ldb: usize,
}

impl GemmSpec {
    /// `C = A·B` for A m × k, B k × n.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            broadcast_a: false,
            broadcast_b: false,
            alpha: 1.0,
            beta: 0.0,
            relu: false,
            a_off: 0,
            b_off: 0,
            c_off: 0,
            reduce: false,
            ldb: 0,
        }
    }

    /// B's row length in storage.
    pub fn ld_b(&self) -> usize {
        match (self.ldb, self.trans_b) {
            (0, true) => self.k,
            (0, false) => self.n,
            (ld, _) => ld,
        }
    }

    /// Elements of one batch entry of B in storage.
    fn b_block(&self) -> usize {
        self.ld_b() * if self.trans_b { self.n } else { self.k }
    }

    /// Floating-point operations (2·m·n·k per product).
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }

    fn a_len(&self) -> usize {
        self.m * self.k * if self.broadcast_a { 1 } else { self.batch }
    }

    fn b_len(&self) -> usize {
        self.b_block() * if self.broadcast_b { 1 } else { self.batch }
    }

    fn c_len(&self) -> usize {
        self.m * self.n * if self.reduce { 1 } else { self.batch }
    }
}

kernel_params! {
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        r_off: u32,
        lda: u32,
        ldb: u32,
        ldc: u32,
        a_off: u32,
        sa: u32,
        sb: u32,
        sc: u32,
        b_off: u32,
        alpha: f32,
        beta: f32,
        c_off: u32,
        batch: u32,
        reduce: u32,
        _p: [u32; 3],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Which GEMM kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKernel {
    /// Choose by adapter and shape: [`GemmKernel::Subgroup8`] on CPU
    /// drivers with subgroups of at least 8 lanes when the shape is vec4
    /// aligned, [`GemmKernel::Tiled`] on GPUs (discrete, integrated,
    /// virtual), [`GemmKernel::Portable`] otherwise.
    Auto,
    /// `gemm`: 4 × 4 per invocation, any shape, no optional features.
    Portable,
    /// `gemm_sg8`: subgroup-broadcast kernel for CPU drivers.
    Subgroup8,
    /// `gemm_tiled`: 64 × 64 tiles through workgroup memory, for GPUs; any
    /// shape, no optional features.
    Tiled,
    /// `gemm_wide`: 128 × 128 tiles, 8 × 8 per invocation, for GPUs; any
    /// shape, no optional features; chosen only when asked for until it is
    /// measured against `gemm_tiled` on a GPU.
    Wide,
    /// `gemm_coop`: wgpu's experimental cooperative matrices, 32 × 32
    /// tiles; used (and chosen by [`GemmKernel::Auto`]) only on devices
    /// made with [`crate::GpuOptions::coop_matrix`] whose adapter lists the
    /// fragment shape for the operands (8 × 8 f32, or 16 × 16 f16 → f32
    /// for f16 A and B); otherwise the choice falls back as for `Auto`.
    Coop,
}

impl GemmKernel {
    /// `auto`, `portable`, `sg8`, `tiled`, `wide` or `coop`.
    pub fn parse(name: &str) -> Option<GemmKernel> {
        Some(match name {
            "auto" => GemmKernel::Auto,
            "portable" => GemmKernel::Portable,
            "sg8" => GemmKernel::Subgroup8,
            "tiled" => GemmKernel::Tiled,
            "wide" => GemmKernel::Wide,
            "coop" => GemmKernel::Coop,
            _ => return None,
        })
    }
}

impl GemmSpec {
    /// Whether `gemm_sg8` can run this shape (vec4-aligned operands).
    pub fn vec4_aligned(&self) -> bool {
        self.a_off % 4 == 0
            && self.b_off % 4 == 0
            && self.k % 4 == 0
            && (if self.trans_a { self.m % 4 == 0 } else { true })
            && self.ld_b() % 4 == 0
    }
}

/// Operand storage of a product: both f32, f16 B, or f16 A and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operands {
    F32,
    HalfB,
    HalfAB,
}

/// `want`, or the device's override of the automatic choice.
fn wanted(gpu: &crate::Gpu, want: GemmKernel) -> GemmKernel {
    match (want, gpu.caps.gemm) {
        (GemmKernel::Auto, Some(k)) => k,
        _ => want,
    }
}

fn resolve(gpu: &crate::Gpu, s: &GemmSpec, want: GemmKernel, ops: Operands) -> GemmKernel {
    // gemm_sg8 reads f32 vec4s only: f16 operands take the other kernels.
    let half = ops != Operands::F32;
    let sg8 = !half && gpu.caps.subgroups && gpu.caps.subgroup_size.0 >= 8 && s.vec4_aligned();
    let coop = match ops {
        Operands::F32 => gpu.caps.coop_f32,
        Operands::HalfAB => gpu.caps.coop_f16,
        Operands::HalfB => false,
    };
    let class = gpu.caps.class;
    match want {
        GemmKernel::Auto | GemmKernel::Coop if coop => GemmKernel::Coop,
        GemmKernel::Coop => resolve(gpu, s, GemmKernel::Auto, ops),
        GemmKernel::Auto if sg8 && class == crate::AdapterClass::Cpu => GemmKernel::Subgroup8,
        GemmKernel::Auto
            if matches!(
                class,
                crate::AdapterClass::Discrete | crate::AdapterClass::Integrated
            ) =>
        {
            GemmKernel::Tiled
        }
        GemmKernel::Auto => GemmKernel::Portable,
        GemmKernel::Subgroup8 if sg8 => GemmKernel::Subgroup8,
        GemmKernel::Tiled => GemmKernel::Tiled,
        GemmKernel::Wide => GemmKernel::Wide,
        _ => GemmKernel::Portable,
    }
}

/// Records `C = act(alpha·op(A)·op(B) + beta·C + bias)` with the kernel
/// chosen for the adapter. A and B may be f16 tensors (B alone, or both;
/// the device needs shader-f16): they are widened on load and the product
/// accumulates in f32 (`gemm`, `gemm_tiled` or `gemm_coop`, never `gemm_sg8`). C and the
/// bias are f32.
pub fn gemm(
    step: &mut Step,
    s: &GemmSpec,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<()> {
    gemm_with(step, s, a, b, bias, c, GemmKernel::Auto)
}

/// As [`gemm`] with an explicit kernel choice (a kernel the shape or the
/// adapter cannot run falls back to [`GemmKernel::Portable`]). Returns
/// nothing; [`kernel_for`] says which kernel a call would use.
pub fn gemm_with(
    step: &mut Step,
    s: &GemmSpec,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    want: GemmKernel,
) -> Result<()> {
    at_least("gemm A", a, s.a_off + s.a_len())?;
    at_least("gemm B", b, s.b_off + s.b_len())?;
    at_least("gemm C", c, s.c_off + s.c_len())?;
    if let Some(bias) = bias {
        bias.expect_len("gemm bias", s.n)?;
    }
    if s.m == 0 || s.n == 0 || s.batch == 0 {
        return Ok(());
    }
    if s.batch > 65_535 {
        return Err(Error::shape(
            "gemm",
            format!("batch {} above 65535", s.batch),
        ));
    }
    let gpu = step.gpu();
    let (half_a, half_b) = (a.dtype() == DType::F16, b.dtype() == DType::F16);
    if (half_a || half_b) && !gpu.caps.f16 {
        return Err(Error::shape(
            "gemm",
            "f16 operands need shader-f16, which this device does not have",
        ));
    }
    if half_a && !half_b {
        return Err(Error::shape(
            "gemm",
            "an f16 A needs an f16 B (variants: B f16, or both)",
        ));
    }
    if c.dtype() != DType::F32 {
        return Err(Error::shape("gemm C", format!("{c:?} is not f32")));
    }
    let (defines, ops): (&[Define], _) = match (half_a, half_b) {
        (true, _) => (&[Define::HalfA, Define::HalfB], Operands::HalfAB),
        (false, true) => (&[Define::HalfB], Operands::HalfB),
        _ => (&[], Operands::F32),
    };
    let kind = resolve(gpu, s, wanted(gpu, want), ops);
    let constants = [
        ("TRANS_A", s.trans_a as u8 as f64),
        ("TRANS_B", s.trans_b as u8 as f64),
        ("BIAS", bias.is_some() as u8 as f64),
        ("RELU", s.relu as u8 as f64),
    ];
    let kernel = match kind {
        GemmKernel::Subgroup8 => gpu.kernel(&GEMM, "gemm_sg8", &[Define::Subgroups], &constants)?,
        GemmKernel::Tiled => gpu.kernel(&GEMM, "gemm_tiled", defines, &constants)?,
        GemmKernel::Wide => gpu.kernel(&GEMM, "gemm_wide", defines, &constants)?,
        GemmKernel::Coop if ops == Operands::HalfAB => gpu.kernel(
            &GEMM,
            "gemm_coop",
            &[Define::F16, Define::HalfA, Define::HalfB, Define::Coop],
            &constants,
        )?,
        GemmKernel::Coop => gpu.kernel(&GEMM, "gemm_coop", &[Define::Coop], &constants)?,
        _ => gpu.kernel(&GEMM, "gemm", defines, &constants)?,
    };
    let mut p = Params {
        m: s.m as u32,
        n: s.n as u32,
        k: s.k as u32,
        lda: if s.trans_a { s.m } else { s.k } as u32,
        ldb: s.ld_b() as u32,
        ldc: s.n as u32,
        sa: if s.broadcast_a { 0 } else { s.m * s.k } as u32,
        sb: if s.broadcast_b { 0 } else { s.b_block() } as u32,
        sc: (s.m * s.n) as u32,
        alpha: s.alpha,
        beta: s.beta,
        a_off: s.a_off as u32,
        b_off: s.b_off as u32,
        c_off: s.c_off as u32,
        batch: s.batch as u32,
        reduce: s.reduce as u32,
        ..Zeroable::zeroed()
    };
    let bias = bias.unwrap_or(gpu.dummy()?);
    // Rows per dispatch: at most 65 535 row tiles in one grid dimension.
    let (tile_m, tile_n) = match kind {
        GemmKernel::Subgroup8 => (8, 32),
        GemmKernel::Tiled => (64, 64),
        GemmKernel::Wide => (128, 128),
        _ => (32, 32), // portable and coop
    };
    let chunk = tile_m * 65_535;
    let z = if s.reduce { 1 } else { s.batch as u32 };
    let mut r_off = 0;
    while r_off < s.m {
        let rows = (s.m - r_off).min(chunk);
        p.r_off = r_off as u32;
        match kind {
            GemmKernel::Subgroup8 => {
                let groups = [rows.div_ceil(tile_m) as u32, s.n.div_ceil(32) as u32, z];
                step.dispatch(
                    &kernel,
                    &p,
                    crate::bind![bias, Cout = c, A4 = a, B4 = b],
                    groups,
                )?;
            }
            _ => {
                let groups = [s.n.div_ceil(tile_n) as u32, rows.div_ceil(tile_m) as u32, z];
                step.dispatch(
                    &kernel,
                    &p,
                    crate::bind![Am = a, Bm = b, bias, Cout = c],
                    groups,
                )?;
            }
        }
        r_off += rows;
    }
    Ok(())
}

fn at_least(what: &str, t: &Tensor, len: usize) -> Result<()> {
    if t.len() >= len {
        Ok(())
    } else {
        Err(Error::shape(
            what,
            format!(
                "{} elements (shape {:?}), the product needs {len}",
                t.len(),
                t.shape()
            ),
        ))
    }
}

/// The kernel [`gemm_with`] would run for `s` on `gpu` (f32 operands).
pub fn kernel_for(gpu: &crate::Gpu, s: &GemmSpec, want: GemmKernel) -> GemmKernel {
    resolve(gpu, s, wanted(gpu, want), Operands::F32)
}

/// The kernel [`gemm_with`] would run for `s` on `gpu` with f16 A and B.
pub fn kernel_for_f16(gpu: &crate::Gpu, s: &GemmSpec, want: GemmKernel) -> GemmKernel {
    resolve(gpu, s, wanted(gpu, want), Operands::HalfAB)
}

/// CPU twin.
pub mod cpu {
    use super::GemmSpec;

    /// The same product in f64 accumulation, with the same offsets, batch
    /// and reduce semantics; `c` holds C on entry (read when `beta ≠ 0`)
    /// and the result on exit.
    pub fn gemm(s: &GemmSpec, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
        let outputs = if s.reduce { 1 } else { s.batch };
        let terms = if s.reduce { s.batch } else { 1 };
        for out in 0..outputs {
            for i in 0..s.m {
                for j in 0..s.n {
                    let mut acc = 0.0f64;
                    for t in 0..terms {
                        let bt = out + t;
                        let ab = s.a_off + if s.broadcast_a { 0 } else { bt * s.m * s.k };
                        let bb = s.b_off + if s.broadcast_b { 0 } else { bt * s.b_block() };
                        for p in 0..s.k {
                            let av = if s.trans_a {
                                a[ab + p * s.m + i]
                            } else {
                                a[ab + i * s.k + p]
                            };
                            let bv = if s.trans_b {
                                b[bb + j * s.ld_b() + p]
                            } else {
                                b[bb + p * s.ld_b() + j]
                            };
                            acc += av as f64 * bv as f64;
                        }
                    }
                    let idx = s.c_off + out * s.m * s.n + i * s.n + j;
                    let mut v = s.alpha as f64 * acc;
                    if s.beta != 0.0 {
                        v += s.beta as f64 * c[idx] as f64;
                    }
                    if let Some(bias) = bias {
                        v += bias[j] as f64;
                    }
                    if s.relu {
                        v = if v.is_nan() { v } else { v.max(0.0) };
                    }
                    c[idx] = v as f32;
                }
            }
        }
    }
}

/// Native CPU twin of the GEMM entry points (`gemm`, `gemm_tiled`,
/// `gemm_wide`, `gemm_coop`, `gemm_sg8`: one product, whichever the host
/// chose), through the `faer` crate: the strides express the transposes and
/// padded rows, so nothing is copied.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{Invocation, KernelFn, SharedMut};
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    use rayon::prelude::*;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "gemm" | "gemm_coop" => |inv| run(inv, Layout::Rows(32)),
            "gemm_tiled" => |inv| run(inv, Layout::Rows(64)),
            "gemm_wide" => |inv| run(inv, Layout::Rows(128)),
            "gemm_sg8" => |inv| run(inv, Layout::Sg8),
            _ => return None,
        })
    }

    /// Binding order and rows per workgroup of the entry point.
    #[derive(Clone, Copy)]
    enum Layout {
        /// `[A, B, bias, C]`, `tile` rows per workgroup along y.
        Rows(usize),
        /// `gemm_sg8`: `[bias, C, A, B]`, 8 rows per workgroup along x.
        Sg8,
    }

    /// One product `C_b = alpha·op(A_b)·op(B_b) (+ beta·C_b)` (no epilogue)
    /// of `rows` rows into `c` (row stride `ldc`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn product(
        p: &Params,
        (ta, tb): (bool, bool),
        rows: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        (scale_c, read_c): (f32, bool),
        par: Par,
    ) {
        let (n, k) = (p.n as usize, p.k as usize);
        let (lda, ldb, ldc) = (p.lda as isize, p.ldb as isize, p.ldc as isize);
        let (a_rs, a_cs) = if ta { (1, lda) } else { (lda, 1) };
        let (b_rs, b_cs) = if tb { (1, ldb) } else { (ldb, 1) };
        if read_c && scale_c != 1.0 {
            for i in 0..rows {
                // SAFETY: row i of C lies within what the caller checked.
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc as usize), n) };
                row.iter_mut().for_each(|v| *v *= scale_c);
            }
        }
        let accum = if read_c { Accum::Add } else { Accum::Replace };
        let threads = match par {
            Par::Seq => 1,
            _ => rayon::current_num_threads(),
        };
        // SAFETY (every view below): the caller checked every index the
        // strides reach, and C is written through these views alone.
        // The operands are only read.
        let (ap, bp) = (
            crate::native::SendPtr(a as *mut f32),
            crate::native::SendPtr(b as *mut f32),
        );
        let view_a = move |k0: usize, kn: usize| unsafe {
            let a = ap.at(0) as *const f32;
            MatRef::<f32>::from_raw_parts(a.offset(k0 as isize * a_cs), rows, kn, a_rs, a_cs)
        };
        let view_b = move |k0: usize, kn: usize, j0: usize, w: usize| unsafe {
            let b = bp.at(0) as *const f32;
            MatRef::<f32>::from_raw_parts(
                b.offset(k0 as isize * b_rs + j0 as isize * b_cs),
                kn,
                w,
                b_rs,
                b_cs,
            )
        };
        let cp = crate::native::SendPtr(c);
        if threads > 1 && n >= 2 * BLOCK * threads {
            // Wide products (a chunk's images side by side): column blocks
            // in parallel, each on one thread (1.4–2.5 × faer's own split
            // on these shapes, `docs/PERFORMANCE.md`).
            (0..n.div_ceil(BLOCK)).into_par_iter().for_each(|j| {
                let (j0, w) = (j * BLOCK, BLOCK.min(n - j * BLOCK));
                let cv = unsafe { MatMut::<f32>::from_raw_parts_mut(cp.at(j0), rows, w, ldc, 1) };
                matmul(
                    cv,
                    accum,
                    view_a(0, k),
                    view_b(0, k, j0, w),
                    p.alpha,
                    Par::Seq,
                );
            });
            return;
        }
        if threads > 1 && k >= 4 * BLOCK * threads && rows * n <= 1 << 20 {
            // Deep products (a weight gradient over a chunk's images): the
            // k range split between the threads, each into its own partial
            // product, added in a fixed order.
            let parts = threads;
            let step = k.div_ceil(parts);
            let partial: Vec<Vec<f32>> = (0..parts)
                .into_par_iter()
                .map(|t| {
                    let (k0, kn) = (t * step, step.min(k.saturating_sub(t * step)));
                    let mut out = vec![0.0f32; rows * n];
                    if kn > 0 {
                        let cv = MatMut::<f32>::from_row_major_slice_mut(&mut out, rows, n);
                        matmul(
                            cv,
                            Accum::Replace,
                            view_a(k0, kn),
                            view_b(k0, kn, 0, n),
                            p.alpha,
                            Par::Seq,
                        );
                    }
                    out
                })
                .collect();
            for i in 0..rows {
                // SAFETY: row i of C lies within what the caller checked.
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc as usize), n) };
                for (j, v) in row.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for part in &partial {
                        acc += part[i * n + j];
                    }
                    *v = if read_c { *v + acc } else { acc };
                }
            }
            return;
        }
        let cv = unsafe { MatMut::<f32>::from_raw_parts_mut(c, rows, n, ldc, 1) };
        matmul(cv, accum, view_a(0, k), view_b(0, k, 0, n), p.alpha, par);
    }

    /// Columns per task of a wide product.
    const BLOCK: usize = 1024;

    /// `c = op(a)·op(b)` (or `c += …` with `accumulate`) on the calling
    /// thread, for the native kernels that multiply inside their own
    /// parallel loop (the fused convolution): `c` is m × n, `op(a)` m × k
    /// and `op(b)` k × n, all dense and row-major (`a` stored k × m when
    /// transposed, `b` n × k).
    pub(crate) fn seq(
        c: &mut [f32],
        (m, n, k): (usize, usize, usize),
        (a, ta): (&[f32], bool),
        (b, tb): (&[f32], bool),
        accumulate: bool,
    ) {
        let a = if ta {
            MatRef::from_row_major_slice(&a[..k * m], k, m).transpose()
        } else {
            MatRef::from_row_major_slice(&a[..m * k], m, k)
        };
        let b = if tb {
            MatRef::from_row_major_slice(&b[..n * k], n, k).transpose()
        } else {
            MatRef::from_row_major_slice(&b[..k * n], k, n)
        };
        let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
        let accum = if accumulate {
            Accum::Add
        } else {
            Accum::Replace
        };
        matmul(c, accum, a, b, 1.0f32, Par::Seq);
    }

    fn run(inv: &Invocation, layout: Layout) -> Result<()> {
        let p: Params = inv.params()?;
        let (a, b, bias, c) = match layout {
            Layout::Rows(_) => (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?, inv.f32_mut(3)?),
            Layout::Sg8 => (inv.f32(2)?, inv.f32(3)?, inv.f32(0)?, inv.f32_mut(1)?),
        };
        let (ta, tb) = (inv.flag("TRANS_A", false), inv.flag("TRANS_B", false));
        let (has_bias, relu) = (inv.flag("BIAS", false), inv.flag("RELU", false));
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let r0 = p.r_off as usize;
        let row_end = match layout {
            Layout::Rows(tile) => r0 + inv.groups[1] as usize * tile,
            Layout::Sg8 => r0 + inv.groups[0] as usize * 8,
        }
        .min(m);
        let reduce = p.reduce != 0;
        // Batch entries: summed into one C (reduce), or one C per z.
        let entries = if reduce {
            p.batch as usize
        } else {
            inv.groups[2] as usize
        };
        if r0 >= row_end || n == 0 || entries == 0 {
            return Ok(());
        }
        let rows = row_end - r0;
        let (lda, ldb, ldc) = (p.lda as usize, p.ldb as usize, p.ldc as usize);
        let (sa, sb, sc) = (p.sa as usize, p.sb as usize, p.sc as usize);
        // Every index the products reach, checked before any raw access.
        let last = entries - 1;
        if k > 0 {
            let a_max = p.a_off as usize
                + last * sa
                + if ta {
                    (k - 1) * lda + row_end - 1
                } else {
                    (row_end - 1) * lda + k - 1
                };
            let b_max = p.b_off as usize
                + last * sb
                + if tb {
                    (n - 1) * ldb + k - 1
                } else {
                    (k - 1) * ldb + n - 1
                };
            if a_max >= a.len() || b_max >= b.len() {
                return Err(inv.short("A or B", a.len().min(b.len()), a_max.max(b_max) + 1));
            }
        }
        let c_entries = if reduce { 1 } else { entries };
        let c_max = p.c_off as usize + (c_entries - 1) * sc + (row_end - 1) * ldc + n - 1;
        if c_max >= c.len() {
            return Err(inv.short("C", c.len(), c_max + 1));
        }
        if has_bias && bias.len() < n {
            return Err(inv.short("bias", bias.len(), n));
        }
        let a_at = |e: usize| p.a_off as usize + e * sa + if ta { r0 } else { r0 * lda };
        let b_at = |e: usize| p.b_off as usize + e * sb;
        let c_at = |e: usize| p.c_off as usize + e * sc + r0 * ldc;
        // beta = 0: C is not read (NaN in it does not propagate).
        let first = (p.beta, p.beta != 0.0);
        let threads = rayon::current_num_threads();
        let cs = SharedMut::new(c);
        let epilogue = |o: usize| {
            if !(has_bias || relu) {
                return;
            }
            for r in 0..rows {
                let row = cs.slice(o + r * ldc, n);
                for (j, v) in row.iter_mut().enumerate() {
                    if has_bias {
                        *v += bias[j];
                    }
                    if relu {
                        *v = scorecl_core::relu(*v);
                    }
                }
            }
        };
        let zero_k = |o: usize| {
            // k = 0: the product is zero, C = beta·C.
            for r in 0..rows {
                let row = cs.slice(o + r * ldc, n);
                for v in row.iter_mut() {
                    *v = if p.beta != 0.0 { p.beta * *v } else { 0.0 };
                }
            }
        };
        if reduce {
            let o = c_at(0);
            if k == 0 {
                zero_k(o);
            } else {
                for e in 0..entries {
                    let (scale, read) = if e == 0 { first } else { (1.0, true) };
                    // SAFETY: indices checked above; C is this binding's
                    // alone.
                    unsafe {
                        product(
                            &p,
                            (ta, tb),
                            rows,
                            a.as_ptr().add(a_at(e)),
                            b.as_ptr().add(b_at(e)),
                            cs.ptr_at(o),
                            (scale, read),
                            Par::rayon(threads),
                        )
                    }
                }
            }
            epilogue(o);
            return Ok(());
        }
        let one = |e: usize, par: Par| {
            let o = c_at(e);
            if k == 0 {
                zero_k(o);
            } else {
                // SAFETY: indices checked above; entries write disjoint
                // blocks of C (sc ≥ rows·ldc for distinct entries).
                unsafe {
                    product(
                        &p,
                        (ta, tb),
                        rows,
                        a.as_ptr().add(a_at(e)),
                        b.as_ptr().add(b_at(e)),
                        cs.ptr_at(o),
                        first,
                        par,
                    )
                }
            }
            epilogue(o);
        };
        let work = rows * n * k.max(1);
        if entries >= threads && threads > 1 && sc >= rows * ldc && work >= 4096 {
            (0..entries).into_par_iter().for_each(|e| one(e, Par::Seq));
        } else {
            let par = if work * entries >= 1 << 16 {
                Par::rayon(threads)
            } else {
                Par::Seq
            };
            (0..entries).for_each(|e| one(e, par));
        }
        Ok(())
    }
}
