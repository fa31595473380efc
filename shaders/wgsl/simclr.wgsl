// Weighted NT-Xent (SimCLR). CPU twin: scorecl-core `simclr`; tests:
// host/tests/simclr.rs. The host normalises the 2n rows z = [z1; z2]
// (rows.wgsl), forms S = û ûᵀ / τ with a GEMM, runs these two kernels,
// multiplies G·û with a GEMM and back-propagates through the
// normalisation (rows.wgsl).
//
// simclr_rows (one workgroup per row r):
//   lse_r = log Σ_{c≠r} exp(S_rc) (max-subtracted),
//   terms_r = w_r (lse_r − S_{r,p(r)}) / 2n, p(r) = r ± n, with
//   w_r = w[r mod wn]: wn = n pair weights, or 2n, one per view.
// simclr_grad (one invocation per element of G, 2n × 2n):
//   G_rc = (a_r e^{S_rc − lse_r} + a_c e^{S_rc − lse_c}) / τ, c ≠ r,
//   minus (a_r + a_{p(r)}) / τ at c = p(r), 0 on the diagonal; a_r = w_r / 2n;
//   invocation 0 also writes the loss Σ_r terms_r (in row order), which
//   saves the loss its own reduction dispatch.

struct Params {
    n: u32,
    wn: u32,
    inv_tau: f32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
@group(0) @binding(5) var<storage, read> lse_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> G: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;

//#include wg_reduce

fn partner(r: u32) -> u32 {
    return select(r - P.n, r + P.n, r < P.n);
}

@compute @workgroup_size(64)
fn simclr_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * nwg.x;
    let rows = 2u * P.n;
    if (r >= rows) { return; }
    let base = r * rows;
    var m = -3.4028235e38;
    for (var c = lid; c < rows; c += 64u) {
        if (c != r) { m = max(m, S[base + c]); }
    }
    let mx = wg_max(m, lid);
    var s = 0.0;
    for (var c = lid; c < rows; c += 64u) {
        if (c != r) { s += exp(S[base + c] - mx); }
    }
    let total = wg_sum(s, lid);
    if (lid == 0u) {
        let l = mx + log(total);
        lse[r] = l;
        terms[r] = w[r % P.wn] * (l - S[base + partner(r)]) / f32(rows);
    }
}

@compute @workgroup_size(256)
fn simclr_grad(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = id.x + id.y * nwg.x * 256u;
    let rows = 2u * P.n;
    if (t >= rows * rows) { return; }
    if (t == 0u) {
        var total = 0.0;
        for (var i = 0u; i < rows; i++) { total += terms[i]; }
        loss[0] = total;
    }
    let r = t / rows;
    let c = t % rows;
    if (r == c) {
        G[t] = 0.0;
        return;
    }
    let inv_rows = 1.0 / f32(rows);
    let ar = w[r % P.wn] * inv_rows;
    let ac = w[c % P.wn] * inv_rows;
    let s = S[t];
    var g = ar * exp(s - lse_in[r]) + ac * exp(s - lse_in[c]);
    // ℓ_r and ℓ_{p(r)} both hold the positive: −(a_r + a_{p(r)}) (2a_r with
    // pair weights, exactly).
    if (c == partner(r)) { g -= ar + ac; }
    G[t] = g * P.inv_tau;
}
