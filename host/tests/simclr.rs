//! Weighted NT-Xent on the GPU against scorecl-core. Loss within 1e-4
//! relative; gradient within 1e-4 relative + 1e-4 of its largest entry
//! (f32 rounding of the similarities is amplified by 1/τ through the
//! softmax: about 1e-5 of the gradient scale at τ = 0.05).
mod common;

use common::{assert_close, assert_grad, gpus, normals, pair_weights, run_pair_loss};
use scorecl_host::core::simclr::{self, SimClrConfig};
use scorecl_host::core::{GradPair, Views};
use scorecl_host::ops::simclr::SimClr;

#[test]
fn simclr_matches_the_core() {
    for gpu in gpus() {
        for (n, d, tau) in [
            (1usize, 3usize, 0.5f32),
            (2, 1, 0.2),
            (5, 17, 0.05),
            (17, 129, 0.1),
            (64, 128, 0.2),
            (3, 4, 1.0),
        ] {
            let z1 = normals(n as u64, n * d, 1.0);
            let z2: Vec<f32> = z1
                .iter()
                .zip(normals(n as u64 + 9, n * d, 0.5))
                .map(|(a, b)| a + b)
                .collect();
            // Per pair (n weights) and per view (2n).
            for wn in [n, 2 * n] {
                let w = pair_weights(n as u64 + 3, wn);
                let cfg = SimClrConfig { temperature: tau };
                let f = SimClr::new(gpu, n, d).unwrap();
                let (got_loss, got_grad) = run_pair_loss(gpu, &z1, &z2, &w, d, |s, z, w, g, l| {
                    f.forward_backward(s, z, w, &cfg, g, l)
                });
                let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
                let mut scratch = vec![0.0; simclr::scratch_len(n, d)];
                let want = simclr::loss(
                    Views::new(&z1, &z2, n, d).unwrap(),
                    Some(&w),
                    &cfg,
                    Some(GradPair::new(&mut g1, &mut g2)),
                    &mut scratch,
                )
                .unwrap();
                let want_g: Vec<f32> = g1.iter().chain(&g2).copied().collect();
                assert_close(
                    &format!("simclr loss n{n} d{d} {wn} weights"),
                    &[got_loss],
                    &[want],
                    1e-6,
                    1e-4,
                );
                assert_grad(
                    &format!("simclr grad n{n} d{d} {wn} weights"),
                    &got_grad,
                    &want_g,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}
