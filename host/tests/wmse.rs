//! Weighted W-MSE on the GPU against scorecl-core (f64 inside). Chunks are
//! well conditioned here (m ≥ d + 8 or ε > 0): the GPU factors in f32, so
//! its error grows with the condition number κ (about κ·1e-7). Loss within
//! 1e-4 relative; gradient within 1e-4 relative + 1e-4 of its largest
//! entry. A singular chunk must be flagged, named, and leave no NaN.
mod common;

use common::{assert_close, assert_grad, gpus, normals, pair_weights, run_pair_loss, stacked};
use scorecl_host::core::wmse::{self, WmseConfig};
use scorecl_host::core::{GradPair, Views};
use scorecl_host::ops::wmse::Wmse;
use scorecl_host::DType;

#[test]
fn wmse_matches_the_core() {
    for gpu in gpus() {
        for (n, d, m, eps) in [
            (16usize, 1usize, 8usize, 0.0f32),
            (16, 3, 16, 0.0),
            (24, 4, 12, 0.1),
            (64, 8, 32, 0.0),
            (96, 17, 48, 0.05),
            (128, 32, 64, 0.0),
        ] {
            let z1: Vec<f32> = normals(n as u64 * 7, n * d, 1.5)
                .iter()
                .map(|v| v + 0.3)
                .collect();
            let z2: Vec<f32> = z1
                .iter()
                .zip(normals(n as u64 + 1, n * d, 0.8))
                .map(|(a, b)| a + b)
                .collect();
            let w = pair_weights(n as u64, n);
            let cfg = WmseConfig { eps, w_size: m };
            let f = Wmse::new(gpu, n, d, m).unwrap();
            let (got_loss, got_grad) = run_pair_loss(gpu, &z1, &z2, &w, d, |s, z, w, g, l| {
                f.forward_backward(s, z, w, &cfg, g, l)
            });
            f.check(&gpu.download_u32(&f.status).unwrap()).unwrap();
            let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
            let mut scratch = vec![0.0f64; wmse::scratch_len(n, d)];
            let want = wmse::loss(
                Views::new(&z1, &z2, n, d).unwrap(),
                Some(&w),
                None,
                &cfg,
                Some(GradPair::new(&mut g1, &mut g2)),
                &mut scratch,
            )
            .unwrap();
            let want_g: Vec<f32> = g1.iter().chain(&g2).copied().collect();
            assert_close(
                &format!("wmse loss n{n} d{d} m{m}"),
                &[got_loss],
                &[want],
                1e-6,
                1e-4,
            );
            assert_grad(
                &format!("wmse grad n{n} d{d} m{m}"),
                &got_grad,
                &want_g,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn singular_chunks_are_flagged_without_nan() {
    for gpu in gpus() {
        // m − 1 < d and ε = 0: rank-deficient covariance in every chunk.
        let (n, d, m) = (8usize, 6usize, 4usize);
        let z1 = normals(1, n * d, 1.0);
        let z2 = normals(2, n * d, 1.0);
        let f = Wmse::new(gpu, n, d, m).unwrap();
        let z = stacked(gpu, &z1, &z2, d);
        let tw = gpu.upload(&vec![1.0; n], &[n]).unwrap();
        let grad = gpu.tensor(&[2 * n, d], DType::F32).unwrap();
        let loss = gpu.tensor(&[1], DType::F32).unwrap();
        let mut s = gpu.step("wmse singular");
        f.forward_backward(
            &mut s,
            &z,
            &tw,
            &WmseConfig {
                eps: 0.0,
                w_size: m,
            },
            &grad,
            &loss,
        )
        .unwrap();
        let (ig, il, is) = (s.readback(&grad), s.readback(&loss), s.readback(&f.status));
        let out = s.submit().unwrap();
        let err = f.check(&out.u32(is)).unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
        assert!(
            out.f32(il)[0].is_finite() && out.f32(ig).iter().all(|g| g.is_finite()),
            "no NaN"
        );
    }
}
