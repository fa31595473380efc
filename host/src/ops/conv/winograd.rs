//! Winograd F(2×2, 3×3) on the native device, for the 3×3 convolutions at
//! stride 1 and padding 1 with at least [`MIN_CHANNELS`] input and output
//! channels on maps of at least [`MIN_SIDE`] a side (on CIFAR, ResNet-18's
//! 3×3 convolutions of its first three stages but the first of a stage,
//! and most of the score network's).
//!
//! Each 2×2 block of outputs (a "tile") is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//! for its 4×4 input patch `d` and kernel `g`, summed over the input
//! channels, so the products are 16 GEMMs `M_ξ = U_ξ · V_ξ`
//! (`[rows × cols] · [cols × tiles]`, ξ the 16 positions of a transformed
//! patch): 16 multiplications per tile and channel pair instead of 36, and
//! no column matrix. The forward runs it on (x, W); the input gradient on
//! (dy, W with each kernel turned by 180° and its channels swapped), the
//! same correlation at padding 1. The weight gradient stays im2col + GEMM
//! (`super::native::conv_backward`).
//!
//! Its rounding differs from the direct sum's: `host/tests/conv.rs` bounds
//! it with the transforms' magnitudes ([`super::cpu::winograd_magnitude`]).
//! Each output depends only on its image, the weights and the sub-block's
//! tile count, so a run is deterministic for a given plan.

use super::ConvShape;
use crate::native::SharedMut;
use crate::ops::gemm::native as gemm;
use rayon::prelude::*;

/// Input and output channels from which the products' saving outweighs the
/// transforms.
pub(crate) const MIN_CHANNELS: usize = 16;

/// Workspace elements a sub-block's transformed input and products aim at
/// (4 MiB of f32).
const BLOCK: usize = 1 << 22;

/// Elements between consecutive ξ matrices of `V` and `M` (a cache line),
/// so that the transforms' 16 streams do not map to the same cache sets
/// when a matrix is a multiple of 4 KiB.
const GAP: usize = 16;

/// Whether the path is on: `SCORECL_WINOGRAD=0` turns it off (every
/// convolution then runs as im2col + GEMM, the WGSL devices' order of
/// sums), read once.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SCORECL_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Map sides from which the tiles waste little (a 9 × 9 map takes 5 × 5
/// tiles, 23 % outside; a 5 × 5 map 3 × 3, 44 %, where im2col + GEMM is
/// faster).
pub(crate) const MIN_SIDE: usize = 8;

/// Whether `s` takes the Winograd path on the native device.
pub(crate) fn eligible(s: &ConvShape) -> bool {
    enabled()
        && (s.k, s.stride, s.pad) == (3, 1, 1)
        && s.cin.min(s.cout) >= MIN_CHANNELS
        && s.h.min(s.w) >= MIN_SIDE
}

/// Tile rows and columns of one image (the last ones half outside the map
/// when its side is odd).
fn tiles(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// The transformed weights' elements: `[16][C_out][C_in]`.
pub(crate) fn weight_len(s: &ConvShape) -> usize {
    16 * s.cin * s.cout
}

/// Workspace of one image in a sub-block: its transformed input and
/// products.
fn per_image(s: &ConvShape) -> usize {
    let (th, tw) = tiles(s.h, s.w);
    16 * th * tw * (s.cin + s.cout)
}

/// A sub-block's fixed part: the gaps, and one plane's buffer (the padded
/// plane, its columns split by parity, their four horizontal transforms;
/// the output transform's 12 planes of tiles fit in it too).
fn fixed(s: &ConvShape) -> usize {
    let (th, tw) = tiles(s.h, s.w);
    32 * GAP + 8 * (2 * th + 2) * (tw + 1)
}

/// Workspace elements of a sub-block of one image of `s` on the Winograd
/// path (0 when `s` does not take it).
pub(crate) fn one_image(s: &ConvShape) -> usize {
    if eligible(s) {
        per_image(s) + fixed(s)
    } else {
        0
    }
}

/// Images per sub-block in a workspace of `avail` elements, if one fits.
pub(crate) fn images_per_block(s: &ConvShape, avail: usize) -> Option<usize> {
    let per = per_image(s);
    let fit = avail.saturating_sub(fixed(s)) / per;
    (fit > 0).then(|| fit.min((BLOCK / per).max(1)).min(s.n.max(1)))
}

/// `out[t] = f(a[t], b[t])`.
#[inline(always)]
fn map2(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = f(*a, *b);
    }
}

/// `out[t] = f(a[t], b[t], c[t])`.
#[inline(always)]
fn map3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (((o, a), b), c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = f(*a, *b, *c);
    }
}

/// `G` = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]] applied to (a, b, c),
/// rows of `n` kernels at once, into `out` (4 rows of `n`, `stride` apart
/// from `at`).
#[inline(always)]
fn apply_g(a: &[f32], b: &[f32], c: &[f32], out: &SharedMut<f32>, at: usize, stride: usize) {
    let n = a.len();
    out.slice(at, n).copy_from_slice(a);
    map3(out.slice(at + stride, n), a, b, c, |a, b, c| {
        (a + b + c) * 0.5
    });
    map3(out.slice(at + 2 * stride, n), a, b, c, |a, b, c| {
        (a - b + c) * 0.5
    });
    out.slice(at + 3 * stride, n).copy_from_slice(c);
}

/// `U = G g Gᵀ` (`[16][rows][cols]`, position ξ = 4·i + k) for the forward
/// (`flip` false: rows are the output channels, cols the input's) or the
/// input gradient (`flip`: rows are the input channels, cols the output's,
/// each kernel turned by 180°). A row of kernels at a time, its taps first
/// gathered into rows of `cols`.
pub(crate) fn weights(wt: &[f32], s: &ConvShape, flip: bool, u: &mut [f32]) {
    let (rows, cols) = if flip {
        (s.cin, s.cout)
    } else {
        (s.cout, s.cin)
    };
    let plane = rows * cols;
    let u = SharedMut::new(&mut u[..16 * plane]);
    (0..rows).into_par_iter().for_each_init(
        || vec![0.0f32; 21 * cols],
        |buf, r| {
            let (g, t) = buf.split_at_mut(9 * cols);
            for c in 0..cols {
                for i in 0..9 {
                    g[i * cols + c] = if flip {
                        wt[(c * s.cin + r) * 9 + 8 - i]
                    } else {
                        wt[(r * s.cin + c) * 9 + i]
                    };
                }
            }
            // t[4p + k] = (g's row p) · Gᵀ, k = 0..4.
            let tm = SharedMut::new(&mut t[..12 * cols]);
            for p in 0..3 {
                let (a, b, c) = (
                    &g[3 * p * cols..][..cols],
                    &g[(3 * p + 1) * cols..][..cols],
                    &g[(3 * p + 2) * cols..][..cols],
                );
                apply_g(a, b, c, &tm, 4 * p * cols, cols);
            }
            let t: &[f32] = t;
            for k in 0..4 {
                let (a, b, c) = (
                    &t[k * cols..][..cols],
                    &t[(4 + k) * cols..][..cols],
                    &t[(8 + k) * cols..][..cols],
                );
                // SAFETY (disjoint): row r of every U_ξ is this iteration's.
                apply_g(a, b, c, &u, k * plane + r * cols, 4 * plane);
            }
        },
    );
}

/// The geometry of one run: `cols` input planes and `rows` output planes
/// per image, each `h × w`.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) cols: usize,
    pub(crate) rows: usize,
}

/// `Bᵀ d B` of one input plane's tiles into `V` (ξ matrices `sv` apart),
/// the plane's tiles from `base` on; `Bᵀ` = [[1, 0, −1, 0], [0, 1, 1, 0],
/// [0, −1, 1, 0], [0, 1, 0, −1]].
///
/// The plane is copied with its zero padding into `2·th + 2` rows of
/// `2·tw + 2` columns, which are split by column parity in one pass over
/// the whole buffer (even columns `e`, odd `o`, `tw + 1` per row): tap x of
/// tile tx is then `e[tx]`, `o[tx]`, `e[tx + 1]`, `o[tx + 1]`, so the
/// horizontal transform is four loops over the whole plane, and the
/// vertical one 16 loops per tile row.
#[inline(always)]
fn input_plane(plane: &[f32], d: Dims, buf: &mut [f32], v: &mut [f32], sv: usize, base: usize) {
    let (th, tw) = tiles(d.h, d.w);
    let l = tw + 1;
    let n = (2 * th + 2) * l;
    let (pp, rest) = buf.split_at_mut(2 * n);
    let (eo, hb) = rest.split_at_mut(2 * n);
    let hb = &mut hb[..4 * n];
    // Padded row r holds input row r − 1, column j input column j − 1.
    pp[..2 * l].fill(0.0);
    for (y, row) in pp[2 * l..].chunks_exact_mut(2 * l).enumerate() {
        if y < d.h {
            row[0] = 0.0;
            row[1..=d.w].copy_from_slice(&plane[y * d.w..][..d.w]);
            row[d.w + 1..].fill(0.0);
        } else {
            row.fill(0.0);
        }
    }
    let (e, o) = eo.split_at_mut(n);
    for ((pair, e), o) in pp.chunks_exact(2).zip(e.iter_mut()).zip(o.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
    let (e, o): (&[f32], &[f32]) = (e, o);
    // h_k at [r][tx] (tx = tw, across the row's end, is not used).
    let (e0, e1, o0, o1) = (&e[..n - 1], &e[1..], &o[..n - 1], &o[1..]);
    let (h0, rest) = hb.split_at_mut(n);
    let (h1, rest) = rest.split_at_mut(n);
    let (h2, h3) = rest.split_at_mut(n);
    map2(h0, e0, e1, |a, c| a - c);
    map2(h1, o0, e1, |b, c| b + c);
    map2(h2, e1, o0, |c, b| c - b);
    map2(h3, o0, o1, |b, e| b - e);
    let hb: &[f32] = hb;
    // Vertical: rows 0..4 of tile row ty are padded rows 2·ty ..= 2·ty + 3.
    for ty in 0..th {
        let at = base + ty * tw;
        for k in 0..4 {
            let h = |y: usize| &hb[k * n + (2 * ty + y) * l..][..tw];
            let (r0, r1, r2, r3) = (h(0), h(1), h(2), h(3));
            map2(&mut v[k * sv + at..][..tw], r0, r2, |a, c| a - c);
            map2(&mut v[(4 + k) * sv + at..][..tw], r1, r2, |b, c| b + c);
            map2(&mut v[(8 + k) * sv + at..][..tw], r2, r1, |c, b| c - b);
            map2(&mut v[(12 + k) * sv + at..][..tw], r1, r3, |b, e| b - e);
        }
    }
}

/// `Aᵀ m A` of one output plane's tiles from `M` (ξ matrices `sm` apart,
/// the plane's tiles from `base` on) into `out`; `Aᵀ` = [[1, 1, 1, 0],
/// [0, 1, −1, −1]]. The column and row passes run over all the plane's
/// tiles at once (into `buf`: 8 then 4 planes of tiles), then each tile's
/// outputs go to their place in the plane.
#[inline(always)]
fn output_plane(m: &[f32], sm: usize, base: usize, d: Dims, buf: &mut [f32], out: &mut [f32]) {
    let (th, tw) = tiles(d.h, d.w);
    let tpi = th * tw;
    let (s, y) = buf.split_at_mut(8 * tpi);
    let y = &mut y[..4 * tpi];
    let mk = |xi: usize| &m[xi * sm + base..][..tpi];
    for (i, si) in s.chunks_exact_mut(2 * tpi).enumerate() {
        let (s0, s1) = si.split_at_mut(tpi);
        let (a, b, c, e) = (mk(4 * i), mk(4 * i + 1), mk(4 * i + 2), mk(4 * i + 3));
        map3(s0, a, b, c, |a, b, c| a + b + c);
        map3(s1, b, c, e, |b, c, e| b - c - e);
    }
    let s: &[f32] = s;
    for col in 0..2 {
        let sr = |i: usize| &s[(2 * i + col) * tpi..][..tpi];
        map3(
            &mut y[col * tpi..][..tpi],
            sr(0),
            sr(1),
            sr(2),
            |a, b, c| a + b + c,
        );
        map3(
            &mut y[(2 + col) * tpi..][..tpi],
            sr(1),
            sr(2),
            sr(3),
            |b, c, e| b - c - e,
        );
    }
    let y: &[f32] = y;
    for ty in 0..th {
        for a in 0..2 {
            let row = 2 * ty + a;
            if row >= d.h {
                break;
            }
            let o = &mut out[row * d.w..][..d.w];
            let ye = &y[2 * a * tpi + ty * tw..][..tw];
            let yo = &y[(2 * a + 1) * tpi + ty * tw..][..tw];
            for ((o, e), od) in o.chunks_exact_mut(2).zip(ye).zip(yo) {
                o[0] = *e;
                o[1] = *od;
            }
            if d.w % 2 == 1 {
                o[d.w - 1] = ye[tw - 1];
            }
        }
    }
}

crate::native::multiversion! {
    /// The correlation of `images` images of `input`
    /// (`[images][cols][h][w]`) with the kernels whose transforms are `u`,
    /// at padding 1, into `out` (`[images][rows][h][w]`), in sub-blocks of
    /// `per` images in `ws`; `epilogue(q, plane)` runs on each output plane
    /// (q = image · rows + row) once it is written. Compiled for the CPU's
    /// widest vector extension.
    pub(crate) fn run(
        d: Dims,
        u: &[f32],
        input: &[f32],
        images: usize,
        per: usize,
        ws: &mut [f32],
        out: &mut [f32],
        epilogue: impl Fn(usize, &mut [f32]),
    ) {
        let (th, tw) = tiles(d.h, d.w);
        let (hw, tpi) = (d.h * d.w, th * tw);
        let mut i0 = 0;
        while i0 < images {
            let bi = per.min(images - i0);
            let t = bi * tpi;
            let (sv, sm) = (d.cols * t + GAP, d.rows * t + GAP);
            let (v, rest) = ws.split_at_mut(16 * sv);
            let (m, buf) = rest.split_at_mut(16 * sm);
            for b in 0..bi {
                for c in 0..d.cols {
                    let plane = &input[((i0 + b) * d.cols + c) * hw..][..hw];
                    input_plane(plane, d, buf, v, sv, c * t + b * tpi);
                }
            }
            for xi in 0..16 {
                gemm::seq(
                    &mut m[xi * sm..][..d.rows * t],
                    (d.rows, t, d.cols),
                    (&u[xi * d.rows * d.cols..][..d.rows * d.cols], false),
                    (&v[xi * sv..][..d.cols * t], false),
                    false,
                );
            }
            for b in 0..bi {
                for r in 0..d.rows {
                    let q = (i0 + b) * d.rows + r;
                    let o = &mut out[q * hw..][..hw];
                    output_plane(m, sm, r * t + b * tpi, d, buf, o);
                    epilogue(q, o);
                }
            }
            i0 += bi;
        }
    }
}
