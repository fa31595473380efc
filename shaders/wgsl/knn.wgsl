// Weighted k-NN on the GPU. CPU twin: scorecl-core `knn` (predict, vote);
// tests: host/tests/knn.rs.
//
// The host computes cosine similarities of a tile of test rows against a
// chunk of training rows (GEMM of L2-normalised features), then:
// knn_merge: one invocation per test row scans the chunk's similarities in
//   training order and keeps the k largest (sorted, descending) as the
//   core does: a similarity enters only when greater than the k-th, and
//   after every kept entry >= it, so ties keep the lower training index.
//   The lists persist across chunks; col0 = 0 starts them afresh.
// knn_vote: per test row, scores[c] = sum over the k neighbours of class c
//   of exp((sim - top) / T); the prediction is the argmax, lowest class on
//   ties.

struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    col0: u32,
    classes: u32,
    row0: u32,
    temperature: f32,
    _p: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> sims: array<f32>;
@group(0) @binding(2) var<storage, read_write> top_sim: array<f32>;
@group(0) @binding(3) var<storage, read_write> top_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> count: array<u32>;
@group(0) @binding(5) var<storage, read> vote_sim: array<f32>;
@group(0) @binding(6) var<storage, read> vote_idx: array<u32>;
@group(0) @binding(7) var<storage, read> labels: array<u32>;
@group(0) @binding(8) var<storage, read_write> scores: array<f32>;
@group(0) @binding(9) var<storage, read_write> preds: array<u32>;

@compute @workgroup_size(64)
fn knn_merge(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= P.rows) { return; }
    let k = P.k;
    let base = r * k;
    var len = count[r];
    if (P.col0 == 0u) { len = 0u; }
    for (var c = 0u; c < P.cols; c++) {
        let s = sims[r * P.cols + c];
        if (len == k && !(s > top_sim[base + k - 1u])) { continue; }
        var p = k - 1u;
        if (len < k) { p = len; }
        while (p > 0u && top_sim[base + p - 1u] < s) {
            top_sim[base + p] = top_sim[base + p - 1u];
            top_idx[base + p] = top_idx[base + p - 1u];
            p--;
        }
        top_sim[base + p] = s;
        top_idx[base + p] = P.col0 + c;
        len = min(len + 1u, k);
    }
    count[r] = len;
}

@compute @workgroup_size(64)
fn knn_vote(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= P.rows) { return; }
    let k = P.k;
    let base = r * k;
    let sb = r * P.classes;
    for (var c = 0u; c < P.classes; c++) { scores[sb + c] = 0.0; }
    var top = vote_sim[base];
    for (var j = 1u; j < k; j++) { top = max(top, vote_sim[base + j]); }
    for (var j = 0u; j < k; j++) {
        let l = labels[vote_idx[base + j]];
        scores[sb + l] += exp((vote_sim[base + j] - top) / P.temperature);
    }
    var best = 0u;
    for (var c = 1u; c < P.classes; c++) {
        if (scores[sb + c] > scores[sb + best]) { best = c; }
    }
    preds[P.row0 + r] = best;
}
