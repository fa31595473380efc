//! The WGSL compute kernels of scorecl, one `.wgsl` file per family under
//! `shaders/wgsl/`, shipped as source strings.
//!
//! Optional paths are written inline between `//#if NAME`, `//#else` and
//! `//#endif` lines; [`Module::source`] keeps the branch each define selects
//! and prepends the `enable` directives the variant needs. Shared code (the
//! Philox generator, workgroup reductions) lives in `wgsl/include/` and is
//! pulled in with `//#include NAME`. [`MODULES`] lists
//! every module with every variant the host builds, and
//! `tests/naga_validate.rs` parses and validates each of them with naga (no
//! GPU needed).

/// A define that switches on an optional adapter feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Define {
    /// Subgroup operations. naga 30 offers the subgroup builtins when the
    /// device has the capability and rejects `enable subgroups;`, so this
    /// define adds no directive.
    Subgroups,
    /// 16-bit floats in shaders (`enable f16;`).
    F16,
    /// GEMM operand A stored as f16 (read into f32 arithmetic); needs
    /// shader-f16.
    HalfA,
    /// GEMM operand B stored as f16 (read into f32 arithmetic); needs
    /// shader-f16.
    HalfB,
    /// wgpu's experimental cooperative matrices
    /// (`enable wgpu_cooperative_matrix;`; Metal and Vulkan only).
    Coop,
}

impl Define {
    /// The name used after `//#if`.
    pub fn name(self) -> &'static str {
        match self {
            Define::Subgroups => "SUBGROUPS",
            Define::F16 => "F16",
            Define::HalfA => "HALF_A",
            Define::HalfB => "HALF_B",
            Define::Coop => "COOP",
        }
    }

    /// Whether the define needs the adapter's shader-f16 feature.
    pub fn needs_f16(self) -> bool {
        matches!(self, Define::F16 | Define::HalfA | Define::HalfB)
    }

    /// The WGSL directive the define needs, if any.
    pub fn directive(self) -> Option<&'static str> {
        match self {
            Define::Subgroups => None,
            Define::F16 | Define::HalfA | Define::HalfB => Some("enable f16;"),
            Define::Coop => Some("enable wgpu_cooperative_matrix;"),
        }
    }
}

/// One WGSL file (a kernel family).
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// Family name, also the file stem.
    pub name: &'static str,
    /// The raw source with `//#if` blocks.
    pub raw: &'static str,
    /// The variants the host builds: each is a set of defines (the empty
    /// set, the portable f32 path, is always first).
    pub variants: &'static [&'static [Define]],
}

impl Module {
    /// The source of one variant: directives first, then the kept lines
    /// with every `//#include` expanded.
    pub fn source(&self, defines: &[Define]) -> String {
        let mut out = String::new();
        let mut sorted = defines.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut directives: Vec<&str> = sorted.iter().filter_map(|d| d.directive()).collect();
        directives.dedup();
        for d in directives {
            out.push_str(d);
            out.push('\n');
        }
        out.push_str(&preprocess(&expand_includes(self.raw), &sorted));
        out
    }
}

/// Keeps the lines of the `//#if` branches that `defines` select. Nested
/// blocks are supported; directive lines become empty lines so that line
/// numbers in naga's messages match the file.
pub fn preprocess(src: &str, defines: &[Define]) -> String {
    let on = |name: &str| defines.iter().any(|d| d.name() == name.trim());
    // Stack of (this block active, parent active, some branch taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|(a, _)| *a);
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("//#if ") {
            stack.push((on(name), false));
            out.push('\n');
        } else if t.starts_with("//#else") {
            if let Some(top) = stack.last_mut() {
                top.0 = !top.0;
            }
            out.push('\n');
        } else if t.starts_with("//#endif") {
            stack.pop();
            out.push('\n');
        } else {
            if active(&stack) {
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

/// Shared WGSL snippets, by the name used after `//#include`.
pub const INCLUDES: &[(&str, &str)] = &[
    ("philox", include_str!("../wgsl/include/philox.wgsl")),
    ("wg_reduce", include_str!("../wgsl/include/wg_reduce.wgsl")),
    ("nan", include_str!("../wgsl/include/nan.wgsl")),
];

/// Replaces each `//#include NAME` line by the snippet's lines (snippets
/// do not include others). An unknown name is left as a comment, so naga's
/// error points at the missing function.
pub fn expand_includes(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let t = line.trim_start();
        match t.strip_prefix("//#include ") {
            Some(name) => match INCLUDES.iter().find(|(n, _)| *n == name.trim()) {
                Some((_, body)) => {
                    out.push_str(body);
                    if !body.ends_with('\n') {
                        out.push('\n');
                    }
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            },
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

macro_rules! module {
    ($name:literal, [$($v:expr),* $(,)?]) => {
        Module {
            name: $name,
            raw: include_str!(concat!("../wgsl/", $name, ".wgsl")),
            variants: &[$($v),*],
        }
    };
}

const F32: &[Define] = &[];
const SUBGROUPS: &[Define] = &[Define::Subgroups];
const F16: &[Define] = &[Define::F16];
const HALF_B: &[Define] = &[Define::HalfB];
const HALF_AB: &[Define] = &[Define::HalfA, Define::HalfB];
const COOP: &[Define] = &[Define::Coop];
const COOP_F16: &[Define] = &[Define::F16, Define::HalfA, Define::HalfB, Define::Coop];

/// Elementwise kernels (add, scale, mul, ReLU, fill, copy, casts).
pub const ELEMENTWISE: Module = module!("elementwise", [F32, F16]);

/// Dense matrix multiply with transposes, batch, bias/ReLU epilogue; the
/// `HALF_*` variants read f16 operands (f16 storage, f32 accumulation); the
/// `COOP` variants hold the cooperative-matrix kernel (8 × 8 f32 fragments
/// for f32 operands; 16 × 16 f16 → f32 fragments for f16 operands).
pub const GEMM: Module = module!("gemm", [F32, SUBGROUPS, HALF_B, HALF_AB, COOP, COOP_F16]);

/// Reductions along an axis (sum, mean, sum of squares).
pub const REDUCE: Module = module!("reduce", [F32, SUBGROUPS]);

/// Row operations: L2 normalisation forward/backward, log-sum-exp.
pub const ROWS: Module = module!("rows", [F32, SUBGROUPS]);

/// Philox random words, uniforms and normals.
pub const RNG: Module = module!("rng", [F32]);

/// Optimizer updates: SGD, LARS, Adam/AdamW.
pub const OPTIM: Module = module!("optim", [F32]);

/// Denoising score matching: noising with Philox, loss and gradient.
pub const DSM: Module = module!("dsm", [F32, SUBGROUPS]);

/// ScoreCL pair weights: the per-view score statistic and weights (score, uniform,
/// shuffled).
pub const PAIR_WEIGHTS: Module = module!("pair_weights", [F32, SUBGROUPS]);

/// Weighted NT-Xent (SimCLR) row and gradient kernels.
pub const SIMCLR: Module = module!("simclr", [F32, SUBGROUPS]);

/// Weighted SimSiam.
pub const SIMSIAM: Module = module!("simsiam", [F32, SUBGROUPS]);

/// Weighted VICReg: invariance term, statistics, variance gradient.
pub const VICREG: Module = module!("vicreg", [F32, SUBGROUPS]);

/// Weighted W-MSE: Cholesky whitening per chunk and its gradient.
pub const WMSE: Module = module!("wmse", [F32, SUBGROUPS]);

/// im2col / col2im for convolutions. The `F16` variant's im2col writes f16
/// columns.
pub const CONV: Module = module!("conv", [F32, F16]);

/// Max pooling forward and backward.
pub const POOL: Module = module!("pool", [F32]);

/// Batch normalisation (training and evaluation), forward and backward.
pub const BATCHNORM: Module = module!("batchnorm", [F32, SUBGROUPS]);

/// Data augmentation from the core's per-sample parameters.
pub const AUGMENT: Module = module!("augment", [F32]);

/// The score network's U-Net kernels: FiLM conditioning, nearest ×2
/// upsampling.
pub const UNET: Module = module!("unet", [F32, SUBGROUPS]);

/// Weighted k-NN: top-k merge over similarity tiles, class vote.
pub const KNN: Module = module!("knn", [F32]);

/// Softmax cross-entropy and its gradient (linear probe).
pub const XENT: Module = module!("xent", [F32]);

/// Every module the host ships, with every variant it builds.
pub const MODULES: &[Module] = &[
    ELEMENTWISE,
    GEMM,
    REDUCE,
    ROWS,
    RNG,
    OPTIM,
    DSM,
    PAIR_WEIGHTS,
    SIMCLR,
    SIMSIAM,
    VICREG,
    WMSE,
    CONV,
    POOL,
    BATCHNORM,
    AUGMENT,
    UNET,
    KNN,
    XENT,
];

/// Looks a module up by name.
pub fn module(name: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.name == name)
}
