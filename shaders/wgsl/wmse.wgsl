// Weighted W-MSE: whitening by Cholesky per chunk of m rows, and its
// exact gradient. CPU twin: scorecl-core `wmse` (same formulas, f64 there,
// f32 here); tests: host/tests/wmse.rs.
//
// The views are stacked as z = [z1; z2] (2n × d) and split into K = 2n/m
// chunks (the first n/m of the first view). Per chunk the host records:
//   mean (reduce), Xc (add_cols), C' = (1−ε)·XcᵀXc/(m−1) (batched GEMM),
//   wmse_cholesky (adds εI, factors in place, flags failures in status),
//   wmse_whiten: Ẑ rows solve L ẑ = xc,
//   wmse_pairs: terms and G = ∂L/∂Ẑ from the weighted cosines,
//   Pm = −GᵀẐ (batched GEMM), wmse_sym: S = ½(tril P + tril(P,−1)ᵀ),
//   wmse_solve_cols: Y = L⁻ᵀS, wmse_solve_rows: Ā = Y L⁻¹,
//   wmse_symscale: C̄ = (1−ε)·2/(m−1)·sym(Ā),
//   ḡ = chunk mean of G (reduce), wmse_grad_rows: (G − ḡ) L⁻¹,
//   grad += Xc C̄ (batched GEMM).
//
// A pivot ≤ d·ε_f32·max diag (numerically not positive definite) sets
// status[chunk] = column + 1 and is replaced by 1, so nothing becomes NaN;
// the caller checks status.

struct Params {
    n: u32,
    d: u32,
    m: u32,
    chunks: u32,
    eps: f32,
    f: f32,
    tol_scale: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> xc: array<f32>;
@group(0) @binding(2) var<storage, read_write> L: array<f32>;
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> Z: array<f32>;
@group(0) @binding(5) var<storage, read> z_in: array<f32>;
@group(0) @binding(6) var<storage, read> w: array<f32>;
@group(0) @binding(7) var<storage, read_write> terms: array<f32>;
@group(0) @binding(8) var<storage, read_write> G: array<f32>;
@group(0) @binding(9) var<storage, read> Pm: array<f32>;
@group(0) @binding(10) var<storage, read_write> A: array<f32>;
@group(0) @binding(11) var<storage, read_write> Cb: array<f32>;
@group(0) @binding(12) var<storage, read> gbar: array<f32>;
@group(0) @binding(13) var<storage, read_write> grad: array<f32>;
@group(0) @binding(14) var<storage, read> L_in: array<f32>;
@group(0) @binding(15) var<storage, read> G_in: array<f32>;

//#include wg_reduce

const NORM_EPS: f32 = 1e-12;

fn flat(id: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return id.x + id.y * nwg.x * wg;
}

// One workgroup per chunk: C' + εI = LLᵀ in place (lower triangle).
@compute @workgroup_size(64)
fn wmse_cholesky(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= P.chunks) { return; }
    let d = P.d;
    let base = c * d * d;
    if (lid == 0u) { status[c] = 0u; }
    var md = -3.4028235e38;
    for (var j = lid; j < d; j += 64u) {
        let v = L[base + j * d + j] + P.eps;
        L[base + j * d + j] = v;
        md = max(md, v);
    }
    let max_diag = wg_max(md, lid);
    let tol = P.tol_scale * max_diag;
    storageBarrier();
    for (var j = 0u; j < d; j++) {
        var acc = 0.0;
        for (var q = lid; q < j; q += 64u) { let v = L[base + j * d + q]; acc += v * v; }
        var s = L[base + j * d + j] - wg_sum(acc, lid);
        if (!(s > tol) || !(max_diag > 0.0)) {
            if (lid == 0u && status[c] == 0u) { status[c] = j + 1u; }
            s = 1.0;
        }
        let pivot = sqrt(s);
        storageBarrier();
        if (lid == 0u) { L[base + j * d + j] = pivot; }
        for (var i = j + 1u + lid; i < d; i += 64u) {
            var v = L[base + i * d + j];
            for (var q = 0u; q < j; q++) { v -= L[base + i * d + q] * L[base + j * d + q]; }
            L[base + i * d + j] = v / pivot;
        }
        storageBarrier();
    }
}

// One invocation per row: L ẑ = xc (forward substitution).
@compute @workgroup_size(64)
fn wmse_whiten(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat(id, nwg, 64u);
    if (r >= 2u * P.n) { return; }
    let d = P.d;
    let lb = (r / P.m) * d * d;
    for (var j = 0u; j < d; j++) {
        var v = xc[r * d + j];
        for (var q = 0u; q < j; q++) { v -= L_in[lb + j * d + q] * Z[r * d + q]; }
        Z[r * d + j] = v / L_in[lb + j * d + j];
    }
}

// One workgroup per pair: terms[i] = wᵢ (2 − 2 cos(ẑ1ᵢ, ẑ2ᵢ)) / n and the
// two rows of G = ∂L/∂Ẑ.
@compute @workgroup_size(64)
fn wmse_pairs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg.x + wg.y * nwg.x;
    if (i >= P.n) { return; }
    let d = P.d;
    let ra = i * d;
    let rb = (P.n + i) * d;
    var aa = 0.0;
    var bb = 0.0;
    var ab = 0.0;
    for (var j = lid; j < d; j += 64u) {
        let a = z_in[ra + j];
        let b = z_in[rb + j];
        aa += a * a;
        bb += b * b;
        ab += a * b;
    }
    let na_raw = sqrt(wg_sum(aa, lid));
    let nb_raw = sqrt(wg_sum(bb, lid));
    let dot = wg_sum(ab, lid);
    let na = max(na_raw, NORM_EPS);
    let nb = max(nb_raw, NORM_EPS);
    let cos = dot / (na * nb);
    let coef = -2.0 * w[i] / f32(P.n);
    for (var j = lid; j < d; j += 64u) {
        let a = z_in[ra + j];
        let b = z_in[rb + j];
        var ga = (b / nb) / na;
        if (na_raw > NORM_EPS) { ga = (b / nb - cos * a / na) / na; }
        var gb = (a / na) / nb;
        if (nb_raw > NORM_EPS) { gb = (a / na - cos * b / nb) / nb; }
        G[ra + j] = coef * ga;
        G[rb + j] = coef * gb;
    }
    if (lid == 0u) { terms[i] = w[i] * (2.0 - 2.0 * cos) / f32(P.n); }
}

// S = ½(tril(P) + tril(P, −1)ᵀ), full and symmetric, per chunk.
@compute @workgroup_size(256)
fn wmse_sym(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg, 256u);
    let dd = P.d * P.d;
    if (t >= P.chunks * dd) { return; }
    let base = (t / dd) * dd;
    let j = (t % dd) / P.d;
    let k = t % P.d;
    A[t] = 0.5 * select(Pm[base + k * P.d + j], Pm[t], j >= k);
}

// Y = L⁻ᵀ S: one invocation per (chunk, column), back substitution.
@compute @workgroup_size(64)
fn wmse_solve_cols(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg, 64u);
    if (t >= P.chunks * P.d) { return; }
    let d = P.d;
    let base = (t / d) * d * d;
    let col = t % d;
    for (var jj = 0u; jj < d; jj++) {
        let j = d - 1u - jj;
        var v = A[base + j * d + col];
        for (var q = j + 1u; q < d; q++) { v -= L_in[base + q * d + j] * A[base + q * d + col]; }
        A[base + j * d + col] = v / L_in[base + j * d + j];
    }
}

// Ā = Y L⁻¹: one invocation per (chunk, row), back substitution with Lᵀ.
@compute @workgroup_size(64)
fn wmse_solve_rows(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg, 64u);
    if (t >= P.chunks * P.d) { return; }
    let d = P.d;
    let base = (t / d) * d * d;
    let row = base + (t % d) * d;
    for (var jj = 0u; jj < d; jj++) {
        let j = d - 1u - jj;
        var v = A[row + j];
        for (var q = j + 1u; q < d; q++) { v -= L_in[base + q * d + j] * A[row + q]; }
        A[row + j] = v / L_in[base + j * d + j];
    }
}

// C̄ = f · ½(Ā + Āᵀ), f = (1−ε)·2/(m−1).
@compute @workgroup_size(256)
fn wmse_symscale(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg, 256u);
    let dd = P.d * P.d;
    if (t >= P.chunks * dd) { return; }
    let base = (t / dd) * dd;
    let j = (t % dd) / P.d;
    let k = t % P.d;
    Cb[t] = 0.5 * P.f * (A[t] + A[base + k * P.d + j]);
}

// grad row = (G − ḡ) L⁻¹: solve Lᵀ y = (g − ḡ) per row, in place in grad.
@compute @workgroup_size(64)
fn wmse_grad_rows(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat(id, nwg, 64u);
    if (r >= 2u * P.n) { return; }
    let d = P.d;
    let c = r / P.m;
    let lb = c * d * d;
    for (var jj = 0u; jj < d; jj++) {
        let j = d - 1u - jj;
        var v = G_in[r * d + j] - gbar[c * d + j];
        for (var q = j + 1u; q < d; q++) { v -= L_in[lb + q * d + j] * grad[r * d + q]; }
        grad[r * d + j] = v / L_in[lb + j * d + j];
    }
}
