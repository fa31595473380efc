// Weighted VICReg. CPU twin: scorecl-core `vicreg`; tests:
// host/tests/vicreg.rs. The views are stacked as z = [x; y] (2n × d).
//
// The host records: vicreg_repr; per-view column means (reduce) and
// centring (add_cols); C_v = Xc_vᵀXc_v/(n−1) for both views (batched GEMM);
// vicreg_stats; vicreg_std_grad; grad += kc·Xc_v·Coff_v (batched GEMM,
// beta = 1); the sum of all terms.
//
// terms holds, pre-scaled so that their sum is the loss:
//   [0, n):          sim · wᵢ ‖xᵢ − yᵢ‖² / (n d)
//   [n, n + 2d):     std · relu(1 − std_j) / (2 d)       per view and column
//   [n + 2d, n + 4d): cov · Σ_{k≠j} C_jk² / d            per view and row

struct Params {
    n: u32,
    d: u32,
    _p0: u32,
    _p1: u32,
    sim: f32,
    std_c: f32,
    cov: f32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
@group(0) @binding(5) var<storage, read_write> C: array<f32>;
@group(0) @binding(6) var<storage, read_write> stdv: array<f32>;
@group(0) @binding(7) var<storage, read> xc: array<f32>;
@group(0) @binding(8) var<storage, read> std_in: array<f32>;

//#include wg_reduce
//#include nan

const STD_EPS: f32 = 1e-4;

// One workgroup per pair: the weighted invariance term, and the gradient
// rows initialised with its derivative 2·sim·wᵢ(xᵢ − yᵢ)/(n d).
@compute @workgroup_size(64)
fn vicreg_repr(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = wg.x + wg.y * nwg.x;
    if (i >= P.n) { return; }
    let nd = f32(P.n * P.d);
    let k = 2.0 * P.sim * w[i] / nd;
    var acc = 0.0;
    for (var j = lid; j < P.d; j += 64u) {
        let diff = z[i * P.d + j] - z[(P.n + i) * P.d + j];
        acc += diff * diff;
        grad[i * P.d + j] = k * diff;
        grad[(P.n + i) * P.d + j] = -k * diff;
    }
    let total = wg_sum(acc, lid);
    if (lid == 0u) { terms[i] = P.sim * w[i] * total / nd; }
}

// One workgroup per row j of C_v (2d rows over both views): std_j from the
// diagonal, the variance and covariance terms, and the diagonal zeroed so
// that C holds the off-diagonal part for the gradient GEMM.
@compute @workgroup_size(64)
fn vicreg_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= 2u * P.d) { return; }
    let j = row % P.d;
    let base = row * P.d;
    var acc = 0.0;
    for (var k = lid; k < P.d; k += 64u) {
        if (k != j) { let c = C[base + k]; acc += c * c; }
    }
    let off = wg_sum(acc, lid);
    if (lid == 0u) {
        let s = sqrt(C[base + j] + STD_EPS);
        stdv[row] = s;
        let df = f32(P.d);
        terms[P.n + row] = P.std_c * relu_of(1.0 - s) / (2.0 * df);
        terms[P.n + 2u * P.d + row] = P.cov * off / df;
        C[base + j] = 0.0;
    }
}

// grad −= std·[std_j < 1]·xc / (2 d (n−1) std_j), elementwise over 2n × d.
@compute @workgroup_size(256)
fn vicreg_std_grad(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = id.x + id.y * nwg.x * 256u;
    if (t >= 2u * P.n * P.d) { return; }
    let view = t / (P.n * P.d);
    let j = t % P.d;
    let s = std_in[view * P.d + j];
    if (relu_passes(1.0 - s)) {
        let ks = P.std_c / (2.0 * f32(P.d) * f32(P.n - 1u));
        grad[t] = grad[t] - ks * xc[t] / s;
    }
}
