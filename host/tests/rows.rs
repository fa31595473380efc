//! Row L2 normalisation (forward, backward) and log-sum-exp against their
//! CPU twins (the backward is scorecl-core's rule). Tolerance: 1e-5
//! relative + 1e-6 absolute (sums of d terms in f32, d ≤ 1000).
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::ops::rows::{self, cpu};
use scorecl_host::DType;

#[test]
fn l2norm_forward_backward_and_lse() {
    for gpu in gpus() {
        for (r, d) in [(1, 1), (3, 17), (17, 3), (129, 64), (4, 1000), (2, 129)] {
            let mut x = normals(r as u64 * 31 + d as u64, r * d, 1.5);
            if r > 2 {
                // One all-zero row exercises the clamped norm.
                x[d..2 * d].iter_mut().for_each(|v| *v = 0.0);
            }
            let g = normals(7, r * d, 1.0);
            let tx = gpu.upload(&x, &[r, d]).unwrap();
            let tg = gpu.upload(&g, &[r, d]).unwrap();
            let ty = gpu.tensor(&[r, d], DType::F32).unwrap();
            let tn = gpu.tensor(&[r], DType::F32).unwrap();
            let tdx = gpu.tensor(&[r, d], DType::F32).unwrap();
            let tl = gpu.tensor(&[r], DType::F32).unwrap();
            let mut s = gpu.step("rows");
            rows::l2norm(&mut s, &tx, r, d, &ty, &tn).unwrap();
            rows::l2norm_backward(&mut s, &tg, &ty, &tn, r, d, &tdx).unwrap();
            rows::lse(&mut s, &tx, r, d, &tl).unwrap();
            let (iy, inn, idx, il) = (
                s.readback(&ty),
                s.readback(&tn),
                s.readback(&tdx),
                s.readback(&tl),
            );
            let out = s.submit().unwrap();
            let (want_y, want_n) = cpu::l2norm(&x, d);
            assert_close("l2norm y", &out.f32(iy)[..r * d], &want_y, 1e-6, 1e-5);
            assert_close("l2norm norms", &out.f32(inn)[..r], &want_n, 1e-6, 1e-5);
            let want_dx = cpu::l2norm_backward(&x, &g, d);
            // Where the norm is clamped the gradient is g / 1e-12: compare
            // relatively only.
            assert_close("l2norm dx", &out.f32(idx)[..r * d], &want_dx, 1e-5, 1e-5);
            assert_close("lse", &out.f32(il)[..r], &cpu::lse(&x, d), 1e-5, 1e-5);
        }
    }
}
