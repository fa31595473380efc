// Reductions along one axis of a tensor viewed as [outer, axis, inner]:
// out[o, i] = scale · Σ_a f(x[o, a, i]) with f = identity (sum, mean with
// scale 1/axis) or square (sum of squares). CPU twin: host/src/ops/reduce.rs
// `cpu::reduce`; tests: host/tests/reduce.rs.
//
// `reduce_rows` (inner = 1): one workgroup per output, invocations stride
// along the axis, then a workgroup reduction (subgroups where present).
// `reduce_cols` (inner > 1): one invocation per output, a loop along the
// axis with contiguous neighbours.

struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    square: u32,
    scale: f32,
    // Outputs are written at out[offset + …].
    offset: u32,
    // 1: add to the existing output (gradient accumulation).
    accumulate: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

//#include wg_reduce

fn f(v: f32) -> f32 {
    return select(v, v * v, P.square != 0u);
}

@compute @workgroup_size(64)
fn reduce_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let o = wg.x + wg.y * nwg.x;
    if (o >= P.outer) { return; }
    var acc = 0.0;
    let base = o * P.axis;
    for (var a = lid; a < P.axis; a += 64u) { acc += f(x[base + a]); }
    let total = wg_sum(acc, lid);
    if (lid == 0u) {
        let prev = select(0.0, out[P.offset + o], P.accumulate != 0u);
        out[P.offset + o] = prev + total * P.scale;
    }
}

@compute @workgroup_size(64)
fn reduce_cols(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = id.x + id.y * nwg.x * 64u;
    if (t >= P.outer * P.inner) { return; }
    let o = t / P.inner;
    let i = t % P.inner;
    var acc = 0.0;
    let base = o * P.axis * P.inner + i;
    for (var a = 0u; a < P.axis; a++) { acc += f(x[base + a * P.inner]); }
    let prev = select(0.0, out[P.offset + t], P.accumulate != 0u);
    out[P.offset + t] = prev + acc * P.scale;
}
