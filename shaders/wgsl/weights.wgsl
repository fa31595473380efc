// ScoreCL pair weights. CPU twin: scorecl-core `weights` (statistic,
// from_statistics, the shuffled control's Fisher–Yates on Philox words);
// tests: host/tests/weights.rs.
//
// score_stat: stat[r] = ‖s_r‖₂ / √D for each row of the two views' score
//   fields stacked as [2n, D] (one workgroup per row).
// pair_weights: one workgroup: raw_i = |S(v1_i) − S(v2_i)|^γ,
//   w_i = raw_i / mean(raw) (ones when mean ≤ 1e-12), w ← (1−α) + α·w,
//   w ← min(w, w_max); mode 0 uniform, 1 score, 2 shuffled (invocation 0
//   permutes with the same draws as the core).

struct Params {
    n: u32,
    dim: u32,
    mode: u32,
    _p0: u32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
    _p1: u32,
    key: vec2<u32>,
    stream: vec2<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> stat: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;

//#include philox
//#include wg_reduce

@compute @workgroup_size(64)
fn score_stat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= 2u * P.n) { return; }
    var acc = 0.0;
    for (var k = lid; k < P.dim; k += 64u) { let v = s[r * P.dim + k]; acc += v * v; }
    let total = wg_sum(acc, lid);
    if (lid == 0u) { stat[r] = sqrt(total / f32(P.dim)); }
}

// |d|^γ with the core's conventions: d^0 = 1 (also 0^0), 0^γ = 0.
fn raw_weight(d: f32) -> f32 {
    if (P.gamma == 0.0) { return 1.0; }
    if (d == 0.0) { return 0.0; }
    return pow(d, P.gamma);
}

@compute @workgroup_size(64)
fn pair_weights(@builtin(local_invocation_index) lid: u32) {
    if (P.mode == 0u) {
        for (var i = lid; i < P.n; i += 64u) { w[i] = 1.0; }
        return;
    }
    var acc = 0.0;
    for (var i = lid; i < P.n; i += 64u) { acc += raw_weight(abs(stats[i] - stats[P.n + i])); }
    let mean = wg_sum(acc, lid) / f32(P.n);
    for (var i = lid; i < P.n; i += 64u) {
        var v = 1.0;
        if (mean > 1e-12) { v = raw_weight(abs(stats[i] - stats[P.n + i])) / mean; }
        v = (1.0 - P.alpha) + P.alpha * v;
        w[i] = min(v, P.w_max);
    }
    if (P.mode != 2u) { return; }
    storageBarrier();
    workgroupBarrier();
    if (lid == 0u && P.n > 1u) {
        // Fisher–Yates from the back; swap t draws word t (Philox::shuffle).
        var t = 0u;
        for (var i = P.n - 1u; i >= 1u; i--) {
            let j = below(philox_u32(Stream(P.key, P.stream), t, 0u), i + 1u);
            let tmp = w[i];
            w[i] = w[j];
            w[j] = tmp;
            t++;
        }
    }
}
