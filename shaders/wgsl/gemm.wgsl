// GEMM: C[b] = act(alpha · op(A[b]) · op(B[b]) + beta · C[b] + bias)
//
// op(X) = X or Xᵀ (TRANS_A / TRANS_B); row-major storage with leading
// dimensions lda, ldb, ldc, starting at element offsets a_off, b_off, c_off;
// batch strides sa, sb, sc in elements (0 broadcasts one operand to every
// batch entry); bias (BIAS) per column; act = ReLU (RELU) or identity.
// With `reduce` set, the batch is summed instead: C = act(alpha · Σ_b
// op(A[b]) op(B[b]) + beta · C + bias) (one C; a convolution's weight
// gradient over the images of a batch). Rows r_off.. of C are computed (the
// host splits very tall products into several dispatches).
//
// CPU twin: host/src/ops/gemm.rs `cpu::gemm`; tests: host/tests/gemm.rs.
//
// Three kernels (the first two also in the HALF_B and HALF_A + HALF_B
// variants, f16 operands with f32 accumulation), and the cooperative-matrix
// kernels of the COOP variants (below, opt-in):
// * `gemm`: portable, any shape. Each invocation owns a 4 × 4 block of C in
//   registers; 8 × 8 invocations per workgroup (a 32 × 32 tile).
// * `gemm_tiled`: for GPUs (discrete and integrated), any shape. A 64 × 64
//   tile of C per workgroup of 16 × 16 invocations (4 × 4 each); A and B
//   pass through workgroup memory in k-blocks of 16, loaded coalesced
//   (consecutive invocations read consecutive addresses for either
//   transpose), zero-padded at the edges. 8 KiB of workgroup memory; the
//   slowest pattern on CPU drivers, so never chosen there.
// * `gemm_sg8` (SUBGROUPS): for CPU drivers, where every storage load is a
//   per-lane loop and dominates the cost. A workgroup is one subgroup of 8
//   lanes computing an 8 × 32 tile: lane j owns columns 4j..4j+4 of the
//   tile for all 8 rows (32 accumulators). Each k-block of 4 loads one
//   vec4 of A per lane (8 rows × 4 k between the 8 lanes), shared with
//   subgroupBroadcast, and 4 vec4 of B: 5 vector loads per 128 FMAs.
//   Needs vec4 alignment: K % 4 == 0, M % 4 == 0 (TRANS_A), ldb % 4 == 0
//   (B's rows may be padded past N, as a convolution's column matrix is on
//   CPU drivers), offsets and batch strides of A and B multiples of 4. Workgroups run row blocks fastest so that
//   consecutive ones reuse the same K × 32 panel of B from cache.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override BIAS: bool = false;
override RELU: bool = false;

struct Params {
    m: u32, n: u32, k: u32, r_off: u32,
    lda: u32, ldb: u32, ldc: u32, a_off: u32,
    sa: u32, sb: u32, sc: u32, b_off: u32,
    alpha: f32, beta: f32, c_off: u32, batch: u32,
    reduce: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
// HALF_A / HALF_B: that operand is stored as f16 (half the bytes to read)
// and widened to f32 on load; products and sums stay in f32.
//#if HALF_A
@group(0) @binding(1) var<storage, read> Am: array<f16>;
//#else
@group(0) @binding(1) var<storage, read> Am: array<f32>;
//#endif
//#if HALF_B
@group(0) @binding(2) var<storage, read> Bm: array<f16>;
//#else
@group(0) @binding(2) var<storage, read> Bm: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> Cout: array<f32>;

//#include nan

fn epilogue(idx: u32, c: u32, acc: f32) -> f32 {
    var v = P.alpha * acc;
    if (P.beta != 0.0) { v += P.beta * Cout[idx]; }
    if (BIAS) { v += bias[c]; }
    if (RELU) { v = relu_of(v); }
    return v;
}

fn a_at(base: u32, r: u32, kk: u32) -> f32 {
    if (TRANS_A) { return f32(Am[base + kk * P.lda + r]); }
    return f32(Am[base + r * P.lda + kk]);
}

fn b_at(base: u32, kk: u32, c: u32) -> f32 {
    if (TRANS_B) { return f32(Bm[base + c * P.ldb + kk]); }
    return f32(Bm[base + kk * P.ldb + c]);
}

// Staging for the workgroup-memory kernels: load slot e of a k-block of
// A (tile rows × kb k-steps) or B (kb × tile columns) gives the element's
// place in the block (i: row or column, k) and its value, zero past the
// edges. Consecutive slots read consecutive addresses for either transpose.
struct Slot { i: u32, k: u32, v: f32 }

fn stage_a(e: u32, tile: u32, kb: u32, row0: u32, k0: u32, abase: u32) -> Slot {
    var r = e / kb;
    var kk = e % kb;
    if (TRANS_A) { r = e % tile; kk = e / tile; }
    var v = 0.0;
    if (row0 + r < P.m && k0 + kk < P.k) { v = a_at(abase, row0 + r, k0 + kk); }
    return Slot(r, kk, v);
}

fn stage_b(e: u32, tile: u32, kb: u32, col0: u32, k0: u32, bbase: u32) -> Slot {
    var c = e % tile;
    var kk = e / tile;
    if (TRANS_B) { c = e / kb; kk = e % kb; }
    var v = 0.0;
    if (col0 + c < P.n && k0 + kk < P.k) { v = b_at(bbase, k0 + kk, col0 + c); }
    return Slot(c, kk, v);
}

@compute @workgroup_size(8, 8, 1)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let r0 = P.r_off + (wg.y * 8u + l.y) * 4u;
    let c0 = (wg.x * 8u + l.x) * 4u;
    if (r0 >= P.m || c0 >= P.n) { return; }
    // One batch entry per z, or all of them summed (reduce).
    let nb = select(1u, P.batch, P.reduce != 0u);
    let bt0 = select(wg.z, 0u, P.reduce != 0u);
    // Rows and columns past the edge read row/column 0 (always valid) and
    // are never stored.
    var rr: array<u32, 4>;
    var cc: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) { rr[i] = select(0u, r0 + i, r0 + i < P.m); }
    for (var j = 0u; j < 4u; j++) { cc[j] = select(0u, c0 + j, c0 + j < P.n); }
    var acc: array<vec4<f32>, 4>;
    for (var bi = 0u; bi < nb; bi++) {
        let abase = P.a_off + (bt0 + bi) * P.sa;
        let bbase = P.b_off + (bt0 + bi) * P.sb;
        for (var kk = 0u; kk < P.k; kk++) {
            let b = vec4<f32>(b_at(bbase, kk, cc[0]), b_at(bbase, kk, cc[1]), b_at(bbase, kk, cc[2]), b_at(bbase, kk, cc[3]));
            acc[0] = fma(vec4<f32>(a_at(abase, rr[0], kk)), b, acc[0]);
            acc[1] = fma(vec4<f32>(a_at(abase, rr[1], kk)), b, acc[1]);
            acc[2] = fma(vec4<f32>(a_at(abase, rr[2], kk)), b, acc[2]);
            acc[3] = fma(vec4<f32>(a_at(abase, rr[3], kk)), b, acc[3]);
        }
    }
    let cbase = P.c_off + bt0 * P.sc;
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + i;
        if (r >= P.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + j;
            if (c >= P.n) { break; }
            let idx = cbase + r * P.ldc + c;
            Cout[idx] = epilogue(idx, c, acc[i][j]);
        }
    }
}

const TT: u32 = 64u;
const TKB: u32 = 16u;
var<workgroup> As: array<f32, 1024>; // [k][row] of the 64 × 16 A block
var<workgroup> Bs: array<f32, 1024>; // [k][col] of the 16 × 64 B block

@compute @workgroup_size(16, 16, 1)
fn gemm_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row0 = P.r_off + wg.y * TT;
    let col0 = wg.x * TT;
    let nb = select(1u, P.batch, P.reduce != 0u);
    let bt0 = select(wg.z, 0u, P.reduce != 0u);
    var acc: array<vec4<f32>, 4>;
    // No early return: every invocation reaches every barrier.
    for (var bi = 0u; bi < nb; bi++) {
        let abase = P.a_off + (bt0 + bi) * P.sa;
        let bbase = P.b_off + (bt0 + bi) * P.sb;
        for (var k0 = 0u; k0 < P.k; k0 += TKB) {
            for (var q = 0u; q < 4u; q++) {
                let e = li + q * 256u;
                let sa = stage_a(e, TT, TKB, row0, k0, abase);
                As[sa.k * TT + sa.i] = sa.v;
                let sb = stage_b(e, TT, TKB, col0, k0, bbase);
                Bs[sb.k * TT + sb.i] = sb.v;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < TKB; kk++) {
                let ai = kk * TT + l.y * 4u;
                let bi4 = kk * TT + l.x * 4u;
                let b = vec4<f32>(Bs[bi4], Bs[bi4 + 1u], Bs[bi4 + 2u], Bs[bi4 + 3u]);
                acc[0] = fma(vec4<f32>(As[ai]), b, acc[0]);
                acc[1] = fma(vec4<f32>(As[ai + 1u]), b, acc[1]);
                acc[2] = fma(vec4<f32>(As[ai + 2u]), b, acc[2]);
                acc[3] = fma(vec4<f32>(As[ai + 3u]), b, acc[3]);
            }
            workgroupBarrier();
        }
    }
    let cbase = P.c_off + bt0 * P.sc;
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + l.y * 4u + i;
        if (r >= P.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + l.x * 4u + j;
            if (c >= P.n) { break; }
            let idx = cbase + r * P.ldc + c;
            Cout[idx] = epilogue(idx, c, acc[i][j]);
        }
    }
}

//#if SUBGROUPS
@group(0) @binding(5) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> B4: array<vec4<f32>>;

// acc += a.x·b[0] + a.y·b[1] + a.z·b[2] + a.w·b[3]
fn fma4(acc: vec4<f32>, a: vec4<f32>, b: array<vec4<f32>, 4>) -> vec4<f32> {
    return fma(vec4(a.x), b[0], fma(vec4(a.y), b[1], fma(vec4(a.z), b[2], fma(vec4(a.w), b[3], acc))));
}

// The 8 rows of A for this k-block, each as its 4 k values. Every lane's
// vec4 is broadcast once (literal lane ids: a register extract on CPU
// drivers); with TRANS_A lane 4h + kk holds rows 4h..4h+4 at k-step kk, so
// the rows are gathered from the components.
fn a_rows(av: vec4<f32>) -> array<vec4<f32>, 8> {
    var s: array<vec4<f32>, 8>;
    s[0] = subgroupBroadcast(av, 0u);
    s[1] = subgroupBroadcast(av, 1u);
    s[2] = subgroupBroadcast(av, 2u);
    s[3] = subgroupBroadcast(av, 3u);
    s[4] = subgroupBroadcast(av, 4u);
    s[5] = subgroupBroadcast(av, 5u);
    s[6] = subgroupBroadcast(av, 6u);
    s[7] = subgroupBroadcast(av, 7u);
    if (!TRANS_A) { return s; }
    var a: array<vec4<f32>, 8>;
    for (var h = 0u; h < 2u; h++) {
        for (var q = 0u; q < 4u; q++) {
            a[4u * h + q] = vec4<f32>(s[4u * h][q], s[4u * h + 1u][q], s[4u * h + 2u][q], s[4u * h + 3u][q]);
        }
    }
    return a;
}

@compute @workgroup_size(8, 1, 1)
fn gemm_sg8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let r0 = P.r_off + wg.x * 8u;
    let c = wg.y * 32u + lane * 4u;
    let k4 = P.k / 4u;
    let nb = select(1u, P.batch, P.reduce != 0u);
    let bt0 = select(wg.z, 0u, P.reduce != 0u);
    // Offsets below are relative to batch entry bt0; entry bt0 + bi adds
    // bi · sa / 4 (resp. sb / 4) vec4s.
    let abase = (P.a_off + bt0 * P.sa) / 4u;
    let bbase = (P.b_off + bt0 * P.sb) / 4u;
    // A: which vec4 this lane loads per k-block (clamped to valid rows).
    var a_off: u32;
    var a_step: u32;
    if (TRANS_A) {
        // A stored k × m: lane 4h + kk loads rows r0+4h..+4 at k = 4kb + kk
        // (M % 4 == 0, so a group that starts inside the matrix is whole).
        let h = lane / 4u;
        let kk = lane % 4u;
        let col = min(r0 + 4u * h, P.m - 4u) / 4u;
        a_off = abase + kk * (P.lda / 4u) + col;
        a_step = P.lda;          // 4 k-steps of A = 4 · (lda / 4) vec4s
    } else {
        // A stored m × k: lane i loads row r0+i at k = 4kb..4kb+4.
        let row = min(r0 + lane, P.m - 1u);
        a_off = abase + row * (P.lda / 4u);
        a_step = 1u;
    }
    // B: this lane's 4 columns (clamped to the last valid vec4).
    // TRANS_B: column c + j is storage row c + j, each clamped on its own
    // (N need not be a multiple of 4); otherwise one vec4 of columns.
    let s = P.ldb / 4u;
    var bt_off: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) { bt_off[j] = bbase + min(c + j, P.n - 1u) * s; }
    let b_off = bbase + min(c, P.ldb - 4u) / 4u;
    var acc: array<vec4<f32>, 8>;
    for (var bi = 0u; bi < nb; bi++) {
    let ao = a_off + bi * (P.sa / 4u);
    let bo = b_off + bi * (P.sb / 4u);
    var bto: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) { bto[j] = bt_off[j] + bi * (P.sb / 4u); }
    for (var kb = 0u; kb < k4; kb++) {
        let av = A4[ao + kb * a_step];
        var b: array<vec4<f32>, 4>;
        if (TRANS_B) {
            let t0 = B4[bto[0] + kb];
            let t1 = B4[bto[1] + kb];
            let t2 = B4[bto[2] + kb];
            let t3 = B4[bto[3] + kb];
            b[0] = vec4<f32>(t0.x, t1.x, t2.x, t3.x);
            b[1] = vec4<f32>(t0.y, t1.y, t2.y, t3.y);
            b[2] = vec4<f32>(t0.z, t1.z, t2.z, t3.z);
            b[3] = vec4<f32>(t0.w, t1.w, t2.w, t3.w);
        } else {
            let o = bo + kb * 4u * s;
            b[0] = B4[o];
            b[1] = B4[o + s];
            b[2] = B4[o + 2u * s];
            b[3] = B4[o + 3u * s];
        }
        let a = a_rows(av);
        acc[0] = fma4(acc[0], a[0], b);
        acc[1] = fma4(acc[1], a[1], b);
        acc[2] = fma4(acc[2], a[2], b);
        acc[3] = fma4(acc[3], a[3], b);
        acc[4] = fma4(acc[4], a[4], b);
        acc[5] = fma4(acc[5], a[5], b);
        acc[6] = fma4(acc[6], a[6], b);
        acc[7] = fma4(acc[7], a[7], b);
    }
    }
    if (c >= P.n) { return; }
    let cbase = P.c_off + bt0 * P.sc;
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + i;
        if (r >= P.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            if (c + j >= P.n) { break; }
            let idx = cbase + r * P.ldc + c + j;
            Cout[idx] = epilogue(idx, c + j, acc[i][j]);
        }
    }
}
//#endif

//#if COOP
// Cooperative-matrix GEMM (wgpu's experimental `wgpu_cooperative_matrix`,
// tensor cores / simdgroup matrices), opt-in. A workgroup of 32
// invocations computes a 32 × 32 tile of C (TC): 8 × 8 f32 fragments for
// f32 operands (COOP), or 16 × 16 f16 fragments with an f32 accumulator
// for f16 operands (COOP with F16, HALF_A, HALF_B: the operands are f16
// already, so nothing is rounded), whichever the adapter lists. A and B pass through workgroup
// memory exactly as in `gemm_tiled` (any shape, any transpose, zero-padded
// edges), so the fragments are loaded row-major from there; C goes back
// through workgroup memory for the epilogue. The host uses it only where
// subgroups are at most 32 wide: the workgroup is then one subgroup or
// several that each compute the same fragments (identical values).
// Cooperative operations need uniform control flow: no early return.
const TC: u32 = 32u;
//#if F16
const FK: u32 = 16u;                       // k-block: one fragment deep
var<workgroup> Ah: array<f16, 512>;        // [row][k] 32 × 16
var<workgroup> Bh: array<f16, 512>;        // [k][col] 16 × 32
//#else
const FK: u32 = 8u;
var<workgroup> Ah: array<f32, 256>;        // [row][k] 32 × 8
var<workgroup> Bh: array<f32, 256>;        // [k][col] 8 × 32
//#endif
var<workgroup> Cs: array<f32, 1024>;       // [row][col] 32 × 32

@compute @workgroup_size(32, 1, 1)
fn gemm_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = P.r_off + wg.y * TC;
    let col0 = wg.x * TC;
    let nb = select(1u, P.batch, P.reduce != 0u);
    let bt0 = select(wg.z, 0u, P.reduce != 0u);
//#if F16
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    let F = 16u;
//#else
    var c00 = coop_mat8x8<f32, C>();
    var c01 = coop_mat8x8<f32, C>();
    var c10 = coop_mat8x8<f32, C>();
    var c11 = coop_mat8x8<f32, C>();
    let F = 8u;
//#endif
    // With 8 × 8 fragments the 2 × 2 of them cover 16 × 16: four quadrant
    // passes cover the 32 × 32 tile (qr, qc = quadrant offsets).
    let passes = (TC / (2u * F)) * (TC / (2u * F));
    for (var q = 0u; q < passes; q++) {
        let qr = (q / (TC / (2u * F))) * 2u * F;
        let qc = (q % (TC / (2u * F))) * 2u * F;
//#if F16
        c00 = coop_mat16x16<f32, C>();
        c01 = coop_mat16x16<f32, C>();
        c10 = coop_mat16x16<f32, C>();
        c11 = coop_mat16x16<f32, C>();
//#else
        c00 = coop_mat8x8<f32, C>();
        c01 = coop_mat8x8<f32, C>();
        c10 = coop_mat8x8<f32, C>();
        c11 = coop_mat8x8<f32, C>();
//#endif
        for (var bi = 0u; bi < nb; bi++) {
            let abase = P.a_off + (bt0 + bi) * P.sa;
            let bbase = P.b_off + (bt0 + bi) * P.sb;
            for (var k0 = 0u; k0 < P.k; k0 += FK) {
                for (var e = li; e < TC * FK; e += 32u) {
                    let sa = stage_a(e, TC, FK, row0, k0, abase);
                    let sb = stage_b(e, TC, FK, col0, k0, bbase);
//#if F16
                    Ah[sa.i * FK + sa.k] = f16(sa.v);
                    Bh[sb.k * TC + sb.i] = f16(sb.v);
//#else
                    Ah[sa.i * FK + sa.k] = sa.v;
                    Bh[sb.k * TC + sb.i] = sb.v;
//#endif
                }
                workgroupBarrier();
//#if F16
                let a0 = coopLoadT<coop_mat16x16<f16, A>>(&Ah[qr * FK], FK);
                let a1 = coopLoadT<coop_mat16x16<f16, A>>(&Ah[(qr + F) * FK], FK);
                let b0 = coopLoadT<coop_mat16x16<f16, B>>(&Bh[qc], TC);
                let b1 = coopLoadT<coop_mat16x16<f16, B>>(&Bh[qc + F], TC);
//#else
                let a0 = coopLoadT<coop_mat8x8<f32, A>>(&Ah[qr * FK], FK);
                let a1 = coopLoadT<coop_mat8x8<f32, A>>(&Ah[(qr + F) * FK], FK);
                let b0 = coopLoadT<coop_mat8x8<f32, B>>(&Bh[qc], TC);
                let b1 = coopLoadT<coop_mat8x8<f32, B>>(&Bh[qc + F], TC);
//#endif
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                workgroupBarrier();
            }
        }
        coopStoreT(c00, &Cs[qr * TC + qc], TC);
        coopStoreT(c01, &Cs[qr * TC + qc + F], TC);
        coopStoreT(c10, &Cs[(qr + F) * TC + qc], TC);
        coopStoreT(c11, &Cs[(qr + F) * TC + qc + F], TC);
    }
    workgroupBarrier();
    let cbase = P.c_off + bt0 * P.sc;
    for (var e = li; e < TC * TC; e += 32u) {
        let r = row0 + e / TC;
        let c = col0 + e % TC;
        if (r < P.m && c < P.n) {
            let idx = cbase + r * P.ldc + c;
            Cout[idx] = epilogue(idx, c, Cs[e]);
        }
    }
}
//#endif

// `gemm_wide`: for GPUs, any shape; a 128 × 128 tile of C per workgroup of
// 16 × 16 invocations, each owning an 8 × 8 block (64 accumulators), so each
// k-step reads 2 + 2 vec4s of workgroup memory for 64 FMAs (`gemm_tiled`:
// 8 scalars for 16). A and B pass through workgroup memory in k-blocks of
// 8, loaded as in `gemm_tiled` (coalesced for either transpose,
// zero-padded). Opt-in (`GemmKernel::Wide`) until measured on a GPU.
const WT: u32 = 128u;
const WKB: u32 = 8u;
var<workgroup> Aw: array<vec4<f32>, 256>; // [k][row / 4] of the 128 × 8 A block
var<workgroup> Bw: array<vec4<f32>, 256>; // [k][col / 4] of the 8 × 128 B block

@compute @workgroup_size(16, 16, 1)
fn gemm_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let row0 = P.r_off + wg.y * WT;
    let col0 = wg.x * WT;
    let nb = select(1u, P.batch, P.reduce != 0u);
    let bt0 = select(wg.z, 0u, P.reduce != 0u);
    var acc: array<vec4<f32>, 16>; // row i: acc[2i] (cols 0..4), acc[2i + 1] (4..8)
    // No early return: every invocation reaches every barrier.
    for (var bi = 0u; bi < nb; bi++) {
        let abase = P.a_off + (bt0 + bi) * P.sa;
        let bbase = P.b_off + (bt0 + bi) * P.sb;
        for (var k0 = 0u; k0 < P.k; k0 += WKB) {
            for (var q = 0u; q < 4u; q++) {
                let e = li + q * 256u;
                let sa = stage_a(e, WT, WKB, row0, k0, abase);
                Aw[sa.k * 32u + sa.i / 4u][sa.i % 4u] = sa.v;
                let sb = stage_b(e, WT, WKB, col0, k0, bbase);
                Bw[sb.k * 32u + sb.i / 4u][sb.i % 4u] = sb.v;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < WKB; kk++) {
                let a0 = Aw[kk * 32u + l.y * 2u];
                let a1 = Aw[kk * 32u + l.y * 2u + 1u];
                let b0 = Bw[kk * 32u + l.x * 2u];
                let b1 = Bw[kk * 32u + l.x * 2u + 1u];
                for (var i = 0u; i < 4u; i++) {
                    acc[2u * i] = fma(vec4<f32>(a0[i]), b0, acc[2u * i]);
                    acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), b1, acc[2u * i + 1u]);
                    acc[2u * i + 8u] = fma(vec4<f32>(a1[i]), b0, acc[2u * i + 8u]);
                    acc[2u * i + 9u] = fma(vec4<f32>(a1[i]), b1, acc[2u * i + 9u]);
                }
            }
            workgroupBarrier();
        }
    }
    let cbase = P.c_off + bt0 * P.sc;
    for (var i = 0u; i < 8u; i++) {
        let r = row0 + l.y * 8u + i;
        if (r >= P.m) { break; }
        for (var j = 0u; j < 8u; j++) {
            let c = col0 + l.x * 8u + j;
            if (c >= P.n) { break; }
            let idx = cbase + r * P.ldc + c;
            Cout[idx] = epilogue(idx, c, acc[2u * i + j / 4u][j % 4u]);
        }
    }
}
