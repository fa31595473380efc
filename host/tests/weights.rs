//! ScoreCL pair weights on the GPU against scorecl-core, every mode:
//! statistics within 1e-5 relative, weights within 1e-4 relative, and the
//! shuffled control permuted exactly as the core permutes.
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::core::rng::{stream_id, Philox, Purpose};
use scorecl_host::core::weights::{self, ScoreWeightConfig, WeightMode};
use scorecl_host::core::Views;
use scorecl_host::ops::weights as gw;
use scorecl_host::DType;

#[test]
fn weights_match_the_core_in_every_mode() {
    for gpu in gpus() {
        for (n, dim) in [
            (1usize, 1usize),
            (2, 3),
            (17, 48),
            (129, 12),
            (256, 3 * 32 * 32),
        ] {
            let s1 = normals(n as u64, n * dim, 1.0);
            let s2: Vec<f32> = normals(n as u64 + 1, n * dim, 1.0)
                .iter()
                .enumerate()
                .map(|(k, v)| v * (1.0 + (k / dim) as f32 * 0.05))
                .collect();
            let stacked: Vec<f32> = s1.iter().chain(&s2).copied().collect();
            let ts = gpu.upload(&stacked, &[2 * n, dim]).unwrap();
            let shuffle = Philox::new(9, stream_id(Purpose::Shuffle, 3));
            for cfg in [
                ScoreWeightConfig::default(),
                ScoreWeightConfig {
                    mode: WeightMode::Uniform,
                    ..Default::default()
                },
                ScoreWeightConfig {
                    mode: WeightMode::Shuffled,
                    ..Default::default()
                },
                ScoreWeightConfig {
                    gamma: 2.0,
                    alpha: 0.5,
                    w_max: 1.5,
                    ..Default::default()
                },
                ScoreWeightConfig {
                    gamma: 0.0,
                    ..Default::default()
                },
            ] {
                let stats = gpu.tensor(&[2 * n], DType::F32).unwrap();
                let w = gpu.tensor(&[n], DType::F32).unwrap();
                let mut s = gpu.step("weights");
                gw::pair_weights(&mut s, &ts, dim, &cfg, &shuffle, &stats, &w).unwrap();
                let (is, iw) = (s.readback(&stats), s.readback(&w));
                let out = s.submit().unwrap();
                let mut want = vec![0.0f32; n];
                let mut want_stats = vec![0.0f32; 2 * n];
                weights::score_weights(
                    Views::new(&s1, &s2, n, dim).unwrap(),
                    &cfg,
                    &shuffle,
                    &mut want,
                    &mut want_stats,
                )
                .unwrap();
                if cfg.mode != WeightMode::Uniform {
                    assert_close("statistics", &out.f32(is)[..2 * n], &want_stats, 1e-7, 1e-5);
                }
                assert_close(
                    &format!("{cfg:?} weights"),
                    &out.f32(iw)[..n],
                    &want,
                    1e-6,
                    1e-4,
                );
            }
        }
    }
}
