// Batch normalisation (BatchNorm2d / BatchNorm1d, PyTorch semantics) on
// x viewed as [N, C, S] (S = H·W, or 1 for BatchNorm1d on [N, C]).
// CPU twin: host/src/ops/batchnorm.rs `cpu`; tests: host/tests/batchnorm.rs.
//
// bn_stats (training, one workgroup per channel): batch mean and biased
//   variance (two passes), invstd = 1/sqrt(var + eps), and the running
//   statistics updated with momentum and the unbiased variance.
// bn_stats_partial (a rank of a synchronised batch norm): the rank's
//   batch mean into `mean` and the sum of its squared deviations (M2)
//   into `invstd`, for the host to combine over the ranks (crate::dist).
// bn_eval_stats: mean = running_mean, invstd = 1/sqrt(running_var + eps).
// bn_apply: y = (x − mean)·invstd·γ + β (AFFINE), then ReLU (RELU).
// bn_apply_add: the same plus a residual before the ReLU,
//   y = relu(bn(x) + r): a ResNet block's second BN, shortcut and ReLU in
//   one pass.
// bn_backward_reduce (one workgroup per channel): s1 = Σ dy, s2 = Σ dy·x̂;
//   with AFFINE, dβ += s1 and dγ += s2.
// bn_backward_apply: dx = γ·invstd·(dy − s1/cnt − x̂·s2/cnt) in training,
//   γ·invstd·dy in evaluation (TRAINING false); cnt = n·s·ranks (ranks > 1
//   in a synchronised batch norm, whose sums are the ranks' total).
// bn_backward_reduce_relu, bn_backward_apply_relu: the same for a batch
//   norm followed by a ReLU whose output is y_relu: dy is replaced by
//   dy·[y_relu > 0] as it is read (the ReLU's backward fused in: no masked
//   gradient is written).

override AFFINE: bool = true;
override RELU: bool = false;
override TRAINING: bool = true;

struct Params {
    n: u32,
    c: u32,
    s: u32,
    ranks: u32,
    eps: f32,
    momentum: f32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> sums: array<f32>;
@group(0) @binding(11) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(12) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(13) var<storage, read_write> dx: array<f32>;
@group(0) @binding(14) var<storage, read> mean_in: array<f32>;
@group(0) @binding(15) var<storage, read> invstd_in: array<f32>;
@group(0) @binding(16) var<storage, read> residual: array<f32>;
@group(0) @binding(17) var<storage, read> y_relu: array<f32>;

//#include wg_reduce
//#include nan

fn flat(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// Element j of channel c's n·s values.
fn at(c: u32, j: u32) -> u32 {
    return ((j / P.s) * P.c + c) * P.s + j % P.s;
}

@compute @workgroup_size(64)
fn bn_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= P.c) { return; }
    let cnt = P.n * P.s;
    var acc = 0.0;
    for (var j = lid; j < cnt; j += 64u) { acc += x[at(c, j)]; }
    let mu = wg_sum(acc, lid) / f32(cnt);
    var dev = 0.0;
    for (var j = lid; j < cnt; j += 64u) { let d = x[at(c, j)] - mu; dev += d * d; }
    let var_b = wg_sum(dev, lid) / f32(cnt);
    if (lid == 0u) {
        mean[c] = mu;
        invstd[c] = 1.0 / sqrt(var_b + P.eps);
        let unbiased = var_b * f32(cnt) / f32(max(cnt, 2u) - 1u);
        running_mean[c] = (1.0 - P.momentum) * running_mean[c] + P.momentum * mu;
        running_var[c] = (1.0 - P.momentum) * running_var[c] + P.momentum * unbiased;
    }
}

@compute @workgroup_size(64)
fn bn_stats_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= P.c) { return; }
    let cnt = P.n * P.s;
    var acc = 0.0;
    for (var j = lid; j < cnt; j += 64u) { acc += x[at(c, j)]; }
    let mu = wg_sum(acc, lid) / f32(cnt);
    var dev = 0.0;
    for (var j = lid; j < cnt; j += 64u) { let d = x[at(c, j)] - mu; dev += d * d; }
    let m2 = wg_sum(dev, lid);
    if (lid == 0u) {
        mean[c] = mu;
        invstd[c] = m2;
    }
}

// The count behind the sums of bn_backward_apply: this rank's, or all
// ranks' in a synchronised batch norm.
fn total_count() -> f32 {
    return f32(P.n * P.s) * f32(max(P.ranks, 1u));
}

@compute @workgroup_size(64)
fn bn_eval_stats(@builtin(global_invocation_id) id: vec3<u32>) {
    let c = id.x;
    if (c >= P.c) { return; }
    mean[c] = running_mean[c];
    invstd[c] = 1.0 / sqrt(running_var[c] + P.eps);
}

@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    if (t >= P.n * P.c * P.s) { return; }
    let c = (t / P.s) % P.c;
    var v = (x[t] - mean_in[c]) * invstd_in[c];
    if (AFFINE) { v = v * gamma[c] + beta[c]; }
    if (RELU) { v = relu_of(v); }
    y[t] = v;
}

@compute @workgroup_size(256)
fn bn_apply_add(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    if (t >= P.n * P.c * P.s) { return; }
    let c = (t / P.s) % P.c;
    var v = (x[t] - mean_in[c]) * invstd_in[c];
    if (AFFINE) { v = v * gamma[c] + beta[c]; }
    v += residual[t];
    if (RELU) { v = relu_of(v); }
    y[t] = v;
}

@compute @workgroup_size(64)
fn bn_backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= P.c) { return; }
    let cnt = P.n * P.s;
    let mu = mean_in[c];
    let is = invstd_in[c];
    var a1 = 0.0;
    var a2 = 0.0;
    for (var j = lid; j < cnt; j += 64u) {
        let i = at(c, j);
        let g = dy[i];
        a1 += g;
        a2 += g * (x[i] - mu) * is;
    }
    let s1 = wg_sum(a1, lid);
    let s2 = wg_sum(a2, lid);
    if (lid == 0u) {
        sums[c] = s1;
        sums[P.c + c] = s2;
        if (AFFINE) {
            dbeta[c] = dbeta[c] + s1;
            dgamma[c] = dgamma[c] + s2;
        }
    }
}

@compute @workgroup_size(256)
fn bn_backward_apply(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    if (t >= P.n * P.c * P.s) { return; }
    let c = (t / P.s) % P.c;
    var k = invstd_in[c];
    if (AFFINE) { k = k * gamma[c]; }
    if (TRAINING) {
        let inv_cnt = 1.0 / total_count();
        let xhat = (x[t] - mean_in[c]) * invstd_in[c];
        dx[t] = k * (dy[t] - sums[c] * inv_cnt - xhat * sums[P.c + c] * inv_cnt);
    } else {
        dx[t] = k * dy[t];
    }
}

fn dy_relu(i: u32) -> f32 {
    return select(0.0, dy[i], relu_passes(y_relu[i]));
}

@compute @workgroup_size(64)
fn bn_backward_reduce_relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let c = wg.x + wg.y * nwg.x;
    if (c >= P.c) { return; }
    let cnt = P.n * P.s;
    let mu = mean_in[c];
    let is = invstd_in[c];
    var a1 = 0.0;
    var a2 = 0.0;
    for (var j = lid; j < cnt; j += 64u) {
        let i = at(c, j);
        let g = dy_relu(i);
        a1 += g;
        a2 += g * (x[i] - mu) * is;
    }
    let s1 = wg_sum(a1, lid);
    let s2 = wg_sum(a2, lid);
    if (lid == 0u) {
        sums[c] = s1;
        sums[P.c + c] = s2;
        if (AFFINE) {
            dbeta[c] = dbeta[c] + s1;
            dgamma[c] = dgamma[c] + s2;
        }
    }
}

@compute @workgroup_size(256)
fn bn_backward_apply_relu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat(id, nwg);
    if (t >= P.n * P.c * P.s) { return; }
    let c = (t / P.s) % P.c;
    var k = invstd_in[c];
    if (AFFINE) { k = k * gamma[c]; }
    let g = dy_relu(t);
    if (TRAINING) {
        let inv_cnt = 1.0 / total_count();
        let xhat = (x[t] - mean_in[c]) * invstd_in[c];
        dx[t] = k * (g - sums[c] * inv_cnt - xhat * sums[P.c + c] * inv_cnt);
    } else {
        dx[t] = k * g;
    }
}
