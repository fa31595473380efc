//! Weighted W-MSE (Ermolov et al., htdt/self-supervised formulation).
//!
//! Each view is whitened separately within chunks of `w_size` rows: for a
//! chunk X (m × d), centre `Xc = X − μ`, `C = XcᵀXc/(m−1)`,
//! `C' = (1−ε)C + εI = LLᵀ` (Cholesky), `Ẑ = Xc·L⁻ᵀ` (each row solves
//! `L ẑ = xc`). Then `L = (1/n) Σᵢ wᵢ (2 − 2 cos(ẑ1ᵢ, ẑ2ᵢ))`.
//!
//! Gradient: with `G = ∂L/∂Ẑ` of a chunk,
//! * direct path: `∂L/∂Xc += G L⁻¹`;
//! * through the factor: `Lᵀ L̄ = −GᵀẐ`, and the Cholesky backward
//!   (Murray 2016, as PyTorch): `P = tril(LᵀL̄)`, `S = ½(P + tril(P,−1)ᵀ)`,
//!   `Ā = L⁻ᵀ S L⁻¹`, `C̄ = (1−ε) sym(Ā)`, `∂L/∂Xc += 2 Xc C̄ /(m−1)`;
//! * through the centring: subtract the chunk mean of `∂L/∂Xc`.
//!
//! The factor, the whitened rows and the backward intermediates are kept in
//! f64 (the scratch is `[f64]`): a chunk covariance with condition number
//! κ amplifies storage rounding by κ, and m ≈ d chunks reach κ ~ 1e5.
//! A covariance whose Cholesky pivot is not above `d · ε_f32 · max diag`
//! (numerically singular at f32 input precision) is an error, never a NaN.

use crate::math::{check_len, check_scratch, check_weights, weight, NORM_EPS};
use crate::{CoreError, GradPair, Result, Views};

/// Configuration of W-MSE.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct WmseConfig {
    /// Shrinkage towards the identity, `cov' = (1−ε)cov + εI`, in [0, 1).
    pub eps: f32,
    /// Rows per whitening chunk (≥ 2; must divide the batch).
    pub w_size: usize,
}

impl Default for WmseConfig {
    fn default() -> Self {
        WmseConfig {
            eps: 0.0,
            w_size: 128,
        }
    }
}

impl WmseConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && (0.0..1.0).contains(&self.eps)) {
            return Err(CoreError::Config {
                field: "eps",
                allowed: "a value in [0, 1)",
            });
        }
        if self.w_size < 2 {
            return Err(CoreError::Config {
                field: "w_size",
                allowed: "at least 2 rows",
            });
        }
        Ok(())
    }
}

/// Scratch length (f64 elements) [`loss`] needs.
pub fn scratch_len(n: usize, d: usize) -> usize {
    2 * n * d + 2 * d * d + 3 * d
}

/// Scratch length (f64 elements) [`whiten`] needs.
pub fn whiten_scratch_len(d: usize) -> usize {
    d * d + 2 * d
}

#[inline]
fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Row `k` of chunk `c` in the caller's order.
#[inline]
fn chunk_row(order: Option<&[u32]>, m: usize, c: usize, k: usize) -> usize {
    match order {
        Some(o) => o[c * m + k] as usize,
        None => c * m + k,
    }
}

/// Chunk mean into `mean`, shrunk covariance into the lower triangle of `l`,
/// then its Cholesky factor in place. `Err(column)` where a pivot fails.
fn factor(
    x: &[f32],
    rows: &dyn Fn(usize) -> usize,
    m: usize,
    d: usize,
    eps: f32,
    mean: &mut [f64],
    l: &mut [f64],
) -> core::result::Result<(), usize> {
    for (j, mu) in mean.iter_mut().enumerate() {
        let s: f64 = (0..m).map(|k| x[rows(k) * d + j] as f64).sum();
        *mu = s / m as f64;
    }
    let eps = eps as f64;
    let mut max_diag = 0.0f64;
    for j in 0..d {
        for t in 0..d {
            if t > j {
                l[j * d + t] = 0.0;
                continue;
            }
            let mut s = 0.0f64;
            for k in 0..m {
                let r = rows(k) * d;
                s += (x[r + j] as f64 - mean[j]) * (x[r + t] as f64 - mean[t]);
            }
            let mut c = (1.0 - eps) * s / (m - 1) as f64;
            if j == t {
                c += eps;
                max_diag = max_diag.max(c);
            }
            l[j * d + t] = c;
        }
    }
    if !(max_diag > 0.0 && max_diag.is_finite()) {
        return Err(0);
    }
    let tol = d as f64 * f32::EPSILON as f64 * max_diag;
    for j in 0..d {
        for t in 0..=j {
            let s = l[j * d + t] - dot64(&l[j * d..j * d + t], &l[t * d..t * d + t]);
            if t < j {
                l[j * d + t] = s / l[t * d + t];
            } else if s > tol && s.is_finite() {
                l[j * d + j] = libm::sqrt(s);
            } else {
                return Err(j);
            }
        }
    }
    Ok(())
}

/// Solves `L y = v` in place (forward substitution), L lower (d × d).
fn solve_lower(l: &[f64], d: usize, v: &mut [f64]) {
    for j in 0..d {
        let s = v[j] - dot64(&l[j * d..j * d + j], &v[..j]);
        v[j] = s / l[j * d + j];
    }
}

/// Solves `Lᵀ y = v` in place (back substitution) for a vector with stride.
fn solve_upper_t(l: &[f64], d: usize, v: &mut [f64], stride: usize) {
    for j in (0..d).rev() {
        let mut s = v[j * stride];
        for q in j + 1..d {
            s -= l[q * d + j] * v[q * stride];
        }
        v[j * stride] = s / l[j * d + j];
    }
}

/// Whitens one chunk `x` (m × d) into `out` (m × d) exactly as [`loss`]
/// does; f64 scratch of [`whiten_scratch_len`].
pub fn whiten(
    x: &[f32],
    m: usize,
    d: usize,
    eps: f32,
    out: &mut [f32],
    scratch: &mut [f64],
) -> Result<()> {
    WmseConfig { eps, w_size: m }.validate()?;
    check_len("x", x.len(), m * d)?;
    check_len("out", out.len(), m * d)?;
    check_scratch("wmse::whiten", scratch.len(), whiten_scratch_len(d))?;
    let (l, rest) = scratch.split_at_mut(d * d);
    let (mean, row) = rest.split_at_mut(d);
    let row = &mut row[..d];
    factor(x, &|k| k, m, d, eps, mean, l).map_err(|column| CoreError::NotPositiveDefinite {
        view: 0,
        chunk: 0,
        column,
    })?;
    for k in 0..m {
        for j in 0..d {
            row[j] = x[k * d + j] as f64 - mean[j];
        }
        solve_lower(l, d, row);
        for j in 0..d {
            out[k * d + j] = row[j] as f32;
        }
    }
    Ok(())
}

/// `max(‖v‖, eps)` of an f64 row, as `F.normalize`.
fn norm64(v: &[f64]) -> f64 {
    libm::sqrt(dot64(v, v)).max(NORM_EPS as f64)
}

/// Weighted W-MSE value; gradients (w.r.t. both views) written when given.
///
/// `order` lists the batch's rows chunk after chunk (a permutation of
/// `0..n`); `None` is the identity: chunk c holds rows `c·w_size..`.
/// The scratch is f64, of [`scratch_len`] elements.
pub fn loss(
    z: Views<'_>,
    weights: Option<&[f32]>,
    order: Option<&[u32]>,
    cfg: &WmseConfig,
    grads: Option<GradPair<'_>>,
    scratch: &mut [f64],
) -> Result<f32> {
    cfg.validate()?;
    let (n, d, m) = (z.n, z.d, cfg.w_size);
    check_weights(weights, n)?;
    if n % m != 0 {
        return Err(CoreError::Config {
            field: "w_size",
            allowed: "a divisor of the batch size",
        });
    }
    check_scratch("wmse::loss", scratch.len(), scratch_len(n, d))?;
    let chunks = n / m;
    let (zw, rest) = scratch.split_at_mut(2 * n * d);
    let (l, rest) = rest.split_at_mut(d * d);
    let (a, rest) = rest.split_at_mut(d * d);
    let (mean, rest) = rest.split_at_mut(d);
    let (row, rest) = rest.split_at_mut(d);
    let gbar = &mut rest[..d];

    if let Some(o) = order {
        check_len("order", o.len(), n)?;
        // zw doubles as a "seen" table to prove `order` is a permutation.
        zw[..n].iter_mut().for_each(|s| *s = 0.0);
        for &i in o {
            let i = i as usize;
            if i >= n || zw[i] != 0.0 {
                return Err(CoreError::Config {
                    field: "order",
                    allowed: "a permutation of 0..n",
                });
            }
            zw[i] = 1.0;
        }
    }
    let pd_error = |v: usize, c: usize| {
        move |column| CoreError::NotPositiveDefinite {
            view: v,
            chunk: c,
            column,
        }
    };

    // Forward: whiten each chunk of each view into zw = [ẑ1; ẑ2].
    for v in 0..2 {
        let x = if v == 0 { z.a } else { z.b };
        for c in 0..chunks {
            let rows = |k: usize| chunk_row(order, m, c, k);
            factor(x, &rows, m, d, cfg.eps, mean, l).map_err(pd_error(v, c))?;
            for k in 0..m {
                let i = rows(k);
                let o = &mut zw[(v * n + i) * d..(v * n + i + 1) * d];
                for j in 0..d {
                    o[j] = x[i * d + j] as f64 - mean[j];
                }
                solve_lower(l, d, o);
            }
        }
    }
    let (za, zb) = zw.split_at(n * d);
    let rng = |i: usize| i * d..(i + 1) * d;
    let mut total = 0.0f64;
    for i in 0..n {
        let (p, q) = (&za[rng(i)], &zb[rng(i)]);
        let cos = dot64(p, q) / (norm64(p) * norm64(q));
        total += weight(weights, i) * (2.0 - 2.0 * cos);
    }
    let value = total / n as f64;

    let Some(g) = grads else {
        return Ok(value as f32);
    };
    g.check(n * d)?;
    for v in 0..2 {
        let (x, zv, zo, gv) = if v == 0 {
            (z.a, za, zb, &mut *g.a)
        } else {
            (z.b, zb, za, &mut *g.b)
        };
        for c in 0..chunks {
            let rows = |k: usize| chunk_row(order, m, c, k);
            factor(x, &rows, m, d, cfg.eps, mean, l).map_err(pd_error(v, c))?;
            let coef = |i: usize| -2.0 * weight(weights, i) / n as f64;
            chunk_backward(
                x, zv, zo, &coef, gv, &rows, m, d, cfg.eps, l, a, mean, row, gbar,
            );
        }
    }
    Ok(value as f32)
}

/// `∂/∂p [coef · cos(p, q)]` for row vectors p, q, written into `out`.
fn cosine_grad(p: &[f64], q: &[f64], coef: f64, out: &mut [f64]) {
    let (np, nq) = (norm64(p), norm64(q));
    let active = libm::sqrt(dot64(p, p)) > NORM_EPS as f64;
    let cos = dot64(p, q) / (np * nq);
    for j in 0..p.len() {
        let qh = q[j] / nq;
        out[j] = coef
            * if active {
                (qh - cos * p[j] / np) / np
            } else {
                qh / np
            };
    }
}

/// Writes ∂L/∂X of one chunk of one view into `g`, from the whitened rows
/// `zv` of this view and `zo` of the other (the loss is `coef(i)·cos`).
/// `a` (d × d), `row` and `gbar` (d) are scratch.
#[allow(clippy::too_many_arguments)]
fn chunk_backward(
    x: &[f32],
    zv: &[f64],
    zo: &[f64],
    coef: &dyn Fn(usize) -> f64,
    g: &mut [f32],
    rows: &dyn Fn(usize) -> usize,
    m: usize,
    d: usize,
    eps: f32,
    l: &[f64],
    a: &mut [f64],
    mean: &[f64],
    row: &mut [f64],
    gbar: &mut [f64],
) {
    let rng = |i: usize| i * d..(i + 1) * d;
    // P = tril(−GᵀẐ) with G = ∂L/∂Ẑ recomputed row by row;
    // S = ½(P + tril(P, −1)ᵀ), stored full and symmetric. ḡ = mean row of G.
    a.iter_mut().for_each(|v| *v = 0.0);
    gbar.iter_mut().for_each(|v| *v = 0.0);
    for k in 0..m {
        let i = rows(k);
        cosine_grad(&zv[rng(i)], &zo[rng(i)], coef(i), row);
        for j in 0..d {
            gbar[j] += row[j] / m as f64;
        }
        let zr = &zv[rng(i)];
        for j in 0..d {
            for t in 0..=j {
                a[j * d + t] -= 0.5 * row[j] * zr[t];
            }
        }
    }
    for j in 0..d {
        for t in 0..j {
            a[t * d + j] = a[j * d + t];
        }
    }
    // Y = L⁻ᵀ S (column by column), then Ā = Y L⁻¹ (row by row).
    for col in 0..d {
        solve_upper_t(l, d, &mut a[col..], d);
    }
    for r in 0..d {
        solve_upper_t(l, d, &mut a[r * d..(r + 1) * d], 1);
    }
    // C̄ = (1−ε) sym(Ā), times 2/(m−1) for the covariance product.
    let f = (1.0 - eps as f64) * 2.0 / (m - 1) as f64;
    for j in 0..d {
        for t in 0..=j {
            let s = 0.5 * (a[j * d + t] + a[t * d + j]) * f;
            a[j * d + t] = s;
            a[t * d + j] = s;
        }
    }
    // ∂L/∂X = (G − ḡ) L⁻¹ + Xc C̄·2/(m−1): the centring subtracts the chunk
    // column mean of ∂L/∂Xc, which is ḡ L⁻¹ because Xc has zero column mean.
    for k in 0..m {
        let i = rows(k);
        cosine_grad(&zv[rng(i)], &zo[rng(i)], coef(i), row);
        for j in 0..d {
            row[j] -= gbar[j];
        }
        solve_upper_t(l, d, row, 1);
        for j in 0..d {
            let mut s = 0.0f64;
            for t in 0..d {
                s += (x[i * d + t] as f64 - mean[t]) * a[t * d + j];
            }
            g[i * d + j] = (row[j] + s) as f32;
        }
    }
}
