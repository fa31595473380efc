//! Schedules, whitening, optimizer identities and the error paths: every
//! bad input is an error naming its argument or field, never a panic or NaN.

use scorecl_core::dsm::{self, SigmaSchedule};
use scorecl_core::knn::{self, KnnConfig, KnnSet};
use scorecl_core::optim::{self, AdamConfig, LarsConfig, SgdConfig, WarmupCosine};
use scorecl_core::rng::Philox;
use scorecl_core::weights::{self, ScoreWeightConfig};
use scorecl_core::wmse::{self, WmseConfig};
use scorecl_core::{simclr, vicreg, CoreError, GradPair, Views};

#[test]
fn sigma_schedule_is_geometric() {
    let s = SigmaSchedule::default();
    s.validate().unwrap();
    assert_eq!(s.sigma(0), 1.0);
    assert!((s.sigma(9) - 0.01).abs() < 1e-8);
    let ratio = s.sigma(1) / s.sigma(0);
    for k in 1..10 {
        assert!(
            (s.sigma(k) / s.sigma(k - 1) - ratio).abs() < 1e-5,
            "level {k}"
        );
    }
    assert_eq!(s.sigma(99), s.sigma(9), "clamped");
    // Each level is drawn equally often from uniform draws.
    let mut counts = [0u32; 10];
    for i in 0..10_000u32 {
        counts[s.level_for(i as f32 / 10_000.0) as usize] += 1;
    }
    assert!(counts.iter().all(|c| *c == 1000), "{counts:?}");
    assert_eq!(s.level_for(0.999_999_9), 9);
    let one = SigmaSchedule { levels: 1, ..s };
    assert_eq!(one.sigma(0), 1.0);
    assert!(SigmaSchedule {
        sigma_min: 2.0,
        ..s
    }
    .validate()
    .is_err());
    assert!(SigmaSchedule { levels: 0, ..s }.validate().is_err());
}

#[test]
fn dsm_minimum_is_the_denoising_score() {
    // s = −ε/σ is the DSM target: zero loss and zero gradient.
    let noise = [0.3f32, -1.2, 0.7, 2.0];
    let sigma = [0.5f32, 0.1];
    let score: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(k, e)| -e / sigma[k / 2])
        .collect();
    let mut g = [1.0f32; 4];
    let l = dsm::loss(&score, &noise, &sigma, 2, Some(&mut g)).unwrap();
    assert!(
        l.abs() < 1e-10 && g.iter().all(|x| x.abs() < 1e-6),
        "{l} {g:?}"
    );
    let mut x = [1.0f32; 4];
    dsm::perturb(&mut x, &noise, &sigma, 2).unwrap();
    for (got, want) in x.iter().zip([1.15f32, 0.4, 1.07, 1.2]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert!(dsm::loss(&score, &noise, &[0.5, 0.0], 2, None).is_err());
}

#[test]
fn warmup_cosine_endpoints_and_shape() {
    let s = WarmupCosine {
        base_lr: 0.4,
        warmup_start_lr: 3e-5,
        min_lr: 0.001,
        warmup_steps: 10,
        total_steps: 100,
    };
    s.validate().unwrap();
    assert_eq!(s.lr(0), 3e-5);
    assert!(
        (s.lr(9) - 0.4).abs() < 1e-6,
        "warm-up ends at base (W − 1 steps)"
    );
    assert!((s.lr(10) - 0.4).abs() < 1e-6);
    assert!((s.lr(100) - 0.001).abs() < 1e-7);
    assert_eq!(s.lr(1000), s.lr(100), "held at min after the end");
    for t in 10..100 {
        assert!(s.lr(t + 1) <= s.lr(t), "decreasing at {t}");
    }
    for t in 0..9 {
        assert!(s.lr(t + 1) > s.lr(t), "increasing at {t}");
    }
    assert!(WarmupCosine {
        warmup_steps: 200,
        ..s
    }
    .validate()
    .is_err());
}

#[test]
fn whitening_gives_identity_covariance() {
    let (m, d) = (12, 4);
    let mut x = vec![0.0f32; m * d];
    Philox::new(3, 3).fill_normal(0, &mut x);
    for (k, v) in x.iter_mut().enumerate() {
        *v = *v * (1.0 + (k % d) as f32) + 0.5 * (k % d) as f32; // scaled, shifted columns
    }
    let mut out = vec![0.0f32; m * d];
    let mut s = vec![0.0f64; wmse::whiten_scratch_len(d)];
    wmse::whiten(&x, m, d, 0.0, &mut out, &mut s).unwrap();
    for j in 0..d {
        let mean: f64 = (0..m).map(|k| out[k * d + j] as f64).sum::<f64>() / m as f64;
        assert!(mean.abs() < 1e-5, "column {j} mean {mean}");
        for t in 0..d {
            let c: f64 = (0..m)
                .map(|k| out[k * d + j] as f64 * out[k * d + t] as f64)
                .sum::<f64>()
                / (m - 1) as f64;
            let want = if j == t { 1.0 } else { 0.0 };
            assert!((c - want).abs() < 1e-5, "cov[{j}][{t}] = {c}");
        }
    }
}

#[test]
fn singular_whitening_is_an_error_not_nan() {
    // Fewer rows than features (m − 1 < d) with eps = 0: rank-deficient.
    let (n, d) = (4, 6);
    let mut z = vec![0.0f32; 2 * n * d];
    Philox::new(1, 1).fill_normal(0, &mut z);
    let (a, b) = z.split_at(n * d);
    let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
    let cfg = WmseConfig {
        eps: 0.0,
        w_size: 4,
    };
    let err = wmse::loss(
        Views::new(a, b, n, d).unwrap(),
        None,
        None,
        &cfg,
        None,
        &mut s,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::NotPositiveDefinite {
                view: 0,
                chunk: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("eps"),
        "the message says how to fix it: {err}"
    );
    // A constant column is singular too.
    let mut c = a.to_vec();
    for k in 0..n {
        c[k * d] = 1.0;
    }
    assert!(wmse::loss(
        Views::new(&c, b, n, d).unwrap(),
        None,
        None,
        &WmseConfig {
            eps: 0.0,
            w_size: 4
        },
        None,
        &mut s
    )
    .is_err());
    // The same data with shrinkage is well posed and finite.
    let cfg = WmseConfig {
        eps: 0.2,
        w_size: 4,
    };
    let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
    let l = wmse::loss(
        Views::new(a, b, n, d).unwrap(),
        None,
        None,
        &cfg,
        Some(GradPair::new(&mut g1, &mut g2)),
        &mut s,
    )
    .unwrap();
    assert!(l.is_finite() && g1.iter().chain(&g2).all(|g| g.is_finite()));
    // All zeros: no variance at all (with eps > 0 it is εI, well posed).
    let zeros = vec![0.0f32; n * d];
    let no_eps = WmseConfig {
        eps: 0.0,
        w_size: 4,
    };
    assert!(wmse::loss(
        Views::new(&zeros, b, n, d).unwrap(),
        None,
        None,
        &no_eps,
        None,
        &mut s
    )
    .is_err());
    assert!(wmse::loss(
        Views::new(&zeros, b, n, d).unwrap(),
        None,
        None,
        &cfg,
        None,
        &mut s
    )
    .is_ok());
}

#[test]
fn bad_shapes_configs_and_scratch_are_named() {
    let z = [1.0f32; 6];
    let e = Views::new(&z, &z[..4], 3, 2).unwrap_err();
    assert_eq!(
        e,
        CoreError::Shape {
            what: "b",
            expected: 6,
            got: 4
        }
    );
    assert!(Views::new(&z, &z, 0, 2).is_err());
    let v = Views::new(&z, &z, 3, 2).unwrap();
    let mut small = [0.0f32; 3];
    let e = simclr::loss(v, None, &Default::default(), None, &mut small).unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::Scratch {
                what: "simclr::loss",
                ..
            }
        ),
        "{e}"
    );
    let mut s = vec![0.0; simclr::scratch_len(3, 2)];
    let bad_tau = simclr::SimClrConfig { temperature: 0.0 };
    assert!(simclr::loss(v, None, &bad_tau, None, &mut s)
        .unwrap_err()
        .to_string()
        .contains("temperature"));
    let e = simclr::loss(
        v,
        Some(&[1.0, -1.0, 1.0]),
        &Default::default(),
        None,
        &mut s,
    )
    .unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    let e = simclr::loss(
        v,
        Some(&[1.0, f32::NAN, 1.0]),
        &Default::default(),
        None,
        &mut s,
    )
    .unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    let e = simclr::loss(v, Some(&[1.0]), &Default::default(), None, &mut s).unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    let (mut g1, mut g2) = (vec![0.0; 5], vec![0.0; 6]);
    assert!(simclr::loss(
        v,
        None,
        &Default::default(),
        Some(GradPair::new(&mut g1, &mut g2)),
        &mut s
    )
    .is_err());
    // W-MSE chunk size must divide the batch.
    let mut ws = vec![0.0f64; wmse::scratch_len(3, 2)];
    let e = wmse::loss(
        v,
        None,
        None,
        &WmseConfig {
            eps: 0.0,
            w_size: 2,
        },
        None,
        &mut ws,
    )
    .unwrap_err();
    assert!(e.to_string().contains("w_size"), "{e}");
    let e = wmse::loss(
        v,
        None,
        Some(&[0, 0, 1]),
        &WmseConfig {
            eps: 0.1,
            w_size: 3,
        },
        None,
        &mut ws,
    )
    .unwrap_err();
    assert!(e.to_string().contains("order"), "{e}");
    assert!(WmseConfig {
        eps: 1.0,
        w_size: 3
    }
    .validate()
    .is_err());
    // VICReg needs two rows.
    let one = Views::new(&z[..2], &z[..2], 1, 2).unwrap();
    let mut vs = vec![0.0; vicreg::scratch_len(2)];
    assert!(vicreg::loss(one, None, &Default::default(), None, &mut vs).is_err());
    // Pair weight config.
    let cfg = ScoreWeightConfig {
        alpha: 1.5,
        ..Default::default()
    };
    let mut w = [0.0; 3];
    let e = weights::from_statistics(&[1.0; 3], &[0.0; 3], &cfg, &Philox::new(0, 0), &mut w)
        .unwrap_err();
    assert!(e.to_string().contains("alpha"), "{e}");
    let cfg = ScoreWeightConfig {
        w_max: f32::NAN,
        ..Default::default()
    };
    assert!(cfg.validate().is_err());
}

#[test]
fn degenerate_score_differences_give_uniform_weights() {
    let mut w = [0.0f32; 4];
    let cfg = ScoreWeightConfig::default();
    weights::from_statistics(&[2.0; 4], &[2.0; 4], &cfg, &Philox::new(0, 0), &mut w).unwrap();
    assert_eq!(w, [1.0; 4]);
    // One pair differs: it takes all the weight up to the clamp.
    weights::from_statistics(
        &[2.0, 2.0, 2.0, 3.0],
        &[2.0; 4],
        &cfg,
        &Philox::new(0, 0),
        &mut w,
    )
    .unwrap();
    assert_eq!(w, [0.0, 0.0, 0.0, 4.0]);
    let cfg = ScoreWeightConfig {
        w_max: 2.0,
        alpha: 0.5,
        ..cfg
    };
    weights::from_statistics(
        &[2.0, 2.0, 2.0, 3.0],
        &[2.0; 4],
        &cfg,
        &Philox::new(0, 0),
        &mut w,
    )
    .unwrap();
    assert_eq!(w, [0.5, 0.5, 0.5, 2.0]);
    assert_eq!(weights::statistic(&[3.0, 4.0]), (12.5f32).sqrt());
}

#[test]
fn rank_softmax_and_minmax_give_the_hand_worked_weights() {
    use scorecl_core::weights::{Apply, Statistic, Transform};
    let z = Philox::new(0, 0);
    // |ΔS| = 0, 2, 2, 4: ranks 1, 2.5, 2.5, 4 (ties share 2.5), mean 2.5.
    let (a, b) = ([1.0f32, 3.0, 0.0, 5.0], [1.0f32, 1.0, 2.0, 1.0]);
    let mut w = [0.0f32; 4];
    let cfg = ScoreWeightConfig {
        transform: Transform::Rank,
        ..Default::default()
    };
    weights::from_statistics(&a, &b, &cfg, &z, &mut w).unwrap();
    assert_eq!(w, [0.4, 1.0, 1.0, 1.6]);
    // Softmax at T = 1 of d/mean = 0, 1, 1, 2: 4·e^u/Σe^u.
    let cfg = ScoreWeightConfig {
        transform: Transform::Softmax,
        ..Default::default()
    };
    weights::from_statistics(&a, &b, &cfg, &z, &mut w).unwrap();
    let e = [1.0f64, 1f64.exp(), 1f64.exp(), 2f64.exp()];
    let tot: f64 = e.iter().sum();
    for (x, ei) in w.iter().zip(e) {
        assert!((*x as f64 - 4.0 * ei / tot).abs() < 1e-6, "{w:?}");
    }
    // Min-max onto [0.5, 1.5]: 0 → 0.5, 2 → 1, 4 → 1.5.
    let cfg = ScoreWeightConfig {
        transform: Transform::MinMax,
        w_min: 0.5,
        w_max: 1.5,
        ..Default::default()
    };
    weights::from_statistics(&a, &b, &cfg, &z, &mut w).unwrap();
    assert_eq!(w, [0.5, 1.0, 1.0, 1.5]);
    // An unbounded minmax range is refused, naming w_max.
    let bad = ScoreWeightConfig {
        w_max: f32::INFINITY,
        ..cfg
    };
    assert!(bad.validate().unwrap_err().to_string().contains("w_max"));
    // Per view: S(v) itself, 2n weights (view 1's then view 2's).
    let mut wv = [0.0f32; 8];
    let cfg = ScoreWeightConfig {
        apply: Apply::View,
        ..Default::default()
    };
    weights::from_statistics(&a, &b, &cfg, &z, &mut wv).unwrap();
    let s: Vec<f32> = a.iter().chain(&b).copied().collect();
    let mean = s.iter().sum::<f32>() / 8.0;
    for (x, si) in wv.iter().zip(&s) {
        assert!((x - si / mean).abs() < 1e-6, "{wv:?}");
    }
    // A pair-sized output for per-view weights is refused.
    assert!(weights::from_statistics(&a, &b, &cfg, &z, &mut w).is_err());
    // A NaN statistic: no information, all ones.
    weights::from_statistics(
        &[f32::NAN, 1.0, 2.0, 3.0],
        &b,
        &ScoreWeightConfig::default(),
        &z,
        &mut w,
    )
    .unwrap();
    assert_eq!(w, [1.0; 4]);
    // The statistics at one level.
    let (sv, ev) = ([3.0f32, 4.0], [1.0f32, -1.0]);
    assert_eq!(
        weights::view_statistic(Statistic::Norm, &sv, &ev, 0.5).unwrap(),
        (12.5f32).sqrt()
    );
    let sn = weights::view_statistic(Statistic::SigmaNorm, &sv, &ev, 0.5).unwrap();
    assert!((sn - 0.5 * (12.5f32).sqrt()).abs() < 1e-6);
    // ½((0.5·3 + 1)² + (0.5·4 − 1)²)/2 = ½(6.25 + 1)/2.
    let dsm = weights::view_statistic(Statistic::Dsm, &sv, &ev, 0.5).unwrap();
    assert_eq!(dsm, 1.8125);
    assert!(weights::view_statistic(Statistic::Dsm, &sv, &ev[..1], 0.5).is_err());
}

#[test]
fn knn_bad_inputs_are_named() {
    let train = [1.0f32, 0.0, 0.0, 1.0];
    let test = [0.9f32, 0.1];
    let mut p = [0u32; 1];
    let mut s = vec![0.0; 16];
    let mut si = vec![0u32; 4];
    let bad_label = KnnSet {
        train: &train,
        train_labels: &[0, 3],
        test: &test,
        d: 2,
        classes: 2,
    };
    let e = knn::predict(&bad_label, &KnnConfig::default(), &mut p, &mut s, &mut si).unwrap_err();
    assert_eq!(
        e,
        CoreError::Label {
            index: 1,
            label: 3,
            classes: 2
        }
    );
    let ok = KnnSet {
        train_labels: &[0, 1],
        ..bad_label
    };
    knn::predict(
        &ok,
        &KnnConfig {
            k: 1,
            temperature: 0.1,
        },
        &mut p,
        &mut s,
        &mut si,
    )
    .unwrap();
    assert_eq!(p, [0]);
    let e = knn::predict(
        &ok,
        &KnnConfig {
            k: 0,
            temperature: 0.1,
        },
        &mut p,
        &mut s,
        &mut si,
    )
    .unwrap_err();
    assert!(e.to_string().contains('k'), "{e}");
    // k above the training-set size votes with every row: class 1 wins by
    // count only when its similarity mass is larger.
    let labels = [0u32, 1, 1];
    let train3 = [1.0f32, 0.0, 0.0, 1.0, 0.1, 1.0];
    let set = KnnSet {
        train: &train3,
        train_labels: &labels,
        test: &test,
        d: 2,
        classes: 2,
    };
    knn::predict(
        &set,
        &KnnConfig {
            k: 50,
            temperature: 10.0,
        },
        &mut p,
        &mut s,
        &mut si,
    )
    .unwrap();
    assert_eq!(p, [1], "T = 10 flattens the weights: two votes beat one");
    knn::predict(
        &set,
        &KnnConfig {
            k: 50,
            temperature: 0.05,
        },
        &mut p,
        &mut s,
        &mut si,
    )
    .unwrap();
    assert_eq!(p, [0], "T = 0.05 sharpens them: the nearest row wins");
    // Ties go to the lowest class.
    let mut scores = [0.0f32; 3];
    assert_eq!(knn::vote(&[0.5, 0.5], &[2, 1], 0.1, &mut scores), 1);
    // A tiny temperature does not overflow.
    assert_eq!(knn::vote(&[1.0, 0.9], &[2, 1], 1e-4, &mut scores), 2);
    assert!(scores.iter().all(|s| s.is_finite()));
}

#[test]
fn optimizer_identities() {
    // SGD without momentum is gradient descent with L2.
    let cfg = SgdConfig {
        weight_decay: 0.1,
        ..Default::default()
    };
    let (p, _) = optim::sgd_update(2.0, 0.5, 0.0, 0.1, &cfg, true);
    assert!((p - (2.0 - 0.1 * (0.5 + 0.2))).abs() < 1e-7);
    // With momentum the first step equals plain SGD, later ones accumulate.
    let cfg = SgdConfig {
        momentum: 0.9,
        ..Default::default()
    };
    let (p1, b1) = optim::sgd_update(1.0, 1.0, 0.0, 0.1, &cfg, true);
    assert_eq!((p1, b1), (0.9, 1.0));
    let (p2, b2) = optim::sgd_update(p1, 1.0, b1, 0.1, &cfg, false);
    assert!((b2 - 1.9).abs() < 1e-7 && (p2 - (0.9 - 0.19)).abs() < 1e-7);
    // Adam's first step moves each element by about lr·sign(g).
    let mut p = [1.0f32, -1.0, 0.5];
    let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
    optim::adam_step(
        &mut p,
        &[3.0, -0.01, 100.0],
        &mut m,
        &mut v,
        0.01,
        1,
        &AdamConfig::default(),
    )
    .unwrap();
    for (got, want) in p.iter().zip([0.99f32, -0.99, 0.49]) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    // AdamW decays the parameter itself, Adam the gradient.
    let s = optim::AdamStep::new(0.1, 1, &AdamConfig::adamw());
    let (pw, _, _) = optim::adam_update(1.0, 0.0, 0.0, 0.0, &s, &AdamConfig::adamw());
    assert!((pw - (1.0 - 0.1 * 0.01)).abs() < 1e-7);
    // LARS: excluded 1-D tensors are plain SGD; zero norms skip the factor.
    let cfg = LarsConfig::default();
    assert_eq!(optim::lars_factor(1.0, 1.0, 0.1, &cfg, true), None);
    assert_eq!(optim::lars_factor(0.0, 1.0, 0.1, &cfg, false), None);
    let f = optim::lars_factor(2.0, 0.5, 0.4, &cfg, false).unwrap();
    assert!((f - (0.02f32 * 2.0 / (0.5 + 1e-8) / 0.4).min(1.0)).abs() < 1e-6);
    let unclipped = LarsConfig {
        clip_lr: false,
        ..cfg
    };
    let f = optim::lars_factor(2.0, 0.5, 0.4, &unclipped, false).unwrap();
    assert!((f - 0.08).abs() < 1e-6);
    // Bad configs are named.
    assert!(SgdConfig {
        nesterov: true,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("nesterov"));
    assert!(AdamConfig {
        beta2: 1.0,
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("beta2"));
    let mut p = [1.0f32; 2];
    assert!(optim::sgd_step(
        &mut p,
        &[1.0],
        &mut [0.0; 2],
        0.1,
        &SgdConfig::default(),
        true
    )
    .is_err());
}
