//! Elementwise kernels (`shaders/wgsl/elementwise.wgsl`). CPU twins: [`cpu`];
//! tests: `host/tests/elementwise.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::{Define, ELEMENTWISE};

use crate::error::{Error, Result};
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        n: u32,
        alpha: f32,
        beta: f32,
        cols: u32,
        block: u32,
        _p: [u32; 3],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn params(n: usize, alpha: f32, beta: f32) -> Params {
    Params {
        n: n as u32,
        alpha,
        beta,
        ..Zeroable::zeroed()
    }
}

fn run(
    step: &mut Step,
    entry: &'static str,
    p: &Params,
    tensors: &[(&str, &Tensor)],
) -> Result<()> {
    let k = step.gpu().kernel(&ELEMENTWISE, entry, &[], &[])?;
    step.dispatch(&k, p, tensors, grid(p.n as usize, 256))
}

fn same(what: &str, n: usize, ts: &[&Tensor]) -> Result<()> {
    ts.iter().try_for_each(|t| t.expect_len(what, n))
}

/// `out = alpha·a + beta·b`.
pub fn axpby(
    step: &mut Step,
    alpha: f32,
    a: &Tensor,
    beta: f32,
    b: &Tensor,
    out: &Tensor,
) -> Result<()> {
    same("axpby", a.len(), &[b, out])?;
    run(
        step,
        "axpby",
        &params(a.len(), alpha, beta),
        crate::bind![a, b, out],
    )
}

/// `out = a + b`.
pub fn add(step: &mut Step, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    axpby(step, 1.0, a, 1.0, b, out)
}

/// `out = alpha·a`.
pub fn scale(step: &mut Step, alpha: f32, a: &Tensor, out: &Tensor) -> Result<()> {
    same("scale", a.len(), &[out])?;
    run(
        step,
        "scale",
        &params(a.len(), alpha, 0.0),
        crate::bind![a, out],
    )
}

/// `out = a·b`.
pub fn mul(step: &mut Step, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    same("mul", a.len(), &[b, out])?;
    run(
        step,
        "mul",
        &params(a.len(), 0.0, 0.0),
        crate::bind![a, b, out],
    )
}

/// `out = max(a + b, 0)`.
pub fn add_relu(step: &mut Step, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    same("add_relu", a.len(), &[b, out])?;
    run(
        step,
        "add_relu",
        &params(a.len(), 0.0, 0.0),
        crate::bind![a, b, out],
    )
}

/// `out = max(x, 0)`.
pub fn relu(step: &mut Step, x: &Tensor, out: &Tensor) -> Result<()> {
    same("relu", x.len(), &[out])?;
    run(
        step,
        "relu",
        &params(x.len(), 0.0, 0.0),
        crate::bind![a = x, out],
    )
}

/// `dx = g·[x > 0]` (x: the ReLU's input).
pub fn relu_backward(step: &mut Step, x: &Tensor, g: &Tensor, dx: &Tensor) -> Result<()> {
    same("relu_backward", x.len(), &[g, dx])?;
    run(
        step,
        "relu_backward",
        &params(x.len(), 0.0, 0.0),
        crate::bind![a = x, b = g, out = dx],
    )
}

/// `out = value` everywhere.
pub fn fill(step: &mut Step, value: f32, out: &Tensor) -> Result<()> {
    if value.to_bits() == 0 && out.dtype() == crate::tensor::DType::F32 {
        // +0.0 is all-zero bytes: a buffer clear, no dispatch.
        step.clear(out);
        return Ok(());
    }
    run(
        step,
        "fill",
        &params(out.len(), value, 0.0),
        crate::bind![out],
    )
}

/// `out[r, j] = a[r, j] + alpha·v[g, j]` for rows r of `a` (cols columns),
/// where row group g = r / rows_per_group: one vector per group of rows
/// (`rows_per_group` = all rows for a single vector).
pub fn add_cols(
    step: &mut Step,
    a: &Tensor,
    alpha: f32,
    v: &Tensor,
    cols: usize,
    rows_per_group: usize,
    out: &Tensor,
) -> Result<()> {
    same("add_cols", a.len(), &[out])?;
    if cols == 0 || rows_per_group == 0 || a.len() % (cols * rows_per_group) != 0 {
        return Err(Error::shape(
            "add_cols",
            format!("{a:?} is not whole groups of {rows_per_group} rows × {cols}"),
        ));
    }
    v.expect_len("add_cols vector", a.len() / rows_per_group)?;
    let p = Params {
        cols: cols as u32,
        block: (cols * rows_per_group) as u32,
        ..params(a.len(), alpha, 0.0)
    };
    run(step, "add_cols", &p, crate::bind![a, b = v, out])
}

/// `out[i] = alpha·v[i / block]`: one value of `v` per block of `block`
/// elements of `out`.
pub fn expand(step: &mut Step, alpha: f32, v: &Tensor, block: usize, out: &Tensor) -> Result<()> {
    if block == 0 || out.len() % block != 0 {
        return Err(Error::shape(
            "expand",
            format!("{out:?} is not whole blocks of {block}"),
        ));
    }
    v.expect_len("expand values", out.len() / block)?;
    let p = Params {
        block: block as u32,
        ..params(out.len(), alpha, 0.0)
    };
    run(step, "expand", &p, crate::bind![b = v, out])
}

/// `out[i] = alpha·a[i] / v[i / block]`.
pub fn div_blocks(
    step: &mut Step,
    alpha: f32,
    a: &Tensor,
    v: &Tensor,
    block: usize,
    out: &Tensor,
) -> Result<()> {
    same("div_blocks", a.len(), &[out])?;
    if block == 0 || a.len() % block != 0 {
        return Err(Error::shape(
            "div_blocks",
            format!("{a:?} is not whole blocks of {block}"),
        ));
    }
    v.expect_len("div_blocks divisors", a.len() / block)?;
    let p = Params {
        block: block as u32,
        ..params(a.len(), alpha, 0.0)
    };
    run(step, "div_blocks", &p, crate::bind![a, b = v, out])
}

/// f32 → f16 (needs shader-f16 on the device).
pub fn to_f16(step: &mut Step, x: &Tensor, out: &Tensor) -> Result<()> {
    if !step.gpu().caps.f16 || out.dtype() != DType::F16 {
        return Err(Error::shape("to_f16", "needs shader-f16 and an f16 output"));
    }
    same("to_f16", x.len(), &[out])?;
    let k = step
        .gpu()
        .kernel(&ELEMENTWISE, "to_f16", &[Define::F16], &[])?;
    step.dispatch(
        &k,
        &params(x.len(), 0.0, 0.0),
        crate::bind![a = x, h_out = out],
        grid(x.len(), 256),
    )
}

/// f16 → f32 (needs shader-f16 on the device).
pub fn from_f16(step: &mut Step, x: &Tensor, out: &Tensor) -> Result<()> {
    if !step.gpu().caps.f16 || x.dtype() != DType::F16 {
        return Err(Error::shape(
            "from_f16",
            "needs shader-f16 and an f16 input",
        ));
    }
    same("from_f16", x.len(), &[out])?;
    let k = step
        .gpu()
        .kernel(&ELEMENTWISE, "from_f16", &[Define::F16], &[])?;
    step.dispatch(
        &k,
        &params(x.len(), 0.0, 0.0),
        crate::bind![out, h_in = x],
        grid(x.len(), 256),
    )
}

/// CPU twins.
#[cfg(feature = "reference")]
pub mod cpu {
    use scorecl_core::{relu as relu_of, relu_passes};

    /// `alpha·a + beta·b`.
    pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| alpha * x + beta * y).collect()
    }

    /// `a·b`.
    pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x * y).collect()
    }

    /// `max(a + b, 0)`.
    pub fn add_relu(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| relu_of(x + y)).collect()
    }

    /// `max(x, 0)`, NaN kept (PyTorch's `relu`).
    pub fn relu(x: &[f32]) -> Vec<f32> {
        x.iter().map(|v| relu_of(*v)).collect()
    }

    /// `g·[x > 0 or x is NaN]` (PyTorch's `threshold_backward`).
    pub fn relu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(g)
            .map(|(x, g)| if relu_passes(*x) { *g } else { 0.0 })
            .collect()
    }

    /// [`super::add_cols`].
    pub fn add_cols(
        a: &[f32],
        alpha: f32,
        v: &[f32],
        cols: usize,
        rows_per_group: usize,
    ) -> Vec<f32> {
        let block = cols * rows_per_group;
        a.iter()
            .enumerate()
            .map(|(i, x)| x + alpha * v[(i / block) * cols + i % cols])
            .collect()
    }
}

/// Native CPU twins of the entry points (`crate::native`): same bindings
/// and parameters, the same f32 operation per element.
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{map, map1, map2, need, Invocation, KernelFn};
    use scorecl_core::{relu as relu_of, relu_passes};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "axpby" => axpby,
            "scale" => scale,
            "mul" => mul,
            "add_relu" => add_relu,
            "relu" => relu,
            "relu_backward" => relu_backward,
            "fill" => fill,
            "add_cols" => add_cols,
            "expand" => expand,
            "div_blocks" => div_blocks,
            _ => return None,
        })
    }

    /// Bindings `a`, `b`, `out` of a two-input kernel, `a` and `out`
    /// checked for `n`, `b` for `b_len(n, block)`.
    #[allow(clippy::type_complexity)]
    fn binary<'a>(
        inv: &'a Invocation,
        b_len: impl Fn(&Params) -> usize,
    ) -> Result<(Params, &'a [f32], &'a [f32], &'a mut [f32])> {
        let p: Params = inv.params()?;
        let (a, b, out) = (inv.f32(0)?, inv.f32(1)?, inv.f32_mut(2)?);
        let n = p.n as usize;
        need(
            inv,
            &[
                ("a", a.len(), n),
                ("b", b.len(), b_len(&p)),
                ("out", out.len(), n),
            ],
        )?;
        Ok((p, a, b, out))
    }

    fn same(p: &Params) -> usize {
        p.n as usize
    }

    /// One value per block of `block` elements (at least one element: the
    /// host refuses block 0, which would divide by zero here).
    fn blocks(p: &Params) -> usize {
        (p.n as usize).div_ceil(p.block.max(1) as usize)
    }

    /// Bindings `a`, `out` of a one-input kernel, checked for `n`.
    fn unary<'a>(inv: &'a Invocation) -> Result<(Params, &'a [f32], &'a mut [f32])> {
        let p: Params = inv.params()?;
        let (a, out) = (inv.f32(0)?, inv.f32_mut(1)?);
        let n = p.n as usize;
        need(inv, &[("a", a.len(), n), ("out", out.len(), n)])?;
        Ok((p, a, out))
    }

    fn axpby(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, same)?;
        map2(out, a, b, p.n as usize, |x, y| p.alpha * x + p.beta * y);
        Ok(())
    }

    fn scale(inv: &Invocation) -> Result<()> {
        let (p, a, out) = unary(inv)?;
        map1(out, a, p.n as usize, |x| p.alpha * x);
        Ok(())
    }

    fn mul(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, same)?;
        map2(out, a, b, p.n as usize, |x, y| x * y);
        Ok(())
    }

    fn add_relu(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, same)?;
        map2(out, a, b, p.n as usize, |x, y| relu_of(x + y));
        Ok(())
    }

    fn relu(inv: &Invocation) -> Result<()> {
        let (p, a, out) = unary(inv)?;
        map1(out, a, p.n as usize, relu_of);
        Ok(())
    }

    fn relu_backward(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, same)?;
        map2(out, a, b, p.n as usize, |x, g| {
            if relu_passes(x) {
                g
            } else {
                0.0
            }
        });
        Ok(())
    }

    fn fill(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let out = inv.f32_mut(0)?;
        need(inv, &[("out", out.len(), p.n as usize)])?;
        map(out, p.n as usize, |_| p.alpha);
        Ok(())
    }

    fn add_cols(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, |p| blocks(p) * p.cols as usize)?;
        let (cols, block) = (p.cols as usize, p.block.max(1) as usize);
        map(out, p.n as usize, |i| {
            a[i] + p.alpha * b[(i / block) * cols + i % cols]
        });
        Ok(())
    }

    fn expand(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (b, out) = (inv.f32(0)?, inv.f32_mut(1)?);
        let (n, block) = (p.n as usize, p.block.max(1) as usize);
        need(inv, &[("out", out.len(), n), ("b", b.len(), blocks(&p))])?;
        map(out, n, |i| p.alpha * b[i / block]);
        Ok(())
    }

    fn div_blocks(inv: &Invocation) -> Result<()> {
        let (p, a, b, out) = binary(inv, blocks)?;
        let block = p.block.max(1) as usize;
        map(out, p.n as usize, |i| p.alpha * a[i] / b[i / block]);
        Ok(())
    }
}
