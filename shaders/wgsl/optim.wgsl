// Optimizer updates, one invocation per parameter element, mirroring
// scorecl-core's `optim` rules (the CPU twin) in the same order of f32
// operations; tests: host/tests/optim.rs.
//
// The non-finite guard is fused into the updates: an element whose
// gradient, updated value or moments are NaN or ±inf ORs its bits (1
// gradient, 2 parameter, 4 first moment / momentum, 8 second moment) into
// flags[P.guard], the tensor's own slot, read back with the loss. Nothing
// else reads every gradient and parameter, so the guard costs no pass.

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: u32,
    first: u32,
    // LARS: eta, eps, clip (0/1), adapt (0: an excluded 1-D tensor).
    eta: f32,
    eps: f32,
    clip: u32,
    adapt: u32,
    // Adam: beta1, beta2, step_size, bc2_sqrt, decoupled (0/1).
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decoupled: u32,
    // LARS: this tensor's pair of squared norms in sq / sqw.
    slot: u32,
    // The guard slot of this tensor in `flags`.
    guard: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;
// LARS: [‖p‖², ‖g‖²] of the whole tensor at 2·slot (lars_norms writes them
// through sqw, lars reads them through sq). One slot per tensor, so the
// updates of different tensors have no buffer in common to order them.
@group(0) @binding(5) var<storage, read> sq: array<f32>;
@group(0) @binding(6) var<storage, read_write> sqw: array<f32>;
@group(0) @binding(7) var<storage, read_write> flags: array<atomic<u32>>;

// Exponent all ones: NaN or ±inf (on the bits, which no finite-math
// assumption can fold away).
fn bad(x: f32) -> u32 { return u32((bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u); }

fn guard(gv: f32, pv: f32, m: f32, v: f32) {
    let bits = bad(gv) | (bad(pv) << 1u) | (bad(m) << 2u) | (bad(v) << 3u);
    if (bits != 0u) { atomicOr(&flags[P.guard], bits); }
}

//#include wg_reduce

fn index(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// The momentum part shared by SGD and LARS (core: momentum_apply).
fn momentum_apply(i: u32, d_p: f32) {
    if (P.momentum == 0.0) {
        p[i] = p[i] - P.lr * d_p;
        return;
    }
    var b: f32;
    if (P.first != 0u) { b = d_p; } else { b = buf[i] * P.momentum + (1.0 - P.dampening) * d_p; }
    buf[i] = b;
    var step = b;
    if (P.nesterov != 0u) { step = d_p + P.momentum * b; }
    p[i] = p[i] - P.lr * step;
}

@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    momentum_apply(i, g[i] + P.weight_decay * p[i]);
    var b = 0.0;
    if (P.momentum != 0.0) { b = buf[i]; }
    guard(g[i], p[i], b, 0.0);
}

@compute @workgroup_size(256)
fn lars(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    let p_norm = sqrt(sq[2u * P.slot]);
    let g_norm = sqrt(sq[2u * P.slot + 1u]);
    var d_p = g[i];
    if (P.adapt != 0u && p_norm != 0.0 && g_norm != 0.0) {
        var f = p_norm / (g_norm + p_norm * P.weight_decay + P.eps);
        f = f * P.eta;
        if (P.clip != 0u) { f = min(f / P.lr, 1.0); }
        d_p = (g[i] + P.weight_decay * p[i]) * f;
    }
    momentum_apply(i, d_p);
    var b = 0.0;
    if (P.momentum != 0.0) { b = buf[i]; }
    guard(g[i], p[i], b, 0.0);
}

// Both squared norms of LARS in one pass (one workgroup).
@compute @workgroup_size(64)
fn lars_norms(@builtin(local_invocation_index) lid: u32) {
    var a = 0.0;
    var b = 0.0;
    for (var i = lid; i < P.n; i += 64u) {
        let pv = p[i];
        let gv = g[i];
        a += pv * pv;
        b += gv * gv;
    }
    let sa = wg_sum(a, lid);
    let sb = wg_sum(b, lid);
    if (lid == 0u) {
        sqw[2u * P.slot] = sa;
        sqw[2u * P.slot + 1u] = sb;
    }
}

// Adam / AdamW; buf holds the first moment, m2 the second.
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    var pv = p[i];
    var gv = g[i];
    if (P.decoupled != 0u) {
        pv = pv * (1.0 - P.lr * P.weight_decay);
    } else {
        gv = gv + P.weight_decay * pv;
    }
    let m = buf[i] + (1.0 - P.beta1) * (gv - buf[i]);
    let v = m2[i] * P.beta2 + (1.0 - P.beta2) * gv * gv;
    buf[i] = m;
    m2[i] = v;
    let denom = sqrt(v) / P.bc2_sqrt + P.eps;
    let out = pv - P.step_size * (m / denom);
    p[i] = out;
    guard(g[i], out, m, v);
}
