// Denoising score matching. CPU twin: scorecl-core `dsm` (loss, perturb,
// SigmaSchedule) and `rng`; tests: host/tests/dsm.rs.
//
// dsm_perturb: for clean images x (n × D): sample i takes the noise level
//   sigma_table[level_for(uniform word i of the sigma stream)], the noise
//   eps[i, k] = normal number i·D + k of the noise stream, and
//   x_noisy = x + sigma_i · eps. In a data-parallel run (half > 0) the
//   draws are the global sample's: local sample i of the view-stacked
//   layout is global sample g = (i / half)·global + first + i % half, and
//   its words are g and g·D + k.
// dsm_loss: per row i, terms[i] = ½‖sigma_i s_i + eps_i‖² / n and
//   grad[i, k] = sigma_i (sigma_i s_ik + eps_ik) / n (one workgroup per row).

struct Params {
    noise_key: vec2<u32>,
    noise_stream: vec2<u32>,
    sigma_key: vec2<u32>,
    sigma_stream: vec2<u32>,
    n: u32,
    dim: u32,
    levels: u32,
    first: u32,
    half: u32,
    global: u32,
    _p0: vec2<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> sigma_table: array<f32>;
@group(0) @binding(3) var<storage, read_write> x_noisy: array<f32>;
@group(0) @binding(4) var<storage, read_write> eps: array<f32>;
@group(0) @binding(5) var<storage, read_write> sigma: array<f32>;
@group(0) @binding(6) var<storage, read> score: array<f32>;
@group(0) @binding(7) var<storage, read> noise: array<f32>;
@group(0) @binding(8) var<storage, read> sig: array<f32>;
@group(0) @binding(9) var<storage, read_write> terms: array<f32>;
@group(0) @binding(10) var<storage, read_write> grad: array<f32>;

//#include philox
//#include wg_reduce

// SigmaSchedule::level_for.
fn level_for(u: f32) -> u32 {
    return min(u32(clamp(u, 0.0, 1.0) * f32(P.levels)), P.levels - 1u);
}

@compute @workgroup_size(256)
fn dsm_perturb(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = id.x + id.y * nwg.x * 256u;
    if (t >= P.n * P.dim) { return; }
    let i = t / P.dim;
    var g = i;
    if (P.half > 0u) { g = (i / P.half) * P.global + P.first + i % P.half; }
    let u = unit_f32(philox_u32(Stream(P.sigma_key, P.sigma_stream), g, 0u));
    let s = sigma_table[level_for(u)];
    let e = philox_normal(Stream(P.noise_key, P.noise_stream), g * P.dim + t % P.dim, 0u);
    eps[t] = e;
    x_noisy[t] = x[t] + s * e;
    if (t % P.dim == 0u) { sigma[i] = s; }
}

@compute @workgroup_size(64)
fn dsm_loss(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = wg.x + wg.y * nwg.x;
    if (i >= P.n) { return; }
    let s = sig[i];
    let inv_n = 1.0 / f32(P.n);
    var acc = 0.0;
    for (var k = lid; k < P.dim; k += 64u) {
        let j = i * P.dim + k;
        let r = s * score[j] + noise[j];
        acc += 0.5 * r * r;
        grad[j] = s * r * inv_n;
    }
    let total = wg_sum(acc, lid);
    if (lid == 0u) { terms[i] = total * inv_n; }
}
