// ScoreCL pair weights. CPU twin: scorecl-core `weights` (statistic,
// from_statistics, the shuffled control's Fisher–Yates on Philox words);
// tests: host/tests/pair_weights.rs.
//
// score_stat: stat[r] = (accumulate ? stat[r] : 0) + scale·f(row r) for each
//   row of the two views' score fields stacked as [2n, D] (one workgroup
//   per row): kind 0 ‖s‖/√D, 1 σ‖s‖/√D, 2 the view's DSM loss
//   ½‖σ·s + ε‖²/D (eps: the noise that perturbed it). Several levels are
//   averaged by accumulating with scale 1/L.
// pair_weights: one workgroup. Values d_i (m of them): per pair
//   |S(v1_i) − S(v2_i)|^γ (m = n) or per view S(v)^γ (m = 2n, per_view);
//   no information (sum not finite, mean ≤ 1e-12, or all equal for rank and
//   minmax) gives ones; else transform 0 power d/mean, 1 rank
//   2·rank/(m+1) (ties share their mean rank), 2 softmax m·e^{u/T}/Σe^{u/T}
//   with u = d/mean, 3 minmax w_min + (w_max − w_min)(d − min)/(max − min);
//   then w ← (1−α) + α·w, w ← min(w, w_max); mode 0 uniform, 1 score,
//   2 shuffled (invocation 0 permutes with the same draws as the core).

struct Params {
    n: u32,
    dim: u32,
    mode: u32,
    transform: u32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
    per_view: u32,
    key: vec2<u32>,
    stream: vec2<u32>,
    temperature: f32,
    w_min: f32,
    sigma: f32,
    scale: f32,
    kind: u32,
    accumulate: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> stat: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
@group(0) @binding(5) var<storage, read> eps: array<f32>;

//#include philox
//#include wg_reduce

@compute @workgroup_size(64)
fn score_stat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= 2u * P.n) { return; }
    var acc = 0.0;
    if (P.kind == 2u) {
        for (var k = lid; k < P.dim; k += 64u) {
            let v = P.sigma * s[r * P.dim + k] + eps[r * P.dim + k];
            acc += 0.5 * v * v;
        }
    } else {
        for (var k = lid; k < P.dim; k += 64u) { let v = s[r * P.dim + k]; acc += v * v; }
    }
    let total = wg_sum(acc, lid);
    if (lid == 0u) {
        var v = total / f32(P.dim);
        if (P.kind == 0u) { v = sqrt(v); }
        if (P.kind == 1u) { v = abs(P.sigma) * sqrt(v); }
        var prev = 0.0;
        if (P.accumulate != 0u) { prev = stat[r]; }
        stat[r] = prev + P.scale * v;
    }
}

// |d|^γ with the core's conventions: d^0 = 1 (also 0^0), 0^γ = 0.
fn raw_weight(d: f32) -> f32 {
    if (P.gamma == 0.0) { return 1.0; }
    if (d == 0.0) { return 0.0; }
    return pow(d, P.gamma);
}

fn value(i: u32) -> f32 {
    if (P.per_view != 0u) { return raw_weight(stats[i]); }
    return raw_weight(abs(stats[i] - stats[P.n + i]));
}

fn is_finite(x: f32) -> bool { return abs(x) <= 3.4028235e38; }

@compute @workgroup_size(64)
fn pair_weights(@builtin(local_invocation_index) lid: u32) {
    var m = P.n;
    if (P.per_view != 0u) { m = 2u * P.n; }
    if (P.mode == 0u) {
        for (var i = lid; i < m; i += 64u) { w[i] = 1.0; }
        return;
    }
    var acc = 0.0;
    var lo = 3.4028235e38;
    var hi = -3.4028235e38;
    for (var i = lid; i < m; i += 64u) {
        let v = value(i);
        acc += v;
        lo = min(lo, v);
        hi = max(hi, v);
    }
    let sum = wg_sum(acc, lid);
    let mean = sum / f32(m);
    let top = wg_max(hi, lid);
    let bottom = -wg_max(-lo, lid);
    var informative = is_finite(sum) && mean > 1e-12;
    if ((P.transform == 1u || P.transform == 3u) && !(top > bottom)) { informative = false; }
    var zsum = 1.0;
    var umax = 0.0;
    if (P.transform == 2u) {
        // Softmax: u = d/(mean·T), shifted by its maximum.
        umax = top / mean / P.temperature;
        var e = 0.0;
        for (var i = lid; i < m; i += 64u) { e += exp(value(i) / mean / P.temperature - umax); }
        zsum = wg_sum(e, lid);
    }
    for (var i = lid; i < m; i += 64u) {
        var v = 1.0;
        if (informative) {
            let d = value(i);
            if (P.transform == 0u) {
                v = d / mean;
            } else if (P.transform == 1u) {
                var less = 0u;
                var equal = 0u;
                for (var j = 0u; j < m; j++) {
                    let dj = value(j);
                    if (dj < d) { less++; } else if (dj == d) { equal++; }
                }
                let rank = f32(less) + (f32(equal) + 1.0) * 0.5;
                v = 2.0 * rank / (f32(m) + 1.0);
            } else if (P.transform == 2u) {
                v = f32(m) * exp(d / mean / P.temperature - umax) / zsum;
            } else {
                v = P.w_min + (P.w_max - P.w_min) * (d - bottom) / (top - bottom);
            }
        }
        v = (1.0 - P.alpha) + P.alpha * v;
        w[i] = min(v, P.w_max);
    }
    if (P.mode != 2u) { return; }
    storageBarrier();
    workgroupBarrier();
    if (lid == 0u && m > 1u) {
        // Fisher–Yates from the back; swap t draws word t (Philox::shuffle).
        var t = 0u;
        for (var i = m - 1u; i >= 1u; i--) {
            let j = below(philox_u32(Stream(P.key, P.stream), t, 0u), i + 1u);
            let tmp = w[i];
            w[i] = w[j];
            w[j] = tmp;
            t++;
        }
    }
}
