//! Weighted SimSiam on the GPU against scorecl-core. Loss within 1e-4
//! relative; gradient within 1e-4 relative + 1e-5 of its largest entry.
mod common;

use common::{assert_close, assert_grad, gpus, normals, pair_weights, stacked};
use scorecl_host::core::{simsiam, GradPair, Views};
use scorecl_host::ops::simsiam::SimSiam;
use scorecl_host::DType;

#[test]
fn simsiam_matches_the_core() {
    for gpu in gpus() {
        for (n, d) in [(1usize, 1usize), (2, 3), (5, 17), (17, 129), (64, 256)] {
            let z1 = normals(n as u64, n * d, 1.0);
            let z2 = normals(n as u64 + 1, n * d, 1.0);
            let p1: Vec<f32> = z1
                .iter()
                .zip(normals(n as u64 + 2, n * d, 0.5))
                .map(|(a, b)| a + b)
                .collect();
            let mut p2 = normals(n as u64 + 3, n * d, 1.0);
            if n > 3 {
                p2[2 * d..3 * d].iter_mut().for_each(|v| *v = 0.0); // a clamped norm
            }
            // Per pair (n weights) and per view (2n).
            for wn in [n, 2 * n] {
                let w = pair_weights(n as u64 + 4, wn);
                let f = SimSiam::new(gpu, n, d).unwrap();
                let (p, z) = (stacked(gpu, &p1, &p2, d), stacked(gpu, &z1, &z2, d));
                let tw = gpu.upload(&w, &[wn]).unwrap();
                let grad = gpu.tensor(&[2 * n, d], DType::F32).unwrap();
                let loss = gpu.tensor(&[1], DType::F32).unwrap();
                let mut s = gpu.step("simsiam");
                f.forward_backward(&mut s, &p, &z, &tw, &grad, &loss)
                    .unwrap();
                let (ig, il) = (s.readback(&grad), s.readback(&loss));
                let out = s.submit().unwrap();
                let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
                let want = simsiam::loss(
                    Views::new(&p1, &p2, n, d).unwrap(),
                    Views::new(&z1, &z2, n, d).unwrap(),
                    Some(&w),
                    Some(GradPair::new(&mut g1, &mut g2)),
                )
                .unwrap();
                let want_g: Vec<f32> = g1.iter().chain(&g2).copied().collect();
                assert_close(
                    &format!("simsiam loss n{n} {wn} weights"),
                    &out.f32(il)[..1],
                    &[want],
                    1e-6,
                    1e-4,
                );
                // Rows with a clamped norm have gradients of order 1e12: they
                // are compared relatively like the rest.
                assert_grad(
                    &format!("simsiam grad n{n} {wn} weights"),
                    &out.f32(ig)[..2 * n * d],
                    &want_g,
                    1e-4,
                    1e-5,
                );
            }
        }
    }
}
