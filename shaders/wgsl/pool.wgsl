// Pooling on NCHW tensors. CPU twins: host/src/ops/pool.rs `cpu`; tests:
// host/tests/pool.rs. (Global average pooling is a mean reduction,
// reduce.wgsl.)
//
// maxpool: max over the window (padding never wins), the argmax kept as the
// flat index h·W + w; its backward gathers dy where the argmax is this pixel
// (no atomics).

struct Params {
    c: u32, h: u32, w: u32, images: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    oh: u32, ow: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg: array<u32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> arg_in: array<u32>;

fn flat(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

//#include nan

// Max pooling over images 0..images, kh × kw window.
@compute @workgroup_size(256)
fn maxpool(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ohw = P.oh * P.ow;
    if (t >= P.images * P.c * ohw) { return; }
    let plane = t / ohw;
    let oh = (t % ohw) / P.ow;
    let ow = t % P.ow;
    // PyTorch's CPU kernel: the maximum starts at −inf at the window's
    // first in-image position; a larger value or a NaN takes it, so a NaN
    // in the window is the output (the last NaN, as in PyTorch).
    var best = bitcast<f32>(0xff800000u);
    var at = u32(max(i32(oh * P.stride) - i32(P.pad), 0)) * P.w
        + u32(max(i32(ow * P.stride) - i32(P.pad), 0));
    for (var p = 0u; p < P.kh; p++) {
        let hh = i32(oh * P.stride + p) - i32(P.pad);
        if (hh < 0 || hh >= i32(P.h)) { continue; }
        for (var q = 0u; q < P.kw; q++) {
            let ww = i32(ow * P.stride + q) - i32(P.pad);
            if (ww < 0 || ww >= i32(P.w)) { continue; }
            let idx = u32(hh) * P.w + u32(ww);
            let v = x[plane * P.h * P.w + idx];
            // Strictly greater: the first maximum in scan order wins, as in
            // PyTorch's CPU kernel.
            if (v > best || is_nan(v)) { best = v; at = idx; }
        }
    }
    y[t] = best;
    arg[t] = at;
}

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let hw = P.h * P.w;
    if (t >= P.images * P.c * hw) { return; }
    let plane = t / hw;
    let idx = t % hw;
    let h = idx / P.w;
    let w = idx % P.w;
    var acc = 0.0;
    for (var p = 0u; p < P.kh; p++) {
        let hs = i32(h + P.pad) - i32(p);
        if (hs < 0 || u32(hs) % P.stride != 0u) { continue; }
        let oh = u32(hs) / P.stride;
        if (oh >= P.oh) { continue; }
        for (var q = 0u; q < P.kw; q++) {
            let ws = i32(w + P.pad) - i32(q);
            if (ws < 0 || u32(ws) % P.stride != 0u) { continue; }
            let ow = u32(ws) / P.stride;
            if (ow >= P.ow) { continue; }
            let o = plane * P.oh * P.ow + oh * P.ow + ow;
            if (arg_in[o] == idx) { acc += dy[o]; }
        }
    }
    dx[t] = acc;
}
