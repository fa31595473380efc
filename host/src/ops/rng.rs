//! Philox random numbers on the GPU (`shaders/wgsl/rng.wgsl` and the shared
//! `include/philox.wgsl`). CPU twin: scorecl-core's [`Philox`]; tests:
//! `host/tests/rng.rs` (words and uniforms bit-exact, normals to 1e-6).

use bytemuck::Zeroable;
use scorecl_core::rng::Philox;
use scorecl_shaders::RNG;

use crate::error::{Error, Result};
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        key: [u32; 2],
        stream: [u32; 2],
        start_lo: u32,
        start_hi: u32,
        n: u32,
        _p0: u32,
        mean: f32,
        stddev: f32,
        _p1: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn params(p: &Philox, start: u64, n: usize, mean: f32, std: f32) -> Params {
    Params {
        key: p.key,
        stream: p.stream,
        start_lo: start as u32,
        start_hi: (start >> 32) as u32,
        n: n as u32,
        mean,
        stddev: std,
        ..Zeroable::zeroed()
    }
}

/// `out[i] = Philox word start + i` (u32 tensor).
pub fn fill_u32(step: &mut Step, rng: &Philox, start: u64, out: &Tensor) -> Result<()> {
    if out.dtype() != DType::U32 {
        return Err(Error::shape("fill_u32", format!("{out:?} is not u32")));
    }
    let k = step.gpu().kernel(&RNG, "fill_u32", &[], &[])?;
    step.dispatch(
        &k,
        &params(rng, start, out.len(), 0.0, 1.0),
        crate::bind![words = out],
        grid(out.len(), 256),
    )
}

/// `out[i] = uniform_at(start + i)` in [0, 1).
pub fn fill_uniform(step: &mut Step, rng: &Philox, start: u64, out: &Tensor) -> Result<()> {
    let k = step.gpu().kernel(&RNG, "fill_uniform", &[], &[])?;
    step.dispatch(
        &k,
        &params(rng, start, out.len(), 0.0, 1.0),
        crate::bind![out],
        grid(out.len(), 256),
    )
}

/// `out[i] = mean + std·normal_at(start + i)`.
pub fn fill_normal(
    step: &mut Step,
    rng: &Philox,
    start: u64,
    mean: f32,
    std: f32,
    out: &Tensor,
) -> Result<()> {
    let k = step.gpu().kernel(&RNG, "fill_normal", &[], &[])?;
    step.dispatch(
        &k,
        &params(rng, start, out.len(), mean, std),
        crate::bind![out],
        grid(out.len(), 256),
    )
}

/// Native CPU twins of `fill_u32`, `fill_uniform` and `fill_normal`: the
/// core's Philox (the GPU's bit for bit for words and uniforms).
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{map, need, Invocation, KernelFn, SharedMut, CHUNK};
    use rayon::prelude::*;
    use scorecl_core::rng::Philox;

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "fill_u32" => fill_u32,
            "fill_uniform" => fill_uniform,
            "fill_normal" => fill_normal,
            _ => return None,
        })
    }

    fn stream(p: &Params) -> (Philox, u64) {
        let rng = Philox {
            key: p.key,
            stream: p.stream,
        };
        (rng, p.start_lo as u64 | (p.start_hi as u64) << 32)
    }

    fn fill_u32(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let out = inv.u32_mut(0)?;
        let n = p.n as usize;
        need(inv, &[("words", out.len(), n)])?;
        let (rng, start) = stream(&p);
        let out = SharedMut::new(out);
        crate::native::for_each(n, 8, |i| {
            out.set(i, rng.u32_at(start.wrapping_add(i as u64)))
        });
        Ok(())
    }

    fn fill_uniform(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let out = inv.f32_mut(0)?;
        need(inv, &[("out", out.len(), p.n as usize)])?;
        let (rng, start) = stream(&p);
        map(out, p.n as usize, |i| {
            rng.uniform_at(start.wrapping_add(i as u64))
        });
        Ok(())
    }

    fn fill_normal(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let out = inv.f32_mut(0)?;
        need(inv, &[("out", out.len(), p.n as usize)])?;
        let (rng, start) = stream(&p);
        // Chunks of Philox::fill_normal (each block and Box–Muller pair
        // once): the values of normal_at(start + i).
        let fill = |c: usize, o: &mut [f32]| {
            rng.fill_normal(start.wrapping_add((c * CHUNK) as u64), o);
            for v in o.iter_mut() {
                *v = p.mean + p.stddev * *v;
            }
        };
        let out = &mut out[..p.n as usize];
        if out.len() <= CHUNK {
            fill(0, out);
        } else {
            out.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, o)| fill(c, o));
        }
        Ok(())
    }
}
