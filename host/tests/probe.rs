//! `scorecl probe`'s families and the probe itself on an untrained score
//! network (its output convolution starts at zero, so S is 0 for every
//! view: no difference, ρ undefined). The trained case runs in
//! `cli.rs` (eval_plot_and_the_knn_monitor_on_a_tiny_run).

mod common;

use scorecl_host::core::augment::AugConfig;
use scorecl_host::data::{Dataset, OpenOptions, Split};
use scorecl_host::nn::{ScoreConfig, ScoreNet};
use scorecl_host::probe::{families, probe};

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
    let r = probe(gpu, &net, 0.01, &data, 16, 8, &AugConfig::cifar(), 0).unwrap();
    assert_eq!(r.len(), 5);
    for f in &r {
        assert_eq!(f.spearman, None, "{}", f.name);
        assert!(f
            .levels
            .iter()
            .all(|l| l.mean == 0.0 && l.mean_abs_diff == 0.0));
    }
    let e = probe(gpu, &net, 0.01, &data, 16, 1, &AugConfig::cifar(), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 2"), "{e}");
}
