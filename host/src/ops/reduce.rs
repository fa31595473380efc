//! Reductions along an axis (`shaders/wgsl/reduce.wgsl`). CPU twin:
//! [`cpu::reduce`]; tests: `host/tests/reduce.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::REDUCE;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

/// What to reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Σ x
    Sum,
    /// Σ x / axis
    Mean,
    /// Σ x²
    SumSq,
}

kernel_params! {
    struct Params {
        outer: u32,
        axis: u32,
        inner: u32,
        square: u32,
        scale: f32,
        offset: u32,
        accumulate: u32,
        _p: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Reduces `x` viewed as `[outer, axis, inner]` along `axis` into `out`
/// (`[outer, inner]`), times `scale` (1 for a plain reduction).
pub fn reduce(
    step: &mut Step,
    x: &Tensor,
    dims: [usize; 3],
    op: Reduction,
    scale: f32,
    out: &Tensor,
) -> Result<()> {
    out.expect_len("reduce output", dims[0] * dims[2])?;
    reduce_at(step, x, dims, op, scale, out, 0)
}

/// As [`reduce`], adding the results to `out` (gradient accumulation).
pub fn reduce_add(
    step: &mut Step,
    x: &Tensor,
    dims: [usize; 3],
    op: Reduction,
    scale: f32,
    out: &Tensor,
) -> Result<()> {
    out.expect_len("reduce output", dims[0] * dims[2])?;
    reduce_impl(step, x, dims, op, scale, out, 0, true)
}

/// As [`reduce`], writing the `outer · inner` results at `out[offset..]`.
pub fn reduce_at(
    step: &mut Step,
    x: &Tensor,
    dims: [usize; 3],
    op: Reduction,
    scale: f32,
    out: &Tensor,
    offset: usize,
) -> Result<()> {
    reduce_impl(step, x, dims, op, scale, out, offset, false)
}

#[allow(clippy::too_many_arguments)]
fn reduce_impl(
    step: &mut Step,
    x: &Tensor,
    dims: [usize; 3],
    op: Reduction,
    scale: f32,
    out: &Tensor,
    offset: usize,
    accumulate: bool,
) -> Result<()> {
    let [outer, axis, inner] = dims;
    x.expect_len("reduce input", outer * axis * inner)?;
    if out.len() < offset + outer * inner {
        return Err(crate::Error::shape(
            "reduce output",
            format!(
                "{out:?} too short for {} results at offset {offset}",
                outer * inner
            ),
        ));
    }
    let gpu = step.gpu();
    let defines = gpu.subgroup_defines();
    let p = Params {
        outer: outer as u32,
        axis: axis as u32,
        inner: inner as u32,
        square: (op == Reduction::SumSq) as u32,
        scale: if op == Reduction::Mean {
            scale / axis.max(1) as f32
        } else {
            scale
        },
        offset: offset as u32,
        accumulate: accumulate as u32,
        ..Zeroable::zeroed()
    };
    if inner == 1 {
        let k = gpu.kernel(&REDUCE, "reduce_rows", defines, &[])?;
        step.dispatch(&k, &p, crate::bind![x, out], grid(outer, 1))
    } else {
        let k = gpu.kernel(&REDUCE, "reduce_cols", defines, &[])?;
        step.dispatch(&k, &p, crate::bind![x, out], grid(outer * inner, 64))
    }
}

/// Σ over all of `x` into the one-element `out`, times `scale`.
pub fn sum_all(step: &mut Step, x: &Tensor, scale: f32, out: &Tensor) -> Result<()> {
    reduce(step, x, [1, x.len(), 1], Reduction::Sum, scale, out)
}

/// CPU twin.
#[cfg(feature = "reference")]
pub mod cpu {
    use super::Reduction;

    /// The same reduction in f64.
    pub fn reduce(
        x: &[f32],
        [outer, axis, inner]: [usize; 3],
        op: Reduction,
        scale: f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; outer * inner];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = 0.0f64;
                for a in 0..axis {
                    let v = x[(o * axis + a) * inner + i] as f64;
                    acc += if op == Reduction::SumSq { v * v } else { v };
                }
                let s = if op == Reduction::Mean {
                    scale as f64 / axis.max(1) as f64
                } else {
                    scale as f64
                };
                out[o * inner + i] = (acc * s) as f32;
            }
        }
        out
    }
}

/// Native CPU twins of `reduce_rows` and `reduce_cols`.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, Invocation, KernelFn};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        match entry {
            "reduce_rows" | "reduce_cols" => Some(reduce),
            _ => None,
        }
    }

    /// Both entry points: `out[offset + o·inner + i] = (prev) + scale ·
    /// Σ_a f(x[(o·axis + a)·inner + i])`.
    fn reduce(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, out) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (outer, axis, inner) = (p.outer as usize, p.axis as usize, p.inner as usize);
        let off = p.offset as usize;
        need(
            inv,
            &[
                ("x", x.len(), outer * axis * inner),
                ("out", out.len(), off + outer * inner),
            ],
        )?;
        let sq = p.square != 0;
        let f = |v: f32| if sq { v * v } else { v };
        let acc = p.accumulate != 0;
        let out = &mut out[off..off + outer * inner];
        if inner == 1 {
            rows_mut(out, outer, 1, axis, |o, r| {
                let base = o * axis;
                let total = sum(axis, |a| f(x[base + a]));
                r[0] = if acc { r[0] } else { 0.0 } + total * p.scale;
            });
        } else {
            rows_mut(out, outer, inner, axis * inner, |o, r| {
                let base = o * axis * inner;
                if acc {
                    for (i, v) in r.iter_mut().enumerate() {
                        let mut a_sum = 0.0f32;
                        for a in 0..axis {
                            a_sum += f(x[base + a * inner + i]);
                        }
                        *v += a_sum * p.scale;
                    }
                    return;
                }
                // The same sums in the same order (a = 0, 1, …), a row of
                // x at a time.
                r.fill(0.0);
                for a in 0..axis {
                    let row = &x[base + a * inner..base + (a + 1) * inner];
                    r.iter_mut().zip(row).for_each(|(v, xv)| *v += f(*xv));
                }
                r.iter_mut().for_each(|v| *v *= p.scale);
            });
        }
        Ok(())
    }
}
