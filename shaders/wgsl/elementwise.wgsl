// Elementwise kernels over flat arrays. CPU twins: host/src/ops/elementwise.rs
// `cpu`; tests: host/tests/elementwise.rs.
//
// Every kernel covers `P.n` elements on a 2-D grid of 256-wide groups
// (index = id.x + id.y · nwg.x · 256) so large tensors fit the limits.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    // add_cols: b is indexed by (i / block) · cols + i % cols.
    cols: u32,
    block: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

//#include nan

fn gid(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// out = alpha · a + beta · b
@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = P.alpha * a[i] + P.beta * b[i]; }
}

// out = alpha · a
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = P.alpha * a[i]; }
}

// out = a · b
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = a[i] * b[i]; }
}

// out = max(a + b, 0): a residual block's output (NaN stays NaN, as
// PyTorch's relu; likewise below).
@compute @workgroup_size(256)
fn add_relu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = relu_of(a[i] + b[i]); }
}

// out = max(a, 0)
@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = relu_of(a[i]); }
}

// out = b · [a > 0 or a is NaN]: the ReLU gradient (a: pre-activation,
// b: upstream), as PyTorch's threshold_backward.
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = select(0.0, b[i], relu_passes(a[i])); }
}

// out = alpha
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = P.alpha; }
}

// out = a + alpha · b[(i / block) · cols + i % cols]: adds a row vector to
// every row (block = n), or one row vector per group of rows.
@compute @workgroup_size(256)
fn add_cols(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = a[i] + P.alpha * b[(i / P.block) * P.cols + i % P.cols]; }
}

// out = alpha · b[i / block]: expands one value per block of `block`
// elements (the global-average-pool gradient, alpha = 1/HW).
@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = P.alpha * b[i / P.block]; }
}

// out = alpha · a / b[i / block]: divides each block of `block` elements
// by its own value (the score s = f / σ per sample).
@compute @workgroup_size(256)
fn div_blocks(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = P.alpha * a[i] / b[i / P.block]; }
}

//#if F16
@group(0) @binding(4) var<storage, read> h_in: array<f16>;
@group(0) @binding(5) var<storage, read_write> h_out: array<f16>;

// f32 → f16 (round to nearest even).
@compute @workgroup_size(256)
fn to_f16(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { h_out[i] = f16(a[i]); }
}

// f16 → f32 (exact).
@compute @workgroup_size(256)
fn from_f16(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) { out[i] = f32(h_in[i]); }
}
//#endif
