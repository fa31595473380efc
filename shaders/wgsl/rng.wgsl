// Counter-based random numbers: Philox4x32-10 words, uniforms and normals,
// bit-identical (words, uniforms) to scorecl-core's rng, which is the CPU
// twin; tests: host/tests/rng.rs. Element i of the output is word (or
// normal) start + i of the stream.

struct Params {
    key: vec2<u32>,
    stream: vec2<u32>,
    start_lo: u32,
    start_hi: u32,
    n: u32,
    _p0: u32,
    mean: f32,
    stddev: f32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> words: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

//#include philox

fn index(id: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return id.x + id.y * nwg.x * 256u;
}

// (lo, hi) of start + i.
fn at(i: u32) -> vec2<u32> {
    let lo = P.start_lo + i;
    return vec2<u32>(lo, P.start_hi + select(0u, 1u, lo < i));
}

@compute @workgroup_size(256)
fn fill_u32(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    let w = at(i);
    words[i] = philox_u32(Stream(P.key, P.stream), w.x, w.y);
}

@compute @workgroup_size(256)
fn fill_uniform(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    let w = at(i);
    out[i] = unit_f32(philox_u32(Stream(P.key, P.stream), w.x, w.y));
}

@compute @workgroup_size(256)
fn fill_normal(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(id, nwg);
    if (i >= P.n) { return; }
    let w = at(i);
    out[i] = P.mean + P.stddev * philox_normal(Stream(P.key, P.stream), w.x, w.y);
}
