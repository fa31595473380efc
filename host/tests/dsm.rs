//! DSM on the GPU against scorecl-core: noise levels bit-exact (same Philox
//! words, same table), noise within 2e-6 (transcendentals), noised images
//! within 1e-5; loss and gradient within 1e-4 relative of the core.
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::core::dsm::{self, SigmaSchedule};
use scorecl_host::core::rng::{stream_id, Philox, Purpose};
use scorecl_host::ops::dsm as gdsm;
use scorecl_host::DType;

#[test]
fn perturb_and_loss_match_the_core() {
    for gpu in gpus() {
        let schedule = SigmaSchedule::default();
        for (n, dim, seed) in [
            (1usize, 1usize, 1u64),
            (3, 17, 2),
            (8, 3 * 8 * 8, 3),
            (17, 129, 4),
        ] {
            let x: Vec<f32> = normals(seed, n * dim, 0.3)
                .iter()
                .map(|v| v + 0.5)
                .collect();
            let noise = Philox::new(seed, stream_id(Purpose::DsmNoise, 5));
            let sigmas = Philox::new(seed, stream_id(Purpose::DsmSigma, 5));
            let tx = gpu.upload(&x, &[n, dim]).unwrap();
            let table = gpu
                .upload(&gdsm::sigma_table(&schedule), &[schedule.levels as usize])
                .unwrap();
            let (xn, eps) = (
                gpu.tensor(&[n, dim], DType::F32).unwrap(),
                gpu.tensor(&[n, dim], DType::F32).unwrap(),
            );
            let sig = gpu.tensor(&[n], DType::F32).unwrap();
            let score = normals(seed + 100, n * dim, 3.0);
            let tscore = gpu.upload(&score, &[n, dim]).unwrap();
            let (terms, grad, loss) = (
                gpu.tensor(&[n], DType::F32).unwrap(),
                gpu.tensor(&[n, dim], DType::F32).unwrap(),
                gpu.tensor(&[1], DType::F32).unwrap(),
            );
            let mut s = gpu.step("dsm");
            gdsm::perturb(&mut s, &tx, dim, &table, &noise, &sigmas, &xn, &eps, &sig).unwrap();
            gdsm::loss(&mut s, &tscore, &eps, &sig, dim, &terms, &grad, &loss).unwrap();
            let ids = [
                s.readback(&xn),
                s.readback(&eps),
                s.readback(&sig),
                s.readback(&grad),
                s.readback(&loss),
            ];
            let out = s.submit().unwrap();
            let (g_xn, g_eps, g_sig, g_grad, g_loss) = (
                out.f32(ids[0]),
                out.f32(ids[1]),
                out.f32(ids[2]),
                out.f32(ids[3]),
                out.f32(ids[4]),
            );
            // The core's draws.
            let want_sig: Vec<f32> = (0..n as u64)
                .map(|i| schedule.sigma(schedule.level_for(sigmas.uniform_at(i))))
                .collect();
            let mut want_eps = vec![0.0f32; n * dim];
            noise.fill_normal(0, &mut want_eps);
            assert_eq!(&g_sig[..n], &want_sig[..], "noise levels are bit-exact");
            assert_close("eps", &g_eps[..n * dim], &want_eps, 2e-6, 2e-6);
            let mut want_xn = x.clone();
            dsm::perturb(&mut want_xn, &want_eps, &want_sig, dim).unwrap();
            assert_close("x_noisy", &g_xn[..n * dim], &want_xn, 1e-5, 1e-5);
            // Loss and gradient from the GPU's own noise, against the core.
            let mut want_grad = vec![0.0f32; n * dim];
            let want_loss = dsm::loss(
                &score,
                &g_eps[..n * dim],
                &want_sig,
                dim,
                Some(&mut want_grad),
            )
            .unwrap();
            assert_close("dsm loss", &g_loss[..1], &[want_loss], 0.0, 1e-4);
            assert_close("dsm grad", &g_grad[..n * dim], &want_grad, 1e-7, 1e-4);
        }
    }
}
