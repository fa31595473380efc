// Weighted SimSiam: L = −(1/2n) Σᵢ [w_i cos(p1ᵢ, z2ᵢ) + w_{n+i} cos(p2ᵢ, z1ᵢ)]
// with w_r = w[r mod wn] (wn = n pair weights, or 2n, one per view),
// gradients for the predictions only (stop-gradient on z). CPU twin:
// scorecl-core `simsiam`; tests: host/tests/simsiam.rs.
//
// p and z are [2n, d] (rows 0..n the first view); one workgroup per pair
// writes both gradient rows and terms[i] = −(w_i cos₁ + w_{n+i} cos₂) / 2n.
// cos(a, b) = (a/max(‖a‖, ε))·(b/max(‖b‖, ε)), ε = 1e-12 (F.normalize).

struct Params {
    n: u32,
    d: u32,
    wn: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> terms: array<f32>;

//#include wg_reduce

const NORM_EPS: f32 = 1e-12;

// cos(p_row, z_row) and ∂/∂p of coef·cos written into grad's row.
fn pair(prow: u32, zrow: u32, coef: f32, lid: u32) -> f32 {
    var pp = 0.0;
    var zz = 0.0;
    var pz = 0.0;
    for (var j = lid; j < P.d; j += 64u) {
        let a = p[prow * P.d + j];
        let b = z[zrow * P.d + j];
        pp += a * a;
        zz += b * b;
        pz += a * b;
    }
    let np_raw = sqrt(wg_sum(pp, lid));
    let nz = max(sqrt(wg_sum(zz, lid)), NORM_EPS);
    let np = max(np_raw, NORM_EPS);
    let c = wg_sum(pz, lid) / (np * nz);
    let clamped = np_raw <= NORM_EPS;
    for (var j = lid; j < P.d; j += 64u) {
        let bh = z[zrow * P.d + j] / nz;
        var g = bh / np;
        if (!clamped) { g = (bh - c * p[prow * P.d + j] / np) / np; }
        grad[prow * P.d + j] = coef * g;
    }
    return c;
}

@compute @workgroup_size(64)
fn simsiam_pairs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = wg.x + wg.y * nwg.x;
    if (i >= P.n) { return; }
    let coef1 = -w[i % P.wn] / f32(2u * P.n);
    let coef2 = -w[(P.n + i) % P.wn] / f32(2u * P.n);
    let c1 = pair(i, P.n + i, coef1, lid);
    let c2 = pair(P.n + i, i, coef2, lid);
    if (lid == 0u) { terms[i] = coef1 * c1 + coef2 * c2; }
}
