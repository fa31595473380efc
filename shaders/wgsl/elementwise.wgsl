// Elementwise kernels over flat f32 arrays. CPU twins: host/src/ops/elementwise.rs
// (plain Rust loops); tests: host/tests/elementwise.rs.
//
// Every kernel reads `P.n` elements; the grid is 2-D (x: 256-wide groups,
// y: rows of 65535 groups) so that large tensors fit the dispatch limits.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

fn gid(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// out = alpha * a + beta * b
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid(id, nwg);
    if (i < P.n) {
        out[i] = P.alpha * a[i] + P.beta * b[i];
    }
}
