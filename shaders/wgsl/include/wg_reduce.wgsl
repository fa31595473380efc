// Workgroup reductions over 64 invocations (workgroup_size(64) kernels).
// With SUBGROUPS the partial sums of each subgroup are combined with
// subgroupAdd/subgroupMax first (any subgroup size), then across
// subgroups through workgroup memory; without, a shared-memory tree.
// Every invocation of the workgroup must call these (they contain
// barriers) and all receive the result.

var<workgroup> wg_scratch: array<f32, 64>;
var<workgroup> wg_total: f32;

fn wg_sum(v: f32, lid: u32) -> f32 {
//#if SUBGROUPS
    // One slot per invocation; each subgroup's total lands in the slot of
    // its first lane, found by the smallest local id in the subgroup.
    let s = subgroupAdd(v);
    let first = subgroupMin(lid);
    workgroupBarrier();
    wg_scratch[lid] = 0.0;
    workgroupBarrier();
    if (lid == first) { wg_scratch[lid] = s; }
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var i = 0u; i < 64u; i++) { total += wg_scratch[i]; }
        wg_total = total;
    }
    workgroupBarrier();
    let total = wg_total;
    workgroupBarrier();
    return total;
//#else
    workgroupBarrier();
    wg_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid < stride) { wg_scratch[lid] += wg_scratch[lid + stride]; }
        workgroupBarrier();
    }
    let total = wg_scratch[0];
    workgroupBarrier();
    return total;
//#endif
}

fn wg_max(v: f32, lid: u32) -> f32 {
//#if SUBGROUPS
    let s = subgroupMax(v);
    let first = subgroupMin(lid);
    workgroupBarrier();
    wg_scratch[lid] = -3.4028235e38;
    workgroupBarrier();
    if (lid == first) { wg_scratch[lid] = s; }
    workgroupBarrier();
    if (lid == 0u) {
        var best = -3.4028235e38;
        for (var i = 0u; i < 64u; i++) { best = max(best, wg_scratch[i]); }
        wg_total = best;
    }
    workgroupBarrier();
    let best = wg_total;
    workgroupBarrier();
    return best;
//#else
    workgroupBarrier();
    wg_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid < stride) { wg_scratch[lid] = max(wg_scratch[lid], wg_scratch[lid + stride]); }
        workgroupBarrier();
    }
    let best = wg_scratch[0];
    workgroupBarrier();
    return best;
//#endif
}
