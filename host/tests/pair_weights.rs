//! ScoreCL pair weights on the GPU against scorecl-core, every mode:
//! statistics within 1e-5 relative, weights within 1e-4 relative, and the
//! shuffled control permuted exactly as the core permutes.
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::core::rng::{stream_id, Philox, Purpose};
use scorecl_host::core::weights::{
    self, Apply, ScoreWeightConfig, Statistic, Transform, WeightMode,
};
use scorecl_host::core::Views;
use scorecl_host::ops::pair_weights as gw;
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

/// Every transform (power, rank, softmax, minmax), per pair and per view,
/// score and shuffled, with and without ties among the statistics: the
/// GPU's weights within 1e-6 + 1e-4 relative of the core's
/// `from_statistics` on the same statistics (rank: exactly, as ranks of
/// the same f32 values are the same counts).
#[test]
fn every_transform_matches_the_core_per_pair_and_per_view() {
    for gpu in gpus() {
        for (n, ties) in [
            (1usize, false),
            (3, true),
            (40, false),
            (97, true),
            (256, false),
        ] {
            let mut stats = normals(n as u64 * 7, 2 * n, 1.0);
            for v in stats.iter_mut() {
                *v = v.abs() + 0.5;
                if ties {
                    *v = (*v * 2.0).round() / 2.0;
                }
            }
            let ts = gpu.upload(&stats, &[2 * n]).unwrap();
            let shuffle = Philox::new(5, stream_id(Purpose::Shuffle, 1));
            for transform in [
                Transform::Power,
                Transform::Rank,
                Transform::Softmax,
                Transform::MinMax,
            ] {
                for apply in [Apply::Pair, Apply::View] {
                    for mode in [WeightMode::Score, WeightMode::Shuffled] {
                        let cfg = ScoreWeightConfig {
                            mode,
                            gamma: 1.5,
                            alpha: 0.8,
                            w_max: if transform == Transform::MinMax {
                                1.75
                            } else {
                                3.0
                            },
                            transform,
                            temperature: 0.5,
                            w_min: 0.25,
                            apply,
                        };
                        let m = apply.count(n);
                        let w = gpu.tensor(&[m], DType::F32).unwrap();
                        let mut s = gpu.step("weights");
                        gw::weights_from_stats(&mut s, &cfg, &shuffle, &ts, &w).unwrap();
                        let iw = s.readback(&w);
                        let out = s.submit().unwrap();
                        let mut want = vec![0.0f32; m];
                        weights::from_statistics(
                            &stats[..n],
                            &stats[n..],
                            &cfg,
                            &shuffle,
                            &mut want,
                        )
                        .unwrap();
                        let (abs, rel) = if transform == Transform::Rank {
                            (0.0, 1e-6)
                        } else {
                            (1e-6, 1e-4)
                        };
                        assert_close(
                            &format!("{} n {n} {cfg:?}", gpu.describe()),
                            &out.f32(iw)[..m],
                            &want,
                            abs,
                            rel,
                        );
                    }
                }
            }
        }
    }
}

/// The per-view statistic of every kind, averaged over three levels by
/// accumulation (scale 1/3), against the mean of the core's
/// `view_statistic` per level: within 1e-6 + 1e-5 relative.
#[test]
fn view_statistics_match_the_core_over_levels() {
    for gpu in gpus() {
        for (n, dim) in [(1usize, 1usize), (5, 48), (64, 3 * 16 * 16)] {
            let sigmas = [0.01f32, 0.2, 1.0];
            let fields: Vec<Vec<f32>> =
                (0..3).map(|l| normals(100 + l, 2 * n * dim, 3.0)).collect();
            let noise: Vec<Vec<f32>> = (0..3).map(|l| normals(200 + l, 2 * n * dim, 1.0)).collect();
            for kind in [Statistic::Norm, Statistic::SigmaNorm, Statistic::Dsm] {
                let stats = gpu.tensor(&[2 * n], DType::F32).unwrap();
                let ts: Vec<_> = fields
                    .iter()
                    .map(|f| gpu.upload(f, &[2 * n, dim]).unwrap())
                    .collect();
                let te: Vec<_> = noise
                    .iter()
                    .map(|e| gpu.upload(e, &[2 * n, dim]).unwrap())
                    .collect();
                let mut s = gpu.step("statistics");
                for l in 0..3 {
                    gw::view_statistic(
                        &mut s,
                        &ts[l],
                        Some(&te[l]),
                        dim,
                        kind,
                        sigmas[l],
                        (1.0 / 3.0, l > 0),
                        &stats,
                    )
                    .unwrap();
                }
                let is = s.readback(&stats);
                let out = s.submit().unwrap();
                let want: Vec<f32> = (0..2 * n)
                    .map(|r| {
                        let total: f64 = (0..3)
                            .map(|l| {
                                let row = &fields[l][r * dim..(r + 1) * dim];
                                let e = &noise[l][r * dim..(r + 1) * dim];
                                weights::view_statistic(kind, row, e, sigmas[l]).unwrap() as f64
                            })
                            .sum();
                        (total / 3.0) as f32
                    })
                    .collect();
                assert_close(
                    &format!("{} {kind:?} n {n} dim {dim}", gpu.describe()),
                    &out.f32(is)[..2 * n],
                    &want,
                    1e-6,
                    1e-5,
                );
            }
            // The dsm statistic without its noise is refused, naming it.
            let stats = gpu.tensor(&[2 * n], DType::F32).unwrap();
            let ts = gpu.upload(&fields[0], &[2 * n, dim]).unwrap();
            let mut s = gpu.step("statistics");
            let e = gw::view_statistic(
                &mut s,
                &ts,
                None,
                dim,
                Statistic::Dsm,
                0.1,
                (1.0, false),
                &stats,
            )
            .unwrap_err();
            assert!(e.to_string().contains("noise"), "{e}");
        }
    }
}
