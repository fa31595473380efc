// Data augmentation on the GPU, applying the per-sample parameters drawn by
// scorecl-core's `augment` (torchvision semantics). CPU twin:
// host/src/ops/augment.rs `cpu`; tests: host/tests/augment.rs.
//
// Source images are [N_src, 3, H, W] in [0, 1]; views are [N, 3, OH, OW],
// view n made from source n % N_src (two views of a batch: N = 2·N_src).
// Per output pixel: crop box + horizontal flip + bilinear resampling,
// antialiased when the crop is downscaled (see `axis`), then ColorJitter's adjustments in the sampled order
// (brightness: b·x; contrast: c·x + (1 − c)·mean gray of the image at that
// point; saturation: s·x + (1 − s)·gray; hue: shift in HSV; each clamped to
// [0, 1], as torchvision's functional ops on float tensors), grayscale
// (0.2989 R + 0.587 G + 0.114 B), Gaussian blur (separable, truncated at
// 3σ, reflect padding), solarisation (x ≥ threshold → 1 − x), and the
// mean/std normalisation. Contrast needs the mean gray of the image as it
// stands when contrast comes in the order, so the pipeline is:
//   aug_pre (gray before contrast) → reduce (per-image mean) → aug_main →
//   aug_blur_h → aug_blur_v (+ solarise, normalise).
//
// Per-sample parameters, 16 words each (floats as bits): 0 top, 1 left,
// 2 crop height, 3 crop width, 4 flip, 5 jitter, 6 order (4 × 8 bits, op
// indices 0 brightness, 1 contrast, 2 saturation, 3 hue), 7 brightness,
// 8 contrast, 9 saturation, 10 hue, 11 grayscale, 12 blur sigma,
// 13 solarise, 14 antialias.

struct Params {
    n: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    max_radius: u32,
    // View n reads source image n % n_src.
    n_src: u32,
    _p1: u32,
    mean: vec4<f32>,
    stdev: vec4<f32>,
    threshold: f32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> prm: array<u32>;
@group(0) @binding(3) var<storage, read_write> gray_buf: array<f32>;
@group(0) @binding(4) var<storage, read> cmean: array<f32>;
@group(0) @binding(5) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(6) var<storage, read> tmp_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> out01: array<f32>;
@group(0) @binding(8) var<storage, read_write> outn: array<f32>;

fn pf(n: u32, k: u32) -> f32 { return bitcast<f32>(prm[n * 16u + k]); }
fn pu(n: u32, k: u32) -> u32 { return prm[n * 16u + k]; }

fn flat(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

fn gray(c: vec3<f32>) -> f32 {
    return dot(c, vec3<f32>(0.2989, 0.587, 0.114));
}

// torchvision's _rgb2hsv / _hsv2rgb.
fn rgb2hsv(c: vec3<f32>) -> vec3<f32> {
    let maxc = max(c.r, max(c.g, c.b));
    let minc = min(c.r, min(c.g, c.b));
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / select(maxc, 1.0, eqc);
    let d = select(cr, 1.0, eqc);
    let rc = (maxc - c.r) / d;
    let gc = (maxc - c.g) / d;
    let bc = (maxc - c.b) / d;
    var h = 0.0;
    if (maxc == c.r) {
        h = bc - gc;
    } else if (maxc == c.g) {
        h = 2.0 + rc - bc;
    } else {
        h = 4.0 + gc - rc;
    }
    h = fract(h / 6.0 + 1.0);
    return vec3<f32>(h, s, maxc);
}

fn hsv2rgb(hsv: vec3<f32>) -> vec3<f32> {
    let h = hsv.x;
    let s = hsv.y;
    let v = hsv.z;
    let i6 = floor(h * 6.0);
    let f = h * 6.0 - i6;
    let p = clamp(v * (1.0 - s), 0.0, 1.0);
    let q = clamp(v * (1.0 - s * f), 0.0, 1.0);
    let t = clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
    // i6 mod 6 in floats (exact for these integers): no `%` on a possibly
    // negative integer (undefined in GLSL).
    let i = i32(i6 - 6.0 * floor(i6 / 6.0));
    switch i {
        case 0: { return vec3<f32>(v, t, p); }
        case 1: { return vec3<f32>(q, v, p); }
        case 2: { return vec3<f32>(p, v, t); }
        case 3: { return vec3<f32>(p, q, v); }
        case 4: { return vec3<f32>(t, p, v); }
        default: { return vec3<f32>(v, p, q); }
    }
}

// The source taps of output index `o` along one axis, for a crop of
// `crop` pixels resampled to `out`. Plain bilinear (PyTorch's
// align_corners=False: src = (o + 0.5)·crop/out − 0.5, clamped below at 0):
// two taps, both on the last pixel at the edge (PyTorch's h1p = 0, so the
// same rounding as PyTorch). Antialiased (PyTorch's
// `_upsample_bilinear2d_aa`, torchvision's antialias=True): the triangle
// filter stretched by the scale when downscaling, over
// [center − support, center + support), weights normalised to sum 1; when
// upscaling it is plain bilinear, and the plain taps are used.
struct Axis {
    start: u32,
    len: u32,
    // Taps past `last` (relative to start) read tap `last`.
    last: u32,
    // Plain: the bilinear fraction; antialiased: the filter's centre.
    at: f32,
    inv: f32,
    total: f32,
    aa: bool,
}

fn tri(x: f32) -> f32 { return max(1.0 - abs(x), 0.0); }

fn axis(crop: f32, out: u32, o: u32, aa: bool) -> Axis {
    var a: Axis;
    a.aa = false;
    let n = u32(crop);
    // Antialiasing changes nothing unless the axis shrinks: upscaled, its
    // weights are the bilinear ones (at the edges too), so the plain taps
    // are used (equal up to rounding).
    if (!aa || crop <= f32(out)) {
        let s = max((f32(o) + 0.5) * crop / f32(out) - 0.5, 0.0);
        a.start = min(u32(s), n - 1u);
        a.len = 2u;
        a.last = n - 1u - a.start;
        a.at = s - f32(a.start);
        return a;
    }
    a.aa = true;
    let scale = crop / f32(out);
    let support = select(1.0, scale, scale >= 1.0);
    a.inv = select(1.0, 1.0 / scale, scale >= 1.0);
    a.at = scale * (f32(o) + 0.5);
    a.start = u32(max(i32(a.at - support + 0.5), 0));
    a.len = min(u32(max(i32(a.at + support + 0.5), 0)), n) - a.start;
    a.last = a.len - 1u;
    var total = 0.0;
    for (var j = 0u; j < a.len; j++) {
        total += tri((f32(j + a.start) - a.at + 0.5) * a.inv);
    }
    a.total = total;
    return a;
}

fn tap(a: Axis, j: u32) -> f32 {
    if (!a.aa) { return select(a.at, 1.0 - a.at, j == 0u); }
    if (a.total == 0.0) { return 0.0; }
    return tri((f32(j + a.start) - a.at + 0.5) * a.inv) / a.total;
}

// Crop, flip and resampling of output pixel (oy, ox) of sample n.
fn sample_rgb(n: u32, oy: u32, ox: u32) -> vec3<f32> {
    var x = ox;
    if (pu(n, 4u) != 0u) { x = P.ow - 1u - ox; }
    let aa = pu(n, 14u) != 0u;
    let ay = axis(pf(n, 2u), P.oh, oy, aa);
    let ax = axis(pf(n, 3u), P.ow, x, aa);
    let top = u32(pf(n, 0u)) + ay.start;
    let left = u32(pf(n, 1u)) + ax.start;
    var out = vec3<f32>(0.0);
    let sn = n % P.n_src;
    for (var k = 0u; k < 3u; k++) {
        let base = (sn * 3u + k) * P.h * P.w;
        var acc = 0.0;
        for (var i = 0u; i < ay.len; i++) {
            var row = 0.0;
            for (var j = 0u; j < ax.len; j++) {
                let v = src[base + (top + min(i, ay.last)) * P.w + left + min(j, ax.last)];
                row += tap(ax, j) * v;
            }
            acc += tap(ay, i) * row;
        }
        out[k] = acc;
    }
    return out;
}

// The jitter ops of sample n in order; stops before contrast when
// `until_contrast` (the contrast mean is then not needed).
fn jitter(n: u32, c_in: vec3<f32>, until_contrast: bool, mean: f32) -> vec3<f32> {
    var c = c_in;
    if (pu(n, 5u) == 0u) { return c; }
    let order = pu(n, 6u);
    for (var i = 0u; i < 4u; i++) {
        let op = (order >> (8u * i)) & 0xFFu;
        if (op == 0u) {
            c = clamp(c * pf(n, 7u), vec3(0.0), vec3(1.0));
        } else if (op == 1u) {
            if (until_contrast) { return c; }
            let k = pf(n, 8u);
            c = clamp(k * c + (1.0 - k) * mean, vec3(0.0), vec3(1.0));
        } else if (op == 2u) {
            let k = pf(n, 9u);
            c = clamp(k * c + (1.0 - k) * gray(c), vec3(0.0), vec3(1.0));
        } else {
            var hsv = rgb2hsv(c);
            hsv.x = fract(hsv.x + pf(n, 10u));
            c = hsv2rgb(hsv);
        }
    }
    return c;
}

@compute @workgroup_size(256)
fn aug_pre(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ohw = P.oh * P.ow;
    if (t >= P.n * ohw) { return; }
    let n = t / ohw;
    let p = t % ohw;
    let c = jitter(n, sample_rgb(n, p / P.ow, p % P.ow), true, 0.0);
    gray_buf[t] = gray(c);
}

@compute @workgroup_size(256)
fn aug_main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ohw = P.oh * P.ow;
    if (t >= P.n * ohw) { return; }
    let n = t / ohw;
    let p = t % ohw;
    var c = jitter(n, sample_rgb(n, p / P.ow, p % P.ow), false, cmean[n]);
    if (pu(n, 11u) != 0u) { c = vec3<f32>(gray(c)); }
    for (var k = 0u; k < 3u; k++) { tmp[(n * 3u + k) * ohw + p] = c[k]; }
}

// Reflect padding as torchvision's (…, 2, 1, 0, 1, 2, …, L−2, L−1, L−2, …).
fn reflect(i: i32, len: u32) -> u32 {
    if (len == 1u) { return 0u; }
    let period = 2u * (len - 1u);
    // |i| mod period gives the same reflection (it is symmetric about 0)
    // with `%` on non-negative operands only: GLSL, which naga writes `%`
    // into as is, leaves it undefined for negative ones (llvmpipe's GL
    // blurred the edges wrongly).
    var j = u32(abs(i)) % period;
    if (j >= len) { j = period - j; }
    return j;
}

// One 1-D Gaussian pass along x (horizontal) or y; σ = 0 copies.
fn blur_at(n: u32, k: u32, y: u32, x: u32, horizontal: bool) -> f32 {
    let sigma = pf(n, 12u);
    let ohw = P.oh * P.ow;
    let base = (n * 3u + k) * ohw;
    if (sigma <= 0.0) { return tmp_in[base + y * P.ow + x]; }
    let radius = i32(min(u32(ceil(3.0 * sigma)), P.max_radius));
    var acc = 0.0;
    var norm = 0.0;
    for (var d = -radius; d <= radius; d++) {
        let wgt = exp(-0.5 * (f32(d) / sigma) * (f32(d) / sigma));
        var v: f32;
        if (horizontal) {
            v = tmp_in[base + y * P.ow + reflect(i32(x) + d, P.ow)];
        } else {
            v = tmp_in[base + reflect(i32(y) + d, P.oh) * P.ow + x];
        }
        acc += wgt * v;
        norm += wgt;
    }
    return acc / norm;
}

@compute @workgroup_size(256)
fn aug_blur_h(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ohw = P.oh * P.ow;
    if (t >= P.n * 3u * ohw) { return; }
    let n = t / (3u * ohw);
    let k = (t / ohw) % 3u;
    let p = t % ohw;
    tmp[t] = blur_at(n, k, p / P.ow, p % P.ow, true);
}

@compute @workgroup_size(256)
fn aug_blur_v(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ohw = P.oh * P.ow;
    if (t >= P.n * 3u * ohw) { return; }
    let n = t / (3u * ohw);
    let k = (t / ohw) % 3u;
    let p = t % ohw;
    var v = blur_at(n, k, p / P.ow, p % P.ow, false);
    if (pu(n, 13u) != 0u && v >= P.threshold) { v = 1.0 - v; }
    out01[t] = v;
    outn[t] = (v - P.mean[k]) / P.stdev[k];
}
