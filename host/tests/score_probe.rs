//! `scorecl probe`'s families and the probe itself on an untrained score
//! network (its output convolution starts at zero, so S is 0 for every
//! view: no difference, ρ undefined). A score network trained alone
//! (`--train-score-epochs`) equals the one a ScoreCL run trains on the same
//! batches, and is no longer zero. The CLI case runs in `cli.rs`
//! (eval_plot_and_the_knn_monitor_on_a_tiny_run).

mod common;

use scorecl_host::core::augment::AugConfig;
use scorecl_host::core::weights::Statistic;
use scorecl_host::data::{Dataset, OpenOptions, Split};
use scorecl_host::nn::{ScoreConfig, ScoreNet};
use scorecl_host::score_probe::{families, probe, StatSpec};
use scorecl_host::train::score_only::train_score_alone;
use scorecl_host::train::{TrainConfig, Trainer};

#[test]
fn families_are_valid_and_graded_from_none() {
    for preset in [AugConfig::cifar(), AugConfig::imagenet(0)] {
        let fams = families(&preset);
        assert_eq!(fams.len(), 5);
        for f in &fams {
            assert!(f.levels.len() >= 2, "{}", f.name);
            for (i, l) in f.levels.iter().enumerate() {
                l.cfg
                    .validate()
                    .unwrap_or_else(|e| panic!("{} level {i}: {e}", f.name));
                assert_eq!(l.cfg.flip_prob, 0.0, "{}", f.name);
            }
            assert!(
                f.levels.windows(2).all(|w| w[0].strength < w[1].strength),
                "{}",
                f.name
            );
            // The first level leaves the image alone.
            let c = &f.levels[0].cfg;
            assert_eq!(
                (
                    c.crop_scale,
                    c.jitter_prob,
                    c.gray_prob,
                    c.blur_prob,
                    c.solarize_prob
                ),
                ([1.0, 1.0], 0.0, 0.0, 0.0, 0.0),
                "{}",
                f.name
            );
        }
    }
}

#[test]
fn untrained_score_network_gives_zero_statistics() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let data = Dataset::open_with("builtin:40", &OpenOptions::new(Split::Test, 16)).unwrap();
    let net = ScoreNet::new(gpu, ScoreConfig { width: 8, depth: 1 }, 3).unwrap();
    let r = probe(
        gpu,
        &net,
        &StatSpec::norm(0.01),
        &data,
        16,
        8,
        &AugConfig::cifar(),
        0,
    )
    .unwrap();
    assert_eq!(r.len(), 5);
    for f in &r {
        assert_eq!(f.spearman, None, "{}", f.name);
        assert!(f
            .levels
            .iter()
            .all(|l| l.mean == 0.0 && l.mean_abs_diff == 0.0));
    }
    let e = probe(
        gpu,
        &net,
        &StatSpec::norm(0.01),
        &data,
        16,
        1,
        &AugConfig::cifar(),
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 2"), "{e}");
}

#[test]
fn score_network_trained_alone_matches_the_runs_and_probes_nonzero() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/tiny-simclr.toml");
    let mut cfg = TrainConfig::load(std::path::Path::new(path)).unwrap();
    cfg.data.dataset = "builtin:32".into();
    cfg.train.batch_size = 16;
    cfg.train.epochs = 1;
    let train = cfg.data.open(Split::Train).unwrap();
    let mut losses = Vec::new();
    let alone = train_score_alone(gpu, &cfg, &train, 1, |e, l| losses.push((e, l))).unwrap();
    assert_eq!(losses.len(), 1);
    assert!(losses[0].1.is_finite() && losses[0].1 > 0.0, "{losses:?}");
    // The same two steps inside a ScoreCL run give the same network.
    let mut t = Trainer::new(gpu, cfg.clone(), train).unwrap();
    for _ in 0..2 {
        t.step().unwrap();
    }
    let run_net = t.score_net().unwrap();
    let read = |p: &scorecl_host::Tensor| gpu.download(p).unwrap()[..p.len()].to_vec();
    assert_eq!(alone.store.params.len(), run_net.store.params.len());
    for (a, b) in alone.store.params.iter().zip(&run_net.store.params) {
        common::assert_close(&a.name, &read(&a.value), &read(&b.value), 1e-6, 1e-5);
    }
    // Trained, its output is no longer zero: S > 0 and ρ defined.
    let test = cfg.data.open(Split::Test).unwrap();
    let r = probe(
        gpu,
        &alone,
        &StatSpec::norm(cfg.scorecl.sigma_ref()),
        &test,
        16,
        8,
        &cfg.augment,
        0,
    )
    .unwrap();
    for f in &r {
        assert!(f.levels.iter().all(|l| l.mean > 0.0), "{}", f.name);
    }
    assert!(r.iter().any(|f| f.spearman.is_some()));
    // The other statistics: σ·‖s‖ at one level is σ times the norm's S,
    // with the same ρ; over two levels S is the mean of each level's.
    let with = |kind, sigmas: Vec<f32>| {
        probe(
            gpu,
            &alone,
            &StatSpec { kind, sigmas },
            &test,
            16,
            8,
            &cfg.augment,
            0,
        )
        .unwrap()
    };
    let (a, b) = (0.1f32, 0.5f32);
    let norm_a = with(Statistic::Norm, vec![a]);
    let norm_b = with(Statistic::Norm, vec![b]);
    let sn = with(Statistic::SigmaNorm, vec![a]);
    let both = with(Statistic::Norm, vec![a, b]);
    for (((fa, fb), fs), f2) in norm_a.iter().zip(&norm_b).zip(&sn).zip(&both) {
        assert_eq!(fa.spearman, fs.spearman, "{}", fa.name);
        for (((la, lb), ls), l2) in fa
            .levels
            .iter()
            .zip(&fb.levels)
            .zip(&fs.levels)
            .zip(&f2.levels)
        {
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1e-6);
            assert!(
                close(ls.mean, a as f64 * la.mean),
                "{}: {} vs {}",
                fa.name,
                ls.mean,
                la.mean
            );
            assert!(close(l2.mean, (la.mean + lb.mean) / 2.0), "{}", fa.name);
        }
    }
    // A zero network's DSM statistic is ½‖ε‖²/D ≈ ½ whatever the view.
    let zero = ScoreNet::new(gpu, ScoreConfig { width: 8, depth: 1 }, 3).unwrap();
    let spec = StatSpec {
        kind: Statistic::Dsm,
        sigmas: vec![0.1, 0.5],
    };
    for f in probe(gpu, &zero, &spec, &test, 16, 8, &cfg.augment, 0).unwrap() {
        for l in &f.levels {
            assert!((l.mean - 0.5).abs() < 0.01, "{}: {}", f.name, l.mean);
        }
    }
    // A batch larger than the dataset is named.
    cfg.train.batch_size = 64;
    let train = cfg.data.open(Split::Train).unwrap();
    let e = train_score_alone(gpu, &cfg, &train, 1, |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("train.batch_size"), "{e}");
}
