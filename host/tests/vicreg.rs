//! Weighted VICReg on the GPU against scorecl-core. Loss within 1e-4
//! relative; gradient within 1e-4 relative + 1e-4 of its largest entry.
//! Columns are scaled so that some stds lie below 1 and some above (both
//! sides of the variance hinge).
mod common;

use common::{assert_close, assert_grad, gpus, normals, pair_weights, run_pair_loss};
use scorecl_host::core::vicreg::{self, VicRegConfig};
use scorecl_host::core::{GradPair, Views};
use scorecl_host::ops::vicreg::VicReg;

#[test]
fn vicreg_matches_the_core() {
    for gpu in gpus() {
        for (n, d, cfg) in [
            (2usize, 1usize, VicRegConfig::default()),
            (4, 3, VicRegConfig::default()),
            (
                17,
                33,
                VicRegConfig {
                    sim_coeff: 10.0,
                    std_coeff: 5.0,
                    cov_coeff: 2.0,
                },
            ),
            (64, 128, VicRegConfig::default()),
            (129, 17, VicRegConfig::default()),
        ] {
            let scale = |v: Vec<f32>| -> Vec<f32> {
                v.iter()
                    .enumerate()
                    .map(|(k, x)| x * (0.3 + (k % d) as f32 * 0.2))
                    .collect()
            };
            let x = scale(normals(n as u64, n * d, 1.0));
            let y: Vec<f32> = x
                .iter()
                .zip(normals(n as u64 + 5, n * d, 0.3))
                .map(|(a, b)| a + b)
                .collect();
            let w = pair_weights(n as u64, n);
            let f = VicReg::new(gpu, n, d).unwrap();
            let (got_loss, got_grad) = run_pair_loss(gpu, &x, &y, &w, d, |s, z, w, g, l| {
                f.forward_backward(s, z, w, &cfg, g, l)
            });
            let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
            let mut scratch = vec![0.0; vicreg::scratch_len(d)];
            let want = vicreg::loss(
                Views::new(&x, &y, n, d).unwrap(),
                Some(&w),
                &cfg,
                Some(GradPair::new(&mut g1, &mut g2)),
                &mut scratch,
            )
            .unwrap();
            let want_g: Vec<f32> = g1.iter().chain(&g2).copied().collect();
            assert_close(
                &format!("vicreg loss n{n} d{d}"),
                &[got_loss],
                &[want.loss],
                1e-6,
                1e-4,
            );
            assert_grad(
                &format!("vicreg grad n{n} d{d}"),
                &got_grad,
                &want_g,
                1e-4,
                1e-4,
            );
        }
        assert!(VicReg::new(gpu, 1, 4).is_err());
    }
}
