//! Convolution (im2col + GEMM) on NCHW tensors (`shaders/wgsl/conv.wgsl`,
//! `gemm.wgsl`, `elementwise.wgsl`); pooling is `ops::pool`. CPU twins:
//! [`cpu`]; tests: `host/tests/conv.rs`.
//!
//! The images of a batch are processed in chunks whose column matrix
//! (C·kh·kw × OH·OW per image) fits a scratch buffer within the adapter's
//! storage-binding limit; the scratch ([`ConvScratch`]) is shared by every
//! convolution of a model (dispatches run in order).
//!
//! With [`ConvPrecision::F16`] (on devices with shader-f16) the column
//! matrix and the weight are stored as f16 for the products that read them
//! (the forward GEMM and the weight-gradient GEMM), which accumulate in
//! f32; the input gradient stays in f32. Without shader-f16 the scratch
//! falls back to f32.

use scorecl_shaders::{Define, CONV};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::elementwise;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

/// Shape of a 2-D convolution or pooling window over NCHW input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels (pooling: = cin).
    pub cout: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvShape {
    /// The input's (n, h, w).
    pub fn input(&self) -> (usize, usize, usize) {
        (self.n, self.h, self.w)
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Rows of the column matrix: cin·k·k.
    pub fn ckk(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output elements.
    pub fn out_len(&self) -> usize {
        self.n * self.cout * self.oh() * self.ow()
    }

    /// Input elements.
    pub fn in_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }

    /// Weight elements (cout × cin × k × k).
    pub fn weight_len(&self) -> usize {
        self.cout * self.ckk()
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.out_len() * self.ckk()
    }

    /// Column-matrix elements per image.
    pub fn col_per_image(&self) -> usize {
        self.ckk() * self.oh() * self.ow()
    }

    /// The column matrix's row length: OH·OW, or rounded up to a multiple
    /// of 4 with `pad4`.
    pub fn col_ld(&self, pad4: bool) -> usize {
        let ohw = self.oh() * self.ow();
        if pad4 {
            ohw.div_ceil(4) * 4
        } else {
            ohw
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.k == 0
            || self.stride == 0
            || self.h + 2 * self.pad < self.k
            || self.w + 2 * self.pad < self.k
        {
            return Err(Error::shape(
                "conv",
                format!("{self:?}: the window does not fit"),
            ));
        }
        Ok(())
    }
}

/// Images per chunk when one image takes `per` elements of `scratch_len`.
fn chunk_of(shape: &ConvShape, scratch_len: usize, per: usize) -> Result<usize> {
    if per > scratch_len {
        return Err(Error::shape(
            "conv scratch",
            format!("{scratch_len} elements, one image of {shape:?} needs {per}"),
        ));
    }
    Ok((scratch_len / per).clamp(1, shape.n.max(1)))
}

/// Scratch elements for the largest of `shapes`, within the adapter's
/// storage-binding limit (and 256 MiB, to bound memory on big GPUs). On
/// the native device: one workspace per thread for the largest shape's
/// blocks ([`fused`]).
pub fn scratch_len(gpu: &Gpu, shapes: &[ConvShape]) -> usize {
    if gpu.is_native() {
        let threads = rayon::current_num_threads();
        return shapes
            .iter()
            .map(|s| fused::workspace(s, fused::block_images(s, threads), threads))
            .max()
            .unwrap_or(1);
    }
    let limit = (gpu.caps.limits.max_storage_buffer_binding_size as usize).min(256 << 20) / 4;
    let pad4 = pads_rows(gpu);
    let per = |s: &ConvShape| padded_per_image(s, pad4);
    let biggest = shapes.iter().map(|s| s.n * per(s)).max().unwrap_or(1);
    let one = shapes.iter().map(per).max().unwrap_or(1);
    biggest.min(limit.max(one))
}

/// Scratch elements one image of `s` takes: its columns, and with padded
/// rows (where OH·OW is not a multiple of 4) its output gradient in that
/// layout, which shares the length.
fn padded_per_image(s: &ConvShape, pad4: bool) -> usize {
    let ld = s.col_ld(pad4);
    let padded = ld != s.oh() * s.ow();
    s.ckk().max(if padded { s.cout } else { 0 }) * ld
}

/// Whether column matrices get rows padded to a multiple of 4 (f32
/// storage): on CPU drivers, whose vec4 subgroup GEMM (`gemm_sg8`) then
/// takes every shape instead of falling back to the portable kernel for
/// feature maps whose OH·OW is not a multiple of 4 (CIFAR's 17², 9², 5²
/// with solo-learn's stem). GPUs' tiled GEMM takes any shape unpadded.
pub fn pads_rows(gpu: &Gpu) -> bool {
    gpu.caps.class == crate::AdapterClass::Cpu
        && gpu.caps.subgroups
        && gpu.caps.subgroup_size.0 >= 8
}

/// Whether `s` runs on the Winograd path ([`winograd`]: the
/// native device's stride-1, padding-1 3×3 convolutions with at least 16
/// channels in and out) in `scratch`; else im2col + GEMM.
pub fn uses_winograd(gpu: &Gpu, s: &ConvShape, scratch: &ConvScratch) -> bool {
    gpu.is_native() && fused::winograd_images(s, scratch.len()).is_some()
}

/// How convolution operands are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvPrecision {
    /// f32 everywhere.
    #[default]
    F32,
    /// The column matrix and the weight as f16 in the products that read
    /// them, f32 accumulation; f32 outputs and gradients.
    F16,
}

impl ConvPrecision {
    /// Parses `f32` or `f16`.
    pub fn parse(s: &str) -> Option<ConvPrecision> {
        match s {
            "f32" => Some(ConvPrecision::F32),
            "f16" => Some(ConvPrecision::F16),
            _ => None,
        }
    }

    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            ConvPrecision::F32 => "f32",
            ConvPrecision::F16 => "f16",
        }
    }
}

/// The scratch of a model's convolutions: the column matrix (f32; with f16
/// storage the same buffer also holds the f16 columns); with f16 storage,
/// the f16 copy of the weight being applied; with padded rows
/// ([`pads_rows`]), the output gradient in the columns' padded layout. On
/// the native device, the threads' workspaces ([`fused`]).
pub struct ConvScratch {
    cols: Tensor,
    half_weight: Option<Tensor>,
    /// The output gradient in the padded layout (CPU drivers).
    rows: Option<Tensor>,
    /// Column rows padded to a multiple of 4.
    pad4: bool,
}

impl ConvScratch {
    /// A scratch of `len` f32 column elements for weights of at most
    /// `weight_len` elements. [`ConvPrecision::F16`] on a device without
    /// shader-f16 gives an f32 scratch ([`ConvScratch::precision`] says
    /// which).
    pub fn new(
        gpu: &Gpu,
        len: usize,
        weight_len: usize,
        precision: ConvPrecision,
    ) -> Result<ConvScratch> {
        ConvScratch::make(gpu, len, weight_len, precision, true)
    }

    /// As [`ConvScratch::new`]; the padded output-gradient buffer only if
    /// `unaligned` (some shape will use padded rows).
    fn make(
        gpu: &Gpu,
        len: usize,
        weight_len: usize,
        precision: ConvPrecision,
        unaligned: bool,
    ) -> Result<ConvScratch> {
        let half = precision == ConvPrecision::F16 && gpu.caps.f16;
        Ok(ConvScratch {
            cols: gpu.tensor(&[len], DType::F32)?,
            half_weight: if half {
                Some(gpu.tensor(&[weight_len.max(1)], DType::F16)?)
            } else {
                None
            },
            rows: if !half && pads_rows(gpu) && unaligned {
                Some(gpu.tensor(&[len], DType::F32)?)
            } else {
                None
            },
            pad4: !half && pads_rows(gpu) && unaligned,
        })
    }

    /// Column elements one image of `s` takes in a scratch made on `gpu`
    /// with `precision` (its rows padded where [`pads_rows`]; then the
    /// output gradient's padded rows must fit too).
    /// On the native device: one thread's workspace for blocks of one
    /// image.
    pub fn per_image(gpu: &Gpu, s: &ConvShape, precision: ConvPrecision) -> usize {
        if gpu.is_native() {
            return fused::workspace(s, 1, 1);
        }
        let pad4 = !(precision == ConvPrecision::F16 && gpu.caps.f16) && pads_rows(gpu);
        padded_per_image(s, pad4)
    }

    /// The column matrix's row length for `s`.
    fn ld(&self, s: &ConvShape) -> usize {
        s.col_ld(self.pad4)
    }

    /// The scratch for `shapes` ([`scratch_len`] columns, their largest
    /// weight).
    pub fn for_shapes(
        gpu: &Gpu,
        shapes: &[ConvShape],
        precision: ConvPrecision,
    ) -> Result<ConvScratch> {
        let weights = shapes.iter().map(|s| s.weight_len()).max().unwrap_or(1);
        let unaligned = shapes.iter().any(|s| s.col_ld(true) != s.oh() * s.ow());
        ConvScratch::make(gpu, scratch_len(gpu, shapes), weights, precision, unaligned)
    }

    /// The precision in effect.
    pub fn precision(&self) -> ConvPrecision {
        if self.half_weight.is_some() {
            ConvPrecision::F16
        } else {
            ConvPrecision::F32
        }
    }

    /// Column elements (f32).
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Whether it holds no columns.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// The f32 column matrix.
    pub fn cols(&self) -> &Tensor {
        &self.cols
    }

    /// The columns to write with im2col for the products: the f32 matrix,
    /// or an f16 view of the same buffer.
    fn product_cols(&self) -> Result<Tensor> {
        let dtype = if self.half_weight.is_some() {
            DType::F16
        } else {
            DType::F32
        };
        self.cols.view(dtype, self.cols.len())
    }

    /// The weight operand of the forward product: `weight` itself, or its
    /// f16 copy (converted here).
    fn product_weight(&self, step: &mut Step, weight: &Tensor) -> Result<Option<Tensor>> {
        match &self.half_weight {
            None => Ok(None),
            Some(h) => {
                let v = h.view(DType::F16, weight.len())?;
                elementwise::to_f16(step, weight, &v)?;
                Ok(Some(v))
            }
        }
    }
}

kernel_params! {
    struct Params {
        c: u32,
        h: u32,
        w: u32,
        i0: u32,
        kh: u32,
        kw: u32,
        stride: u32,
        pad: u32,
        oh: u32,
        ow: u32,
        images: u32,
        ld: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn params(s: &ConvShape, i0: usize, images: usize, ld: usize) -> Params {
    Params {
        c: s.cin as u32,
        h: s.h as u32,
        w: s.w as u32,
        i0: i0 as u32,
        kh: s.k as u32,
        kw: s.k as u32,
        stride: s.stride as u32,
        pad: s.pad as u32,
        oh: s.oh() as u32,
        ow: s.ow() as u32,
        images: images as u32,
        ld: ld as u32,
    }
}

/// Column matrix of images `i0..i0 + images` of `x` into `col` (f32, or
/// f16 rounded to nearest on devices with shader-f16).
/// `ld` is the matrix's row length (≥ OH·OW; padding columns are zeroed).
pub fn im2col(
    step: &mut Step,
    x: &Tensor,
    s: &ConvShape,
    (i0, images): (usize, usize),
    col: &Tensor,
    ld: usize,
) -> Result<()> {
    col.expect_len_at_least("im2col scratch", images * s.ckk() * ld)?;
    let defines: &[Define] = if col.dtype() == DType::F16 {
        &[Define::F16]
    } else {
        &[]
    };
    let k = step.gpu().kernel(&CONV, "im2col", defines, &[])?;
    let groups = [
        s.ow().div_ceil(8) as u32,
        s.oh().div_ceil(8) as u32,
        s.ckk() as u32,
    ];
    step.dispatch(&k, &params(s, i0, images, ld), crate::bind![x, col], groups)
}

/// What the input gradient of a convolution's backward adds to what it
/// gathers from the columns (a residual block's other branch, fused into
/// col2im).
#[derive(Debug, Clone, Copy)]
pub enum DxAdd<'a> {
    /// Nothing: dx = col2im(dcol).
    None,
    /// dx = col2im(dcol) + t.
    Add(&'a Tensor),
    /// dx = col2im(dcol) + (y > 0 ? dy : 0): the gradient `dy` through a
    /// ReLU whose output is `y`.
    AddRelu {
        /// Gradient at the ReLU's output.
        dy: &'a Tensor,
        /// The ReLU's output.
        y: &'a Tensor,
    },
}

/// Gathers the column gradient `dcol` (rows of `ld`) of images
/// `i0..i0 + images` into `dx`, with `add`'s term added to each element
/// written.
pub fn col2im(
    step: &mut Step,
    dcol: &Tensor,
    s: &ConvShape,
    (i0, images): (usize, usize),
    ld: usize,
    dx: &Tensor,
    add: DxAdd<'_>,
) -> Result<()> {
    let gpu = step.gpu();
    let dummy = gpu.dummy()?;
    let (addend, mask, flags) = match add {
        DxAdd::None => (dummy, dummy, (0.0, 0.0)),
        DxAdd::Add(t) => (t, dummy, (1.0, 0.0)),
        DxAdd::AddRelu { dy, y } => (dy, y, (1.0, 1.0)),
    };
    for (what, t) in [("col2im addend", addend), ("col2im mask", mask)] {
        if !std::ptr::eq(t, dummy) {
            t.expect_len(what, s.in_len())?;
        }
    }
    let k = gpu.kernel(&CONV, "col2im", &[], &[("ADD", flags.0), ("MASK", flags.1)])?;
    let groups = [s.w.div_ceil(8) as u32, s.h.div_ceil(8) as u32, s.cin as u32];
    step.dispatch(
        &k,
        &params(s, i0, images, ld),
        crate::bind![dcol, dx, addend, mask],
        groups,
    )
}

/// Copies the output gradient `dy` (images `i0..i0 + images`, `s.cout`
/// rows of OH·OW each) into `rows` with rows of `ld`, zero-padded.
fn pad_rows(
    step: &mut Step,
    dy: &Tensor,
    s: &ConvShape,
    (i0, images): (usize, usize),
    ld: usize,
    rows: &Tensor,
) -> Result<()> {
    let k = step.gpu().kernel(&CONV, "pad_rows", &[], &[])?;
    let p = Params {
        c: s.cout as u32,
        ..params(s, i0, images, ld)
    };
    step.dispatch(
        &k,
        &p,
        crate::bind![y = rows, dy],
        grid(images * s.cout * ld, 256),
    )
}

/// `out = conv(x, weight)` (no bias), NCHW, weight cout × cin × k × k.
pub fn conv2d(
    step: &mut Step,
    x: &Tensor,
    weight: &Tensor,
    s: &ConvShape,
    scratch: &ConvScratch,
    out: &Tensor,
) -> Result<()> {
    s.check()?;
    x.expect_len("conv input", s.in_len())?;
    weight.expect_len("conv weight", s.weight_len())?;
    out.expect_len("conv output", s.out_len())?;
    if step.gpu().is_native() {
        return fused::forward(step, x, weight, s, scratch, out);
    }
    let ld = scratch.ld(s);
    let chunk = chunk_of(s, scratch.len(), s.ckk() * ld)?;
    let ohw = s.oh() * s.ow();
    let cols = scratch.product_cols()?;
    let half_weight = scratch.product_weight(step, weight)?;
    let w = half_weight.as_ref().unwrap_or(weight);
    let mut i0 = 0;
    while i0 < s.n {
        let images = chunk.min(s.n - i0);
        im2col(step, x, s, (i0, images), &cols, ld)?;
        let g = GemmSpec {
            batch: images,
            broadcast_a: true,
            c_off: i0 * s.cout * ohw,
            ldb: ld,
            ..GemmSpec::new(s.cout, ohw, s.ckk())
        };
        gemm(step, &g, w, &cols, None, out)?;
        i0 += images;
    }
    Ok(())
}

/// Backward of [`conv2d`]: `dweight += Σ_images dout·colᵀ`, and `dx` (if
/// given) = the input gradient. The column matrix is recomputed.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    step: &mut Step,
    x: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    s: &ConvShape,
    scratch: &ConvScratch,
    dweight: &Tensor,
    dx: Option<&Tensor>,
) -> Result<()> {
    conv2d_backward_add(step, x, weight, dout, s, scratch, dweight, dx, DxAdd::None)
}

/// [`conv2d_backward`] with `add`'s term added to the input gradient
/// (ignored without `dx`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_add(
    step: &mut Step,
    x: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    s: &ConvShape,
    scratch: &ConvScratch,
    dweight: &Tensor,
    dx: Option<&Tensor>,
    add: DxAdd<'_>,
) -> Result<()> {
    s.check()?;
    dout.expect_len("conv output gradient", s.out_len())?;
    dweight.expect_len("conv weight gradient", s.weight_len())?;
    if let Some(dx) = dx {
        dx.expect_len("conv input gradient", s.in_len())?;
    }
    if step.gpu().is_native() {
        return fused::backward(step, x, weight, dout, s, scratch, dweight, dx, add);
    }
    let ld = scratch.ld(s);
    let ohw = s.oh() * s.ow();
    let cols = scratch.product_cols()?;
    if let (Some(rows), true) = (&scratch.rows, ld != ohw) {
        // Padded rows: the output gradient is copied into the columns'
        // layout, so that every product is vec4-aligned (the zero padding
        // adds nothing).
        let chunk = chunk_of(s, scratch.len(), s.ckk().max(s.cout) * ld)?;
        let mut i0 = 0;
        while i0 < s.n {
            let images = chunk.min(s.n - i0);
            im2col(step, x, s, (i0, images), &cols, ld)?;
            pad_rows(step, dout, s, (i0, images), ld, rows)?;
            let gw = GemmSpec {
                batch: images,
                trans_b: true,
                reduce: true,
                beta: 1.0,
                ..GemmSpec::new(s.cout, s.ckk(), ld)
            };
            gemm(step, &gw, rows, &cols, None, dweight)?;
            if let Some(dx) = dx {
                let gd = GemmSpec {
                    batch: images,
                    trans_a: true,
                    broadcast_a: true,
                    ..GemmSpec::new(s.ckk(), ld, s.cout)
                };
                gemm(step, &gd, weight, rows, None, scratch.cols())?;
                col2im(step, scratch.cols(), s, (i0, images), ld, dx, add)?;
            }
            i0 += images;
        }
        return Ok(());
    }
    let chunk = chunk_of(s, scratch.len(), s.ckk() * ld)?;
    let mut i0 = 0;
    while i0 < s.n {
        let images = chunk.min(s.n - i0);
        im2col(step, x, s, (i0, images), &cols, ld)?;
        let gw = GemmSpec {
            batch: images,
            trans_b: true,
            reduce: true,
            beta: 1.0,
            a_off: i0 * s.cout * ohw,
            ..GemmSpec::new(s.cout, s.ckk(), ohw)
        };
        gemm(step, &gw, dout, &cols, None, dweight)?;
        if let Some(dx) = dx {
            // The scratch now receives the column gradient, in f32 (the
            // GEMM above has read the columns by then: dispatches run in
            // order).
            let scratch = scratch.cols();
            let gd = GemmSpec {
                batch: images,
                trans_a: true,
                broadcast_a: true,
                b_off: i0 * s.cout * ohw,
                ..GemmSpec::new(s.ckk(), ohw, s.cout)
            };
            gemm(step, &gd, weight, dout, None, scratch)?;
            col2im(step, scratch, s, (i0, images), ld, dx, add)?;
        }
        i0 += images;
    }
    Ok(())
}

/// The native CPU device's convolution, whole: the images are cut into
/// blocks, and each thread takes a contiguous range of blocks and, block by
/// block, writes the block's columns (`[C·k·k][images·OH·OW]`, the images
/// side by side) into its own workspace and multiplies them at once, while
/// they are in its cache, instead of materialising a whole chunk's columns
/// in memory between two dispatches. The weight gradient is summed per
/// thread and the threads' sums added in a fixed order (deterministic for a
/// given thread count); each block's input gradient is written by the
/// thread that owns the block's images.
pub(crate) mod fused {
    use super::{native, winograd, ConvScratch, ConvShape, DxAdd};
    use crate::error::{Error, Result};
    use crate::kernel::Binding::{Read, ReadWrite};
    use crate::step::Step;
    use crate::tensor::Tensor;

    /// Column elements a block aims at (2 MiB of f32: within a core's L2
    /// or its share of L3 while the block's products read them).
    const BLOCK_COLS: usize = 1 << 19;

    /// Images per block for `s` on `threads` threads: as many as fit
    /// [`BLOCK_COLS`], at least one, and few enough that every thread
    /// gets about four blocks.
    pub(crate) fn block_images(s: &ConvShape, threads: usize) -> usize {
        let per = s.ckk() * s.oh() * s.ow();
        (BLOCK_COLS / per.max(1))
            .min(s.n.div_ceil(4 * threads.max(1)))
            .max(1)
    }

    /// One thread's workspace for blocks of `images`: the block's columns
    /// (reused for their gradient), its output (or output gradient) side
    /// by side, and the thread's weight-gradient sum. On the Winograd path
    /// the first part also holds at least one image's transforms.
    pub(crate) fn per_task(s: &ConvShape, images: usize) -> usize {
        let bc = images * s.oh() * s.ow();
        let blocks = s.ckk().max(1) * bc + s.cout * bc;
        blocks.max(winograd::one_image(s)) + s.cout * s.ckk()
    }

    /// The whole workspace for `tasks` threads with blocks of `images`:
    /// each thread's [`per_task`], then the shared [`tail`].
    pub(crate) fn workspace(s: &ConvShape, images: usize, tasks: usize) -> usize {
        tasks * per_task(s, images) + tail(s)
    }

    /// The shared tail of the workspace: the weight transposed
    /// (`[ckk][cout]`: the input gradient's product reads it in the layout
    /// it multiplies fastest), or on the Winograd path
    /// ([`winograd`]) the transformed weights.
    pub(crate) fn tail(s: &ConvShape) -> usize {
        if winograd::eligible(s) {
            s.weight_len().max(winograd::weight_len(s))
        } else {
            s.weight_len()
        }
    }

    /// The plan for `s` in a workspace of `len` elements: images per block
    /// and threads (fewer, or smaller blocks, when the workspace is small).
    fn plan(s: &ConvShape, len: usize) -> Result<(usize, usize)> {
        let threads = rayon::current_num_threads();
        let mut images = block_images(s, threads);
        loop {
            let tasks = (len.saturating_sub(tail(s)) / per_task(s, images))
                .min(threads)
                .min(s.n.div_ceil(images));
            if tasks >= 1 {
                return Ok((images, tasks));
            }
            if images == 1 {
                return Err(Error::shape(
                    "conv scratch",
                    format!(
                        "{len} elements, one image of {s:?} needs {}",
                        workspace(s, 1, 1)
                    ),
                ));
            }
            images = images.div_ceil(2);
        }
    }

    /// Images per Winograd sub-block of `s` in a workspace of `len`
    /// elements, when `s` takes that path there (as the kernels decide).
    pub(crate) fn winograd_images(s: &ConvShape, len: usize) -> Option<usize> {
        if !winograd::eligible(s) {
            return None;
        }
        let (images, _) = plan(s, len).ok()?;
        winograd::images_per_block(s, per_task(s, images) - s.cout * s.ckk())
    }

    crate::kernel_params! {
        /// Parameters of the fused kernels (native only: no WGSL twin).
        pub(crate) struct Params {
            pub(crate) n: u32,
            pub(crate) cin: u32,
            pub(crate) h: u32,
            pub(crate) w: u32,
            pub(crate) cout: u32,
            pub(crate) k: u32,
            pub(crate) stride: u32,
            pub(crate) pad: u32,
            /// Images per block.
            pub(crate) images: u32,
            /// Threads, each with a workspace of [`per_task`] elements.
            pub(crate) tasks: u32,
            /// The input gradient's epilogue: 0 none, 1 add, 2 add masked.
            pub(crate) add: u32,
            /// Whether the input gradient is written.
            pub(crate) dx: u32,
        }
    }

    impl Params {
        pub(crate) fn shape(&self) -> ConvShape {
            ConvShape {
                n: self.n as usize,
                cin: self.cin as usize,
                h: self.h as usize,
                w: self.w as usize,
                cout: self.cout as usize,
                k: self.k as usize,
                stride: self.stride as usize,
                pad: self.pad as usize,
            }
        }
    }

    fn params(s: &ConvShape, scratch: &ConvScratch) -> Result<Params> {
        let (images, tasks) = plan(s, scratch.len())?;
        Ok(Params {
            n: s.n as u32,
            cin: s.cin as u32,
            h: s.h as u32,
            w: s.w as u32,
            cout: s.cout as u32,
            k: s.k as u32,
            stride: s.stride as u32,
            pad: s.pad as u32,
            images: images as u32,
            tasks: tasks as u32,
            add: 0,
            dx: 0,
        })
    }

    pub(super) fn forward(
        step: &mut Step,
        x: &Tensor,
        weight: &Tensor,
        s: &ConvShape,
        scratch: &ConvScratch,
        out: &Tensor,
    ) -> Result<()> {
        let k = step.gpu().native_kernel(
            "conv_forward",
            &[
                ("x", Read),
                ("weight", Read),
                ("workspace", ReadWrite),
                ("out", ReadWrite),
            ],
            native::conv_forward,
        )?;
        if s.n == 0 {
            return Ok(());
        }
        let p = params(s, scratch)?;
        step.dispatch(
            &k,
            &p,
            crate::bind![x, weight, workspace = &scratch.cols, out],
            [1, 1, 1],
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        step: &mut Step,
        x: &Tensor,
        weight: &Tensor,
        dout: &Tensor,
        s: &ConvShape,
        scratch: &ConvScratch,
        dweight: &Tensor,
        dx: Option<&Tensor>,
        add: DxAdd<'_>,
    ) -> Result<()> {
        if s.n == 0 {
            return Ok(());
        }
        let gpu = step.gpu();
        let p = params(s, scratch)?;
        let Some(dx) = dx else {
            let k = gpu.native_kernel(
                "conv_backward_weight",
                &[
                    ("x", Read),
                    ("weight", Read),
                    ("dout", Read),
                    ("workspace", ReadWrite),
                    ("dweight", ReadWrite),
                ],
                native::conv_backward,
            )?;
            return step.dispatch(
                &k,
                &p,
                crate::bind![x, weight, dout, workspace = &scratch.cols, dweight],
                [1, 1, 1],
            );
        };
        let k = gpu.native_kernel(
            "conv_backward",
            &[
                ("x", Read),
                ("weight", Read),
                ("dout", Read),
                ("workspace", ReadWrite),
                ("dweight", ReadWrite),
                ("dx", ReadWrite),
                ("addend", Read),
                ("mask", Read),
            ],
            native::conv_backward,
        )?;
        let dummy = gpu.dummy()?;
        let (addend, mask, flag) = match add {
            DxAdd::None => (dummy, dummy, 0),
            DxAdd::Add(t) => (t, dummy, 1),
            DxAdd::AddRelu { dy, y } => (dy, y, 2),
        };
        for (what, t) in [("col2im addend", addend), ("col2im mask", mask)] {
            if !std::ptr::eq(t, dummy) {
                t.expect_len(what, s.in_len())?;
            }
        }
        let p = Params {
            add: flag,
            dx: 1,
            ..p
        };
        step.dispatch(
            &k,
            &p,
            crate::bind![
                x,
                weight,
                dout,
                workspace = &scratch.cols,
                dweight,
                dx,
                addend,
                mask
            ],
            [1, 1, 1],
        )
    }
}

pub(crate) mod winograd;

/// CPU twins (f64 accumulation).
#[cfg(feature = "reference")]
pub mod cpu {
    use super::ConvShape;

    fn at(x: &[f32], s: &ConvShape, n: usize, c: usize, h: isize, w: isize) -> f64 {
        if h < 0 || w < 0 || h >= s.h as isize || w >= s.w as isize {
            0.0
        } else {
            x[((n * s.cin + c) * s.h + h as usize) * s.w + w as usize] as f64
        }
    }

    /// Direct convolution.
    pub fn conv2d(x: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
        let (oh, ow) = (s.oh(), s.ow());
        let mut out = vec![0.0f32; s.out_len()];
        for n in 0..s.n {
            for co in 0..s.cout {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut acc = 0.0f64;
                        for c in 0..s.cin {
                            for p in 0..s.k {
                                for q in 0..s.k {
                                    let h = (i * s.stride + p) as isize - s.pad as isize;
                                    let w = (j * s.stride + q) as isize - s.pad as isize;
                                    acc += weight[((co * s.cin + c) * s.k + p) * s.k + q] as f64
                                        * at(x, s, n, c, h, w);
                                }
                            }
                        }
                        out[((n * s.cout + co) * oh + i) * ow + j] = acc as f32;
                    }
                }
            }
        }
        out
    }

    /// Weight and input gradients of [`conv2d`] for the output gradient `dout`.
    pub fn conv2d_backward(
        x: &[f32],
        weight: &[f32],
        dout: &[f32],
        s: &ConvShape,
    ) -> (Vec<f32>, Vec<f32>) {
        let (oh, ow) = (s.oh(), s.ow());
        let mut dw = vec![0.0f64; s.weight_len()];
        let mut dx = vec![0.0f64; s.in_len()];
        for n in 0..s.n {
            for co in 0..s.cout {
                for i in 0..oh {
                    for j in 0..ow {
                        let g = dout[((n * s.cout + co) * oh + i) * ow + j] as f64;
                        for c in 0..s.cin {
                            for p in 0..s.k {
                                for q in 0..s.k {
                                    let h = (i * s.stride + p) as isize - s.pad as isize;
                                    let w = (j * s.stride + q) as isize - s.pad as isize;
                                    let wi = ((co * s.cin + c) * s.k + p) * s.k + q;
                                    dw[wi] += g * at(x, s, n, c, h, w);
                                    if h >= 0 && w >= 0 && h < s.h as isize && w < s.w as isize {
                                        dx[((n * s.cin + c) * s.h + h as usize) * s.w
                                            + w as usize] += g * weight[wi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (
            dw.iter().map(|v| *v as f32).collect(),
            dx.iter().map(|v| *v as f32).collect(),
        )
    }
    /// The rounding scale of the native Winograd path
    /// ([`super::winograd`]) for [`conv2d`] on a stride-1,
    /// padding-1 3×3 shape: `|Aᵀ| [Σ_c (|G| |g| |Gᵀ|) ⊙ (|Bᵀ| |d| |B|)] |A|`
    /// per output, the transforms' matrices and the operands taken by
    /// absolute value. Its computed outputs are within γ_(C + 11) of it
    /// (two additions in the input transform, four in the weights', one
    /// product, C − 1 in the sum over channels, four in the output
    /// transform), as the direct sum is within γ_(C·9) of Σ|w||x|.
    // The matrices' index loops read as their formulas.
    #[allow(clippy::needless_range_loop)]
    pub fn winograd_magnitude(x: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
        assert!(s.k == 3 && s.stride == 1 && s.pad == 1, "{s:?}");
        const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5; 3], [0.5; 3], [0.0, 0.0, 1.0]];
        const BT: [[f64; 4]; 4] = [
            [1.0, 0.0, 1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, 1.0],
        ];
        const AT: [[f64; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]];
        let (th, tw) = (s.h.div_ceil(2), s.w.div_ceil(2));
        let mut out = vec![0.0f32; s.out_len()];
        // |G| |g| |Gᵀ| per (out, in) channel pair.
        let u: Vec<[[f64; 4]; 4]> = (0..s.cout * s.cin)
            .map(|oc| {
                let g = &weight[oc * 9..oc * 9 + 9];
                let mut u = [[0.0; 4]; 4];
                for (i, ui) in u.iter_mut().enumerate() {
                    for (k, v) in ui.iter_mut().enumerate() {
                        for p in 0..3 {
                            for q in 0..3 {
                                *v += G[i][p] * (g[p * 3 + q] as f64).abs() * G[k][q];
                            }
                        }
                    }
                }
                u
            })
            .collect();
        for n in 0..s.n {
            for ty in 0..th {
                for tx in 0..tw {
                    // |Bᵀ| |d| |B| per input channel.
                    let v: Vec<[[f64; 4]; 4]> = (0..s.cin)
                        .map(|c| {
                            let mut v = [[0.0; 4]; 4];
                            for (i, vi) in v.iter_mut().enumerate() {
                                for (k, e) in vi.iter_mut().enumerate() {
                                    for y in 0..4 {
                                        for xx in 0..4 {
                                            let hh = (2 * ty + y) as isize - 1;
                                            let ww = (2 * tx + xx) as isize - 1;
                                            *e +=
                                                BT[i][y] * at(x, s, n, c, hh, ww).abs() * BT[k][xx];
                                        }
                                    }
                                }
                            }
                            v
                        })
                        .collect();
                    for o in 0..s.cout {
                        let mut m = [[0.0f64; 4]; 4];
                        for (c, vc) in v.iter().enumerate() {
                            let uc = &u[o * s.cin + c];
                            for i in 0..4 {
                                for k in 0..4 {
                                    m[i][k] += uc[i][k] * vc[i][k];
                                }
                            }
                        }
                        for a in 0..2 {
                            for b in 0..2 {
                                let (y, x) = (2 * ty + a, 2 * tx + b);
                                if y >= s.h || x >= s.w {
                                    continue;
                                }
                                let mut acc = 0.0;
                                for i in 0..4 {
                                    for k in 0..4 {
                                        acc += AT[a][i] * m[i][k] * AT[b][k];
                                    }
                                }
                                out[((n * s.cout + o) * s.h + y) * s.w + x] = acc as f32;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// [`winograd_magnitude`] of the input gradient for the output
    /// gradient `dout`: the same correlation of `dout` with each kernel
    /// turned by 180° and the channels swapped.
    pub fn winograd_magnitude_dx(dout: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
        let t = ConvShape {
            cin: s.cout,
            cout: s.cin,
            ..*s
        };
        let mut flipped = vec![0.0f32; weight.len()];
        for o in 0..s.cout {
            for c in 0..s.cin {
                for i in 0..9 {
                    flipped[(c * s.cout + o) * 9 + i] = weight[(o * s.cin + c) * 9 + 8 - i];
                }
            }
        }
        winograd_magnitude(dout, &flipped, &t)
    }
}

/// Native CPU twins of `im2col`, `col2im` and `pad_rows`, an image row or
/// plane per parallel task.
// `!(a > b)` on purpose: NaN takes the same branch as in the WGSL.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) mod native {
    use super::{winograd, ConvShape, Params};
    use crate::error::Result;
    use crate::native::{need, rows_mut, Invocation, KernelFn, SharedMut};
    use crate::ops::gemm::native as gemm;
    use rayon::prelude::*;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "im2col" => im2col,
            "col2im" => col2im,
            "pad_rows" => pad_rows,
            _ => return None,
        })
    }

    struct Geo {
        c: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
        ld: usize,
    }

    impl Geo {
        fn of(p: &Params) -> Geo {
            Geo {
                c: p.c as usize,
                h: p.h as usize,
                w: p.w as usize,
                kh: p.kh as usize,
                kw: p.kw as usize,
                stride: p.stride.max(1) as usize,
                pad: p.pad as usize,
                oh: p.oh as usize,
                ow: p.ow as usize,
                ld: p.ld as usize,
            }
        }

        /// Row r = (c, p, q) of one image's column matrix from its planes
        /// `x` (C·H·W), the padding columns zeroed.
        fn im2col_row(&self, x: &[f32], r: usize, out: &mut [f32]) {
            let c = r / (self.kh * self.kw);
            let p = (r / self.kw) % self.kh;
            let q = r % self.kw;
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            let (oh, ow) = (self.oh, self.ow);
            if self.stride == 1 && ow == self.w {
                self.im2col_plane_same(plane, p, q, &mut out[..oh * ow]);
                out[oh * ow..self.ld].fill(0.0);
                return;
            }
            for i in 0..oh {
                let o = &mut out[i * ow..(i + 1) * ow];
                let hh = (i * self.stride + p) as isize - self.pad as isize;
                if hh < 0 || hh >= self.h as isize {
                    o.fill(0.0);
                    continue;
                }
                let src = &plane[hh as usize * self.w..(hh as usize + 1) * self.w];
                if self.stride == 1 {
                    // ww = j + q − pad: zeros, a contiguous run, zeros.
                    let shift = q as isize - self.pad as isize;
                    let lo = (-shift).clamp(0, ow as isize) as usize;
                    let hi = (self.w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                    o[..lo].fill(0.0);
                    o[lo..hi].copy_from_slice(
                        &src[(lo as isize + shift) as usize..(hi as isize + shift) as usize],
                    );
                    o[hi..].fill(0.0);
                } else {
                    // ww = j·stride + q − pad lies in the row for j in
                    // lo..hi: zeros, a strided gather, zeros.
                    let s = self.stride;
                    let lo = self.pad.saturating_sub(q).div_ceil(s).min(ow);
                    let hi = (self.w + self.pad)
                        .saturating_sub(q)
                        .div_ceil(s)
                        .clamp(lo, ow);
                    o[..lo].fill(0.0);
                    let first = lo * s + q - self.pad.min(lo * s + q);
                    let run = &mut o[lo..hi];
                    if let Some((last, body)) = run.split_last_mut() {
                        // Whole groups of `s` for all but the last (which
                        // may be the row's last element): the form of
                        // gather that vectorises (a permute per vector at
                        // stride 2).
                        for (v, group) in body.iter_mut().zip(src[first..].chunks_exact(s)) {
                            *v = group[0];
                        }
                        *last = src[first + body.len() * s];
                    }
                    o[hi..].fill(0.0);
                }
            }
            out[oh * ow..self.ld].fill(0.0);
        }

        /// `im2col_row` at stride 1 where the output rows are as wide as
        /// the input's (a "same" padding): tap (p, q)'s row is the plane
        /// shifted by (p − pad) rows and (q − pad) columns, so the rows
        /// that land inside are one contiguous copy, after which the one
        /// column per row that wrapped around from the next row is zeroed.
        /// The same values as the row-by-row copy, with one copy per plane
        /// instead of three calls per row (the small maps' cost).
        fn im2col_plane_same(&self, plane: &[f32], p: usize, q: usize, out: &mut [f32]) {
            let (oh, w) = (self.oh, self.w);
            // Output rows i with input row i + p − pad inside the plane.
            let i_lo = self.pad.saturating_sub(p).min(oh);
            let i_hi = (self.h + self.pad).saturating_sub(p).clamp(i_lo, oh);
            out[..i_lo * w].fill(0.0);
            out[i_hi * w..].fill(0.0);
            if i_lo == i_hi {
                return;
            }
            let shift = q as isize - self.pad as isize;
            let lo = (-shift).clamp(0, w as isize) as usize;
            let hi = (w as isize - shift).clamp(lo as isize, w as isize) as usize;
            if lo == hi {
                out[i_lo * w..i_hi * w].fill(0.0);
                return;
            }
            // Element j of output row i reads plane[(i + p − pad)·w + j + shift].
            let start = i_lo * w + lo;
            let end = (i_hi - 1) * w + hi;
            let src = ((i_lo + p - self.pad) * w + lo) as isize + shift;
            let src = src as usize;
            out[start..end].copy_from_slice(&plane[src..src + (end - start)]);
            for i in i_lo..i_hi {
                let row = &mut out[i * w..(i + 1) * w];
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
            }
        }

        /// One image plane of the input gradient from its column-matrix
        /// gradient `dcol` (the image's rows, `stride` apart), taps added in
        /// (p, q) order.
        fn col2im_plane(&self, dcol: &[f32], stride: usize, c: usize, out: &mut [f32]) {
            out.fill(0.0);
            let (oh, ow, w) = (self.oh, self.ow, self.w);
            if self.kh * self.kw > 64 {
                // The kernel's cap: at most 64 taps per pixel (in scan
                // order) are gathered.
                for h in 0..self.h {
                    for x in 0..w {
                        let mut count = 0;
                        let mut acc = 0.0f32;
                        for p in 0..self.kh {
                            let hs = (h + self.pad) as isize - p as isize;
                            if hs < 0
                                || hs as usize % self.stride != 0
                                || hs as usize / self.stride >= oh
                            {
                                continue;
                            }
                            for q in 0..self.kw {
                                let ws = (x + self.pad) as isize - q as isize;
                                if ws < 0
                                    || ws as usize % self.stride != 0
                                    || ws as usize / self.stride >= ow
                                    || count >= 64
                                {
                                    continue;
                                }
                                let r = (c * self.kh + p) * self.kw + q;
                                acc += dcol[r * stride
                                    + (hs as usize / self.stride) * ow
                                    + ws as usize / self.stride];
                                count += 1;
                            }
                        }
                        out[h * w + x] = acc;
                    }
                }
                return;
            }
            for p in 0..self.kh {
                for q in 0..self.kw {
                    let row = &dcol[((c * self.kh + p) * self.kw + q) * stride..];
                    for i in 0..oh {
                        let hh = (i * self.stride + p) as isize - self.pad as isize;
                        if hh < 0 || hh >= self.h as isize {
                            continue;
                        }
                        let dst = &mut out[hh as usize * w..(hh as usize + 1) * w];
                        let src = &row[i * ow..(i + 1) * ow];
                        if self.stride == 1 {
                            // ww = j + q − pad over one contiguous run: the
                            // same additions in the same order, vectorised.
                            let shift = q as isize - self.pad as isize;
                            let lo = (-shift).clamp(0, ow as isize) as usize;
                            let hi = (w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                            if lo == hi {
                                // The tap lands outside the row (a kernel
                                // wider than the map and its padding).
                                continue;
                            }
                            let at = (lo as isize + shift) as usize;
                            for (d, v) in dst[at..at + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                                *d += v;
                            }
                            continue;
                        }
                        // ww = j·stride + q − pad inside the row for j in
                        // lo..hi (each tap adds to a pixel at most once).
                        let s = self.stride;
                        let lo = self.pad.saturating_sub(q).div_ceil(s).min(ow);
                        let hi = (w + self.pad).saturating_sub(q).div_ceil(s).clamp(lo, ow);
                        let first = lo * s + q - self.pad.min(lo * s + q);
                        if let Some((last, body)) = src[lo..hi].split_last() {
                            // As im2col's gather: whole groups of `s` but
                            // for the last.
                            let groups = dst[first..].chunks_exact_mut(s);
                            for (group, v) in groups.zip(body) {
                                group[0] += v;
                            }
                            dst[first + body.len() * s] += last;
                        }
                    }
                }
            }
        }
    }

    /// col2im's epilogue on one plane starting at element `o`: the other
    /// branch's gradient added, through a ReLU whose output is `mask` when
    /// `masked`.
    fn add_branch(out: &mut [f32], addend: &[f32], mask: &[f32], masked: bool, o: usize) {
        for (j, v) in out.iter_mut().enumerate() {
            let a = if masked && !scorecl_core::relu_passes(mask[o + j]) {
                0.0
            } else {
                addend[o + j]
            };
            *v += a;
        }
    }

    fn im2col(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let g = Geo::of(&p);
        let (x, col) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (i0, images) = (p.i0 as usize, p.images as usize);
        let rows = g.c * g.kh * g.kw;
        let chw = g.c * g.h * g.w;
        need(
            inv,
            &[
                ("x", x.len(), (i0 + images) * chw),
                ("col", col.len(), images * rows * g.ld),
            ],
        )?;
        rows_mut(col, images * rows, g.ld, g.ld, |t, out| {
            let (b, r) = (t / rows, t % rows);
            let img = &x[(i0 + b) * chw..(i0 + b + 1) * chw];
            g.im2col_row(img, r, out);
        });
        Ok(())
    }

    fn col2im(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let g = Geo::of(&p);
        let (dcol, dx) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (addend, mask) = (inv.f32(2)?, inv.f32(3)?);
        let (add, masked) = (inv.flag("ADD", false), inv.flag("MASK", false));
        let (i0, images) = (p.i0 as usize, p.images as usize);
        let rows = g.c * g.kh * g.kw;
        let hw = g.h * g.w;
        let end = (i0 + images) * g.c * hw;
        need(
            inv,
            &[
                ("dcol", dcol.len(), images * rows * g.ld),
                ("dx", dx.len(), end),
            ],
        )?;
        if add {
            need(inv, &[("addend", addend.len(), end)])?;
        }
        if add && masked {
            need(inv, &[("mask", mask.len(), end)])?;
        }
        let base = i0 * g.c * hw;
        rows_mut(
            &mut dx[base..end],
            images * g.c,
            hw,
            hw * g.kh * g.kw,
            |t, out| {
                let (b, c) = (t / g.c, t % g.c);
                g.col2im_plane(&dcol[b * rows * g.ld..(b + 1) * rows * g.ld], g.ld, c, out);
                if add {
                    add_branch(out, addend, mask, masked, base + t * hw);
                }
            },
        );
        Ok(())
    }

    fn pad_rows(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (y, dy) = (inv.f32_mut(0)?, inv.f32(1)?);
        let (c, i0, images, ld) = (
            p.c as usize,
            p.i0 as usize,
            p.images as usize,
            p.ld as usize,
        );
        let ohw = (p.oh * p.ow) as usize;
        need(
            inv,
            &[
                ("rows", y.len(), images * c * ld),
                ("dy", dy.len(), (i0 + images) * c * ohw),
            ],
        )?;
        rows_mut(y, images * c, ld, ld, |row, o| {
            let src = &dy[(i0 * c + row) * ohw..(i0 * c + row + 1) * ohw];
            o[..ohw].copy_from_slice(src);
            o[ohw..].fill(0.0);
        });
        Ok(())
    }

    /// The images of block `b` of `p` (the last block may be short).
    fn block(p: &super::fused::Params, b: usize) -> (usize, usize) {
        let per = p.images as usize;
        let i0 = b * per;
        (i0, per.min(p.n as usize - i0))
    }

    /// Blocks `t·blocks/tasks ..` of task `t`: contiguous, fixed by the
    /// plan.
    fn task_blocks(t: usize, tasks: usize, blocks: usize) -> std::ops::Range<usize> {
        t * blocks / tasks..(t + 1) * blocks / tasks
    }

    /// Block columns of images `i0..i0 + images` of `x` into `cols`
    /// (`[ckk][images·OH·OW]`).
    fn block_cols(g: &Geo, x: &[f32], (i0, images): (usize, usize), cols: &mut [f32]) {
        let (ohw, chw) = (g.oh * g.ow, g.c * g.h * g.w);
        let bc = images * ohw;
        for (r, row) in cols.chunks_mut(bc).enumerate() {
            for (b, out) in row.chunks_mut(ohw).enumerate() {
                let i = i0 + b;
                g.im2col_row(&x[i * chw..(i + 1) * chw], r, out);
            }
        }
    }

    fn geo(p: &super::fused::Params) -> Geo {
        let s = p.shape();
        Geo {
            c: s.cin,
            h: s.h,
            w: s.w,
            kh: s.k,
            kw: s.k,
            stride: s.stride.max(1),
            pad: s.pad,
            oh: s.oh(),
            ow: s.ow(),
            ld: s.oh() * s.ow(),
        }
    }

    /// Images per block of the im2col forward: the plan's, or for large
    /// weights (a million elements or more, ResNet-18's last stage) as
    /// many as the task's whole workspace holds (the forward has no
    /// weight-gradient sum), up to a task's share of the batch: each block
    /// streams the weights through the product once, and these shapes'
    /// blocks of a few images made it weight-bound.
    fn forward_images(s: &ConvShape, p: &super::fused::Params, per_task: usize) -> usize {
        let planned = p.images.max(1) as usize;
        if s.weight_len() < 1 << 20 {
            return planned;
        }
        let fit = per_task / ((s.ckk() + s.cout) * s.oh() * s.ow()).max(1);
        if fit <= planned {
            return planned;
        }
        // The same number of blocks for every task, each as large as fits.
        let tasks = p.tasks.max(1) as usize;
        let per_task_blocks = s.n.div_ceil(tasks * fit);
        s.n.div_ceil(tasks * per_task_blocks).max(planned)
    }

    /// Images per Winograd sub-block when `s` takes that path and one
    /// image's transforms fit `avail` elements: a task's workspace but its
    /// weight-gradient sum, in the forward as in the backward.
    fn winograd_sub_block(s: &ConvShape, avail: usize) -> Option<usize> {
        if winograd::eligible(s) {
            winograd::images_per_block(s, avail)
        } else {
            None
        }
    }

    /// `conv_forward` (`x`, `weight`, workspace → `out`): on the Winograd
    /// path ([`winograd`]) each task's share of the images; else each task's
    /// blocks, columns then one product per block.
    pub(super) fn conv_forward(inv: &Invocation) -> Result<()> {
        let p: super::fused::Params = inv.params()?;
        let s = p.shape();
        let g = geo(&p);
        let (x, wt, work, out) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?, inv.f32_mut(3)?);
        let (ohw, ckk, tasks) = (g.oh * g.ow, s.ckk(), p.tasks as usize);
        let per_task = super::fused::per_task(&s, p.images as usize);
        need(
            inv,
            &[
                ("x", x.len(), s.in_len()),
                ("weight", wt.len(), s.weight_len()),
                ("workspace", work.len(), tasks * per_task),
                ("out", out.len(), s.out_len()),
            ],
        )?;
        let slab = s.cout * ohw;
        if let Some(per) = winograd_sub_block(&s, per_task - s.cout * ckk) {
            // Task t's images t·n/tasks.., in sub-blocks of `per`.
            let (work, u) = work.split_at_mut(tasks * per_task);
            need(inv, &[("workspace", u.len(), winograd::weight_len(&s))])?;
            winograd::weights(wt, &s, false, u);
            let (u, chw) = (&*u, s.cin * s.h * s.w);
            let (work, out) = (SharedMut::new(work), SharedMut::new(out));
            let d = winograd::Dims {
                h: s.h,
                w: s.w,
                cols: s.cin,
                rows: s.cout,
            };
            (0..tasks).into_par_iter().for_each(|t| {
                let (a, b) = (t * s.n / tasks, (t + 1) * s.n / tasks);
                // SAFETY (slices): task t owns its workspace and its
                // images' outputs.
                let ws = work.slice(t * per_task, per_task);
                let dst = out.slice(a * slab, (b - a) * slab);
                let src = &x[a * chw..b * chw];
                winograd::run(d, u, src, b - a, per, ws, dst, |_, _| {});
            });
            return Ok(());
        }
        let per = forward_images(&s, &p, per_task);
        let blocks = s.n.div_ceil(per);
        let tasks = tasks.min(blocks);
        let (work, out) = (SharedMut::new(work), SharedMut::new(out));
        (0..tasks).into_par_iter().for_each(|t| {
            // SAFETY (slices): task t owns its workspace and the outputs of
            // its blocks' images.
            let ws = work.slice(t * per_task, per_task);
            for b in task_blocks(t, tasks, blocks) {
                let (i0, images) = (b * per, per.min(s.n - b * per));
                let bc = images * ohw;
                let (cols, rest) = ws.split_at_mut(ckk * bc);
                block_cols(&g, x, (i0, images), cols);
                let dst = out.slice(i0 * slab, images * slab);
                if images == 1 {
                    gemm::seq(dst, (s.cout, bc, ckk), (wt, false), (cols, false), false);
                } else {
                    let wide = &mut rest[..s.cout * bc];
                    gemm::seq(wide, (s.cout, bc, ckk), (wt, false), (cols, false), false);
                    for (ch, row) in wide.chunks(bc).enumerate() {
                        for (i, src) in row.chunks(ohw).enumerate() {
                            dst[i * slab + ch * ohw..][..ohw].copy_from_slice(src);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// `conv_backward` (`x`, `weight`, `dout`, workspace → `dweight` +=,
    /// and `dx` with col2im's ADD / MASK epilogue when `p.dx`): per block,
    /// its columns, the output gradient side by side, the block's weight
    /// gradient added to the task's sum, and the column gradient (in the
    /// columns' place) gathered into `dx`.
    pub(super) fn conv_backward(inv: &Invocation) -> Result<()> {
        let p: super::fused::Params = inv.params()?;
        let s = p.shape();
        let g = geo(&p);
        let (x, wt, dout) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let (work, dweight) = (inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (ohw, hw, ckk, tasks) = (g.oh * g.ow, s.h * s.w, s.ckk(), p.tasks as usize);
        let per_task = super::fused::per_task(&s, p.images as usize);
        need(
            inv,
            &[
                ("x", x.len(), s.in_len()),
                ("weight", wt.len(), s.weight_len()),
                ("dout", dout.len(), s.out_len()),
                ("workspace", work.len(), tasks * per_task + s.weight_len()),
                ("dweight", dweight.len(), s.weight_len()),
            ],
        )?;
        let (has_dx, add, masked) = (p.dx != 0, p.add >= 1, p.add == 2);
        let (dx, addend, mask) = if has_dx {
            let (dx, addend, mask) = (inv.f32_mut(5)?, inv.f32(6)?, inv.f32(7)?);
            need(inv, &[("dx", dx.len(), s.in_len())])?;
            if add {
                need(inv, &[("addend", addend.len(), s.in_len())])?;
            }
            if masked {
                need(inv, &[("mask", mask.len(), s.in_len())])?;
            }
            (Some(SharedMut::new(dx)), addend, mask)
        } else {
            (None, &[][..], &[][..])
        };
        let blocks = s.n.div_ceil(p.images.max(1) as usize);
        let tasks = tasks.min(blocks);
        let (slab, wlen, plane) = (s.cout * ohw, s.cout * ckk, s.cin * hw);
        // The input gradient on the Winograd path, after the weight
        // gradient, in the task's workspace but its weight-gradient sum.
        let wino = if has_dx {
            winograd_sub_block(&s, per_task - wlen)
        } else {
            None
        };
        // After the tasks' workspaces: Wᵀ ([ckk][cout]) for dcol = Wᵀ · dy,
        // or the Winograd path's transformed weights.
        let (work, wt_t) = work.split_at_mut(p.tasks as usize * per_task);
        if wino.is_some() {
            need(inv, &[("workspace", wt_t.len(), winograd::weight_len(&s))])?;
            winograd::weights(wt, &s, true, wt_t);
        } else if has_dx {
            wt_t[..wlen]
                .par_chunks_mut(s.cout)
                .enumerate()
                .for_each(|(r, row)| {
                    for (o, v) in row.iter_mut().enumerate() {
                        *v = wt[o * ckk + r];
                    }
                });
        }
        let u: &[f32] = wt_t;
        let wt_t = &u[..wlen];
        let dims = winograd::Dims {
            h: s.h,
            w: s.w,
            cols: s.cout,
            rows: s.cin,
        };
        let work = SharedMut::new(work);
        (0..tasks).into_par_iter().for_each(|t| {
            // SAFETY (slices): task t owns its workspace and the input
            // gradient of its blocks' images.
            let ws = work.slice(t * per_task, per_task);
            let (ws, sum) = ws.split_at_mut(per_task - wlen);
            for (j, b) in task_blocks(t, tasks, blocks).enumerate() {
                let (i0, images) = block(&p, b);
                let bc = images * ohw;
                let (cols, rest) = ws.split_at_mut(ckk * bc);
                block_cols(&g, x, (i0, images), cols);
                let src = &dout[i0 * slab..(i0 + images) * slab];
                let dy: &[f32] = if images == 1 {
                    src
                } else {
                    let wide = &mut rest[..s.cout * bc];
                    for (ch, row) in wide.chunks_mut(bc).enumerate() {
                        for (i, o) in row.chunks_mut(ohw).enumerate() {
                            o.copy_from_slice(&src[i * slab + ch * ohw..][..ohw]);
                        }
                    }
                    wide
                };
                // dW_t (+)= dy · colsᵀ.
                gemm::seq(sum, (s.cout, ckk, bc), (dy, false), (cols, true), j > 0);
                if wino.is_some() {
                    continue;
                }
                let Some(dx) = &dx else { continue };
                // dcol = Wᵀ · dy, in the columns' place.
                gemm::seq(cols, (ckk, bc, s.cout), (wt_t, false), (dy, false), false);
                let out = dx.slice(i0 * plane, images * plane);
                for (q, o) in out.chunks_mut(hw).enumerate() {
                    let (b, c) = (q / s.cin, q % s.cin);
                    g.col2im_plane(&cols[b * ohw..], bc, c, o);
                    if add {
                        add_branch(o, addend, mask, masked, (i0 * s.cin + q) * hw);
                    }
                }
            }
            if let (Some(per), Some(dx)) = (wino, &dx) {
                // The task's images, whose blocks are contiguous.
                let range = task_blocks(t, tasks, blocks);
                let a = block(&p, range.start).0;
                let (l0, ln) = block(&p, range.end - 1);
                let out = dx.slice(a * plane, (l0 + ln - a) * plane);
                let src = &dout[a * slab..(l0 + ln) * slab];
                winograd::run(dims, u, src, l0 + ln - a, per, ws, out, |q, o| {
                    if add {
                        add_branch(o, addend, mask, masked, (a * s.cin + q) * hw);
                    }
                });
            }
        });
        // dweight += Σ_t sum_t, the tasks' sums in task order.
        let sums = work;
        let at = per_task - wlen;
        dweight[..wlen]
            .par_chunks_mut(4096)
            .enumerate()
            .for_each(|(r, o)| {
                for (j, v) in o.iter_mut().enumerate() {
                    let i = r * 4096 + j;
                    let mut acc = 0.0f32;
                    for t in 0..tasks {
                        acc += sums.get(t * per_task + at + i);
                    }
                    *v += acc;
                }
            });
        Ok(())
    }
}
