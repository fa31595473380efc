// Convolution helpers on NCHW tensors (pooling: pool.wgsl). CPU twins:
// host/src/ops/conv.rs `cpu`; tests: host/tests/conv.rs.
//
// A convolution is im2col + GEMM (col2im gathers at most 64 window taps
// per pixel: kernels up to 8 × 8 at stride 1, any size at stride ≥ 2): for the images i0.. of a chunk,
//   col[b, (c·kh + p)·kw + q, oh·OW + ow] = x[i0 + b, c, oh·s + p − pad, ow·s + q − pad]
// (0 outside the image), then out_b = W · col_b with W = [C_out, C·kh·kw].
// The input gradient gathers the column gradient back (col2im, no atomics):
//   dx[i0 + b, c, h, w] = Σ_{p,q} dcol[b, (c·kh + p)·kw + q, oh·OW + ow]
// over the (oh, ow) with oh·s + p − pad = h and ow·s + q − pad = w.
//
// col2im's epilogue (override constants, for a residual block's input
// gradient): ADD adds addend[i] (the other branch's gradient), ADD with
// MASK adds addend[i] only where mask[i] > 0 (the gradient of a ReLU whose
// output is mask, applied to addend): no separate add or ReLU-backward
// pass.

// `ld`: the column matrix's row length (≥ OH·OW; rounded up to a multiple
// of 4 on CPU drivers so that their vec4 GEMM takes every shape, with the
// padding columns zero).
struct Params {
    c: u32, h: u32, w: u32, i0: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    oh: u32, ow: u32, images: u32, ld: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// F16: im2col writes f16 columns (for the HALF_B GEMMs); col2im, which
// reads `dcol`, is used from the f32 variant only.
//#if F16
@group(0) @binding(2) var<storage, read_write> col: array<f16>;
//#else
@group(0) @binding(2) var<storage, read_write> col: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read> dcol: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read> addend: array<f32>;
@group(0) @binding(10) var<storage, read> mask: array<f32>;

override ADD: bool = false;
override MASK: bool = false;

fn flat(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// relu_passes: col2im's MASK epilogue (a NaN passes, as PyTorch's ReLU).
//#include nan

// One invocation per (ow, oh) of one column-matrix row r = (c, p, q)
// (workgroup z), looping over the chunk's images: no per-element division.
@compute @workgroup_size(8, 8, 1)
fn im2col(@builtin(global_invocation_id) id: vec3<u32>) {
    let ow = id.x;
    let oh = id.y;
    let r = id.z;
    if (ow >= P.ow || oh >= P.oh) { return; }
    let c = r / (P.kh * P.kw);
    let p = (r / P.kw) % P.kh;
    let q = r % P.kw;
    let hh = i32(oh * P.stride + p) - i32(P.pad);
    let ww = i32(ow * P.stride + q) - i32(P.pad);
    let inside = hh >= 0 && hh < i32(P.h) && ww >= 0 && ww < i32(P.w);
    let plane = P.h * P.w;
    let ohw = P.oh * P.ow;
    let rows = P.c * P.kh * P.kw;
    var src = ((P.i0 * P.c + c) * P.h + u32(max(hh, 0))) * P.w + u32(max(ww, 0));
    var dst = r * P.ld + oh * P.ow + ow;
    for (var b = 0u; b < P.images; b++) {
        var v = 0.0;
        if (inside) { v = x[src]; }
        //#if F16
        col[dst] = f16(v);
        //#else
        col[dst] = v;
        //#endif
        if (ow == 0u && oh == 0u) {
            // The row's padding columns.
            for (var j = ohw; j < P.ld; j++) {
                //#if F16
                col[dst + j] = f16(0.0);
                //#else
                col[dst + j] = 0.0;
                //#endif
            }
        }
        src += P.c * plane;
        dst += rows * P.ld;
    }
}

// One invocation per (w, h) of one channel c (workgroup z), looping over
// the chunk's images; the (oh, ow, p, q) that reach this pixel are found
// once per invocation.
@compute @workgroup_size(8, 8, 1)
fn col2im(@builtin(global_invocation_id) id: vec3<u32>) {
    let w = id.x;
    let h = id.y;
    let c = id.z;
    if (w >= P.w || h >= P.h) { return; }
    let ohw = P.oh * P.ow;
    let rows = P.c * P.kh * P.kw;
    // Column-matrix offsets (within one image) that map to this pixel.
    var taps: array<u32, 64>;
    var count = 0u;
    for (var p = 0u; p < P.kh; p++) {
        let hs = i32(h + P.pad) - i32(p);
        if (hs < 0 || u32(hs) % P.stride != 0u) { continue; }
        let oh = u32(hs) / P.stride;
        if (oh >= P.oh) { continue; }
        for (var q = 0u; q < P.kw; q++) {
            let ws = i32(w + P.pad) - i32(q);
            if (ws < 0 || u32(ws) % P.stride != 0u) { continue; }
            let ow = u32(ws) / P.stride;
            if (ow >= P.ow || count >= 64u) { continue; }
            taps[count] = ((c * P.kh + p) * P.kw + q) * P.ld + oh * P.ow + ow;
            count++;
        }
    }
    let plane = P.h * P.w;
    for (var b = 0u; b < P.images; b++) {
        var acc = 0.0;
        let base = b * rows * P.ld;
        for (var t = 0u; t < count; t++) { acc += dcol[base + taps[t]]; }
        let i = ((P.i0 + b) * P.c + c) * plane + h * P.w + w;
        if (ADD) {
            var a = addend[i];
            if (MASK && !relu_passes(mask[i])) { a = 0.0; }
            acc += a;
        }
        dx[i] = acc;
    }
}

// Rows of OH·OW values (c rows per image, images i0..i0 + images of dy)
// copied to rows of ld values with zero padding (y): a convolution's
// output gradient in the column matrices' layout.
@compute @workgroup_size(256)
fn pad_rows(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    if (t >= P.images * P.c * P.ld) { return; }
    let row = t / P.ld;
    let j = t % P.ld;
    let ohw = P.oh * P.ow;
    var v = 0.0;
    if (j < ohw) { v = dy[(P.i0 * P.c + row) * ohw + j]; }
    y[t] = v;
}
