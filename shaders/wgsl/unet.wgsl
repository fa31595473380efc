// The score network's U-Net kernels (host/src/nn/score.rs): FiLM conditioning
// and nearest ×2 upsampling on NCHW tensors. CPU twins:
// host/src/ops/unet.rs `cpu`; tests: host/tests/unet.rs.
//
// film:          y[n, c, p] = x[n, c, p]·(1 + gb[n, c]) + gb[n, C + c]
// film_backward: dx[n, c, p] = dy[n, c, p]·(1 + gb[n, c])
// film_grad:     dgb[n, c] = Σ_p dy·x, dgb[n, C + c] = Σ_p dy (one
//                workgroup per (n, c))
// up2:           y[n, c, h, w] = x[n, c, h/2, w/2]
// up2_backward:  dx[n, c, h, w] = Σ_{a,b ∈ {0,1}} dy[n, c, 2h + a, 2w + b]

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgb: array<f32>;

//#include wg_reduce

fn flat(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn film(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let hw = P.h * P.w;
    if (t >= P.n * P.c * hw) { return; }
    let n = t / (P.c * hw);
    let c = (t / hw) % P.c;
    y[t] = x[t] * (1.0 + gb[n * 2u * P.c + c]) + gb[n * 2u * P.c + P.c + c];
}

@compute @workgroup_size(256)
fn film_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let hw = P.h * P.w;
    if (t >= P.n * P.c * hw) { return; }
    let n = t / (P.c * hw);
    let c = (t / hw) % P.c;
    dx[t] = dy[t] * (1.0 + gb[n * 2u * P.c + c]);
}

@compute @workgroup_size(64)
fn film_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let plane = wg.x + wg.y * nwg.x;
    if (plane >= P.n * P.c) { return; }
    let hw = P.h * P.w;
    let base = plane * hw;
    var a = 0.0;
    var b = 0.0;
    for (var p = lid; p < hw; p += 64u) {
        let g = dy[base + p];
        a += g * x[base + p];
        b += g;
    }
    let sa = wg_sum(a, lid);
    let sb = wg_sum(b, lid);
    if (lid == 0u) {
        let n = plane / P.c;
        let c = plane % P.c;
        dgb[n * 2u * P.c + c] = sa;
        dgb[n * 2u * P.c + P.c + c] = sb;
    }
}

// h, w are the input (small) sizes.
@compute @workgroup_size(256)
fn up2(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let ow = 2u * P.w;
    let ohw = 4u * P.h * P.w;
    if (t >= P.n * P.c * ohw) { return; }
    let plane = t / ohw;
    let oy = (t % ohw) / ow;
    let ox = t % ow;
    y[t] = x[plane * P.h * P.w + (oy / 2u) * P.w + ox / 2u];
}

@compute @workgroup_size(256)
fn up2_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    let hw = P.h * P.w;
    if (t >= P.n * P.c * hw) { return; }
    let plane = t / hw;
    let hh = (t % hw) / P.w;
    let ww = t % P.w;
    let ow = 2u * P.w;
    let base = plane * 4u * hw + 2u * hh * ow + 2u * ww;
    dx[t] = dy[base] + dy[base + 1u] + dy[base + ow] + dy[base + ow + 1u];
}
