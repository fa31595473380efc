// Row operations on a [rows, d] matrix, one workgroup of 64 per row.
// CPU twins: host/src/ops/rows.rs `cpu` (built on scorecl-core's
// normalisation); tests: host/tests/rows.rs.
//
// l2norm:          y = x / max(‖x‖, 1e-12), norms = ‖x‖ (F.normalize)
// l2norm_backward: dx = (g − y (y·g)) / ‖x‖, or g / 1e-12 where clamped
// lse:             out = max + log Σ exp(x − max)

struct Params {
    rows: u32,
    d: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> yn: array<f32>;
@group(0) @binding(6) var<storage, read> nrm: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

//#include wg_reduce

const NORM_EPS: f32 = 1e-12;

fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

@compute @workgroup_size(64)
fn l2norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wg, nwg);
    if (r >= P.rows) { return; }
    let base = r * P.d;
    var ss = 0.0;
    for (var j = lid; j < P.d; j += 64u) { let v = x[base + j]; ss += v * v; }
    let norm = sqrt(wg_sum(ss, lid));
    let inv = 1.0 / max(norm, NORM_EPS);
    for (var j = lid; j < P.d; j += 64u) { y[base + j] = x[base + j] * inv; }
    if (lid == 0u) { norms[r] = norm; }
}

@compute @workgroup_size(64)
fn l2norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wg, nwg);
    if (r >= P.rows) { return; }
    let base = r * P.d;
    let norm = nrm[r];
    if (norm > NORM_EPS) {
        var yg = 0.0;
        for (var j = lid; j < P.d; j += 64u) { yg += yn[base + j] * g[base + j]; }
        let dot = wg_sum(yg, lid);
        for (var j = lid; j < P.d; j += 64u) { dx[base + j] = (g[base + j] - yn[base + j] * dot) / norm; }
    } else {
        for (var j = lid; j < P.d; j += 64u) { dx[base + j] = g[base + j] / NORM_EPS; }
    }
}

@compute @workgroup_size(64)
fn lse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wg, nwg);
    if (r >= P.rows) { return; }
    let base = r * P.d;
    var m = -3.4028235e38;
    for (var j = lid; j < P.d; j += 64u) { m = max(m, x[base + j]); }
    let mx = wg_max(m, lid);
    var s = 0.0;
    for (var j = lid; j < P.d; j += 64u) { s += exp(x[base + j] - mx); }
    let total = wg_sum(s, lid);
    if (lid == 0u) { out[r] = mx + log(total); }
}
