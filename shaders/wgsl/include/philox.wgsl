// Philox4x32-10, bit-identical to scorecl-core's `rng` module (its CPU
// twin; tests: host/tests/rng.rs). Counter layout:
// ctr = [block_lo, block_hi, stream_lo, stream_hi], key = [seed_lo, seed_hi].

// (hi, lo) of the 64-bit product a·b with 16-bit halves (WGSL has no u64).
fn mulhilo32(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let lo = (ll & 0xFFFFu) | (mid << 16u);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, lo);
}

fn philox4x32_10(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var c = ctr_in;
    var k = key_in;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo32(0xD2511F53u, c.x);
        let p1 = mulhilo32(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// A (seed, stream) pair as in `Philox::new`: key = seed, stream = ctr.zw.
struct Stream {
    key: vec2<u32>,
    stream: vec2<u32>,
}

// Block `index` (a 64-bit index given as (lo, hi)).
fn philox_block(s: Stream, lo: u32, hi: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(lo, hi, s.stream.x, s.stream.y), s.key);
}

// Word i (i < 2^32 · 4 here: the block index is i / 4 with hi = 0 unless
// given) of the stream.
fn philox_u32(s: Stream, i_lo: u32, i_hi: u32) -> u32 {
    // 64-bit i = i_hi · 2^32 + i_lo; block = i / 4, word = i % 4.
    let block_lo = (i_lo >> 2u) | (i_hi << 30u);
    let block_hi = i_hi >> 2u;
    let b = philox_block(s, block_lo, block_hi);
    return b[i_lo & 3u];
}

// Uniform in [0, 1): (x >> 8) · 2^-24.
fn unit_f32(x: u32) -> f32 {
    return f32(x >> 8u) * (1.0 / 16777216.0);
}

// Uniform in (0, 1]: ((x >> 8) + 1) · 2^-24.
fn open_unit_f32(x: u32) -> f32 {
    return f32((x >> 8u) + 1u) * (1.0 / 16777216.0);
}

// Box–Muller on two words: (r cos θ, r sin θ).
fn box_muller(a: u32, b: u32) -> vec2<f32> {
    let r = sqrt(-2.0 * log(open_unit_f32(a)));
    let theta = 6.2831855 * unit_f32(b);
    return vec2<f32>(r * cos(theta), r * sin(theta));
}

// Standard normal number i (64-bit index (lo, hi)): block i / 4, pair
// (0, 1) or (2, 3), cos then sin.
fn philox_normal(s: Stream, i_lo: u32, i_hi: u32) -> f32 {
    let block_lo = (i_lo >> 2u) | (i_hi << 30u);
    let block_hi = i_hi >> 2u;
    let b = philox_block(s, block_lo, block_hi);
    let j = i_lo & 3u;
    var n: vec2<f32>;
    if (j < 2u) { n = box_muller(b.x, b.y); } else { n = box_muller(b.z, b.w); }
    return select(n.x, n.y, (j & 1u) == 1u);
}

// ⌊x·n / 2^32⌋: an integer uniform in 0..n.
fn below(x: u32, n: u32) -> u32 {
    return mulhilo32(x, n).x;
}
