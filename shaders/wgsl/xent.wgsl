// Softmax cross-entropy for the linear probe. CPU twin: scorecl-core
// `xent` (softmax_xent); tests: host/tests/linear_probe.rs.
//
// xent: one invocation per row of logits [rows, classes] with label
//   y_r = labels[y_off + r]:
//   loss[r] = logsumexp(z_r) - z_r[y_r] and
//   grad[r, c] = scale * (softmax(z_r)[c] - [c == y_r])
//   (scale = 1 / batch for the gradient of the mean loss).

struct Params {
    rows: u32,
    classes: u32,
    scale: f32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn xent(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= P.rows) { return; }
    let b = r * P.classes;
    var m = logits[b];
    for (var c = 1u; c < P.classes; c++) { m = max(m, logits[b + c]); }
    var sum = 0.0;
    for (var c = 0u; c < P.classes; c++) { sum += exp(logits[b + c] - m); }
    let y = labels[P.y_off + r];
    loss[r] = m + log(sum) - logits[b + y];
    let inv = 1.0 / sum;
    for (var c = 0u; c < P.classes; c++) {
        var g = exp(logits[b + c] - m) * inv;
        if (c == y) { g -= 1.0; }
        grad[b + c] = P.scale * g;
    }
}
