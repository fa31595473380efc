//! Invariance and weighting properties of the losses, pair weights and the
//! k-NN classifier (proptest). Values must agree to 1e-5 relative (f32
//! results of f64-accumulated sums: only summation order differs).

mod common;

use proptest::prelude::*;
use scorecl_core::knn::{self, KnnConfig, KnnSet};
use scorecl_core::rng::Philox;
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::weights::{self, Apply, ScoreWeightConfig, Transform, WeightMode};
use scorecl_core::wmse::WmseConfig;
use scorecl_core::{simclr, simsiam, vicreg, wmse, GradPair, Views};

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

fn all_close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
}

/// Which loss a property runs on.
#[derive(Debug, Clone, Copy)]
enum Loss {
    SimClr,
    SimSiam,
    Wmse,
    VicReg,
}

const LOSSES: [Loss; 4] = [Loss::SimClr, Loss::SimSiam, Loss::Wmse, Loss::VicReg];

/// Loss and gradients. For SimSiam the predictor outputs are `a`, `b` and
/// the targets are a fixed function of them (a shifted copy), so the same
/// permutation/swap acts on both.
fn eval(
    loss: Loss,
    a: &[f32],
    b: &[f32],
    n: usize,
    d: usize,
    w: Option<&[f32]>,
) -> (f32, Vec<f32>, Vec<f32>) {
    let v = Views::new(a, b, n, d).unwrap();
    let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
    let grads = Some(GradPair::new(&mut g1, &mut g2));
    let l = match loss {
        Loss::SimClr => {
            let mut s = vec![0.0; simclr::scratch_len(n, d)];
            simclr::loss(v, w, &Default::default(), grads, &mut s).unwrap()
        }
        Loss::SimSiam => {
            let ta: Vec<f32> = a.iter().map(|x| 0.5 - x).collect();
            let tb: Vec<f32> = b.iter().map(|x| x * 0.7 + 0.1).collect();
            simsiam::loss(v, Views::new(&ta, &tb, n, d).unwrap(), w, grads).unwrap()
        }
        Loss::Wmse => {
            let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
            let cfg = WmseConfig {
                eps: 0.1,
                w_size: n,
            };
            wmse::loss(v, w, None, &cfg, grads, &mut s).unwrap()
        }
        Loss::VicReg => {
            let mut s = vec![0.0; vicreg::scratch_len(d)];
            vicreg::loss(v, w, &VicRegConfig::default(), grads, &mut s)
                .unwrap()
                .loss
        }
    };
    (l, g1, g2)
}

fn permute_rows(x: &[f32], d: usize, perm: &[usize]) -> Vec<f32> {
    perm.iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect()
}

/// (n, d, z1, z2, w, permutation of 0..n)
#[allow(clippy::type_complexity)]
fn batch() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<usize>)> {
    (3usize..=8, 1usize..=4).prop_flat_map(|(n, d)| {
        (
            Just(n),
            Just(d),
            proptest::collection::vec(-2.0f32..2.0, n * d),
            proptest::collection::vec(-2.0f32..2.0, n * d),
            proptest::collection::vec(0.0f32..2.0, n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

proptest! {
    #![proptest_config(common::proptest_config())]

    /// Permuting the pairs (rows of both views and their weights) permutes
    /// the gradients and keeps the loss. W-MSE whitens the whole batch as
    /// one chunk here, so any permutation keeps its chunk.
    #[test]
    fn batch_permutation((n, d, z1, z2, w, perm) in batch()) {
        for loss in LOSSES {
            let (l, g1, g2) = eval(loss, &z1, &z2, n, d, Some(&w));
            let (p1, p2) = (permute_rows(&z1, d, &perm), permute_rows(&z2, d, &perm));
            let pw: Vec<f32> = perm.iter().map(|&i| w[i]).collect();
            let (lp, gp1, gp2) = eval(loss, &p1, &p2, n, d, Some(&pw));
            prop_assert!(close(l, lp), "{loss:?}: {l} vs {lp}");
            prop_assert!(all_close(&permute_rows(&g1, d, &perm), &gp1), "{loss:?} grad 1");
            prop_assert!(all_close(&permute_rows(&g2, d, &perm), &gp2), "{loss:?} grad 2");
        }
    }

    /// Swapping the two views keeps the loss and swaps the gradients (all
    /// four losses are symmetric in the views).
    #[test]
    fn view_swap((n, d, z1, z2, w, _p) in batch()) {
        for loss in [Loss::SimClr, Loss::Wmse, Loss::VicReg] {
            let (l, g1, g2) = eval(loss, &z1, &z2, n, d, Some(&w));
            let (ls, gs1, gs2) = eval(loss, &z2, &z1, n, d, Some(&w));
            prop_assert!(close(l, ls), "{loss:?}: {l} vs {ls}");
            prop_assert!(all_close(&g1, &gs2) && all_close(&g2, &gs1), "{loss:?} grads");
        }
        // SimSiam: swapping (p1, z1) with (p2, z2).
        let (p1, p2): (Vec<f32>, Vec<f32>) = (z1.iter().map(|x| x + 0.3).collect(), z2.iter().map(|x| x * 0.5).collect());
        let ss = |p1: &[f32], p2: &[f32], t1: &[f32], t2: &[f32]| {
            let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
            let l = simsiam::loss(Views::new(p1, p2, n, d).unwrap(), Views::new(t1, t2, n, d).unwrap(),
                Some(&w), Some(GradPair::new(&mut g1, &mut g2))).unwrap();
            (l, g1, g2)
        };
        let (l, g1, g2) = ss(&p1, &p2, &z1, &z2);
        let (ls, gs1, gs2) = ss(&p2, &p1, &z2, &z1);
        prop_assert!(close(l, ls));
        prop_assert!(all_close(&g1, &gs2) && all_close(&g2, &gs1));
    }

    /// NT-Xent only sees directions: scaling each row by c > 0 keeps the
    /// loss and scales that row's gradient by 1/c.
    #[test]
    fn simclr_row_scaling((n, d, z1, z2, w, _p) in batch(), c in proptest::collection::vec(0.1f32..10.0, 16)) {
        prop_assume!(z1.chunks(d).chain(z2.chunks(d)).all(|r| r.iter().any(|x| x.abs() > 0.05)));
        let scale = |z: &[f32], off: usize| -> Vec<f32> {
            z.iter().enumerate().map(|(k, x)| x * c[off + k / d]).collect()
        };
        let (s1, s2) = (scale(&z1, 0), scale(&z2, n));
        let (l, g1, g2) = eval(Loss::SimClr, &z1, &z2, n, d, Some(&w));
        let (ls, gs1, gs2) = eval(Loss::SimClr, &s1, &s2, n, d, Some(&w));
        prop_assert!(close(l, ls), "{l} vs {ls}");
        let back1: Vec<f32> = gs1.iter().enumerate().map(|(k, g)| g * c[k / d]).collect();
        let back2: Vec<f32> = gs2.iter().enumerate().map(|(k, g)| g * c[n + k / d]).collect();
        prop_assert!(all_close(&g1, &back1) && all_close(&g2, &back2));
    }

    /// Uniform weights give the unweighted loss, and scaling every weight by
    /// c scales the loss (and gradients) by c; for VICReg only the
    /// invariance term is weighted, so only that term scales.
    #[test]
    fn weights_scale_the_loss((n, d, z1, z2, w, _p) in batch(), c in 0.0f32..4.0) {
        let ones = vec![1.0f32; n];
        let cw: Vec<f32> = w.iter().map(|x| x * c).collect();
        for loss in LOSSES {
            let (lu, gu1, _) = eval(loss, &z1, &z2, n, d, None);
            let (l1, g11, _) = eval(loss, &z1, &z2, n, d, Some(&ones));
            prop_assert!(l1 == lu && g11 == gu1, "{loss:?}: ones differ from unweighted");
            if matches!(loss, Loss::VicReg) {
                continue;
            }
            let (l, g1, _) = eval(loss, &z1, &z2, n, d, Some(&w));
            let (lc, gc1, _) = eval(loss, &z1, &z2, n, d, Some(&cw));
            prop_assert!(close(lc, c * l), "{loss:?}: {lc} vs {c}·{l}");
            let scaled: Vec<f32> = g1.iter().map(|g| g * c).collect();
            prop_assert!(all_close(&gc1, &scaled), "{loss:?} gradient");
        }
        let cfg = VicRegConfig::default();
        let vr = |w: &[f32]| {
            let mut s = vec![0.0; vicreg::scratch_len(d)];
            vicreg::loss(Views::new(&z1, &z2, n, d).unwrap(), Some(w), &cfg, None, &mut s).unwrap()
        };
        let (a, b) = (vr(&w), vr(&cw));
        prop_assert!(close(b.invariance, c * a.invariance));
        prop_assert!(a.variance == b.variance && a.covariance == b.covariance);
        // The two losses are rounded to f32 before subtracting: compare on
        // their scale.
        let scale = a.loss.abs().max(b.loss.abs()).max(1.0);
        prop_assert!(((b.loss - a.loss) - cfg.sim_coeff * (b.invariance - a.invariance)).abs() <= 1e-5 * scale);
    }

    /// W-MSE depends on chunk membership only: giving the rows through
    /// `order` after shuffling the data reproduces the identity-order loss.
    #[test]
    fn wmse_order_is_chunk_membership(d in 1usize..=3, chunks in 1usize..=3, seed in any::<u64>()) {
        let m = d + 3;
        let n = m * chunks;
        let rng = Philox::new(seed, 0);
        let mut z = vec![0.0f32; 2 * n * d];
        rng.fill_normal(0, &mut z);
        let (z1, z2) = z.split_at(n * d);
        let mut perm: Vec<usize> = (0..n).collect();
        rng.shuffle(1 << 20, &mut perm);
        // Row i of the shuffled data is original row perm[i]; order lists,
        // chunk by chunk, where each original row now sits.
        let (p1, p2) = (permute_rows(z1, d, &perm), permute_rows(z2, d, &perm));
        let mut order = vec![0u32; n];
        for (new, &orig) in perm.iter().enumerate() {
            order[orig] = new as u32;
        }
        let cfg = WmseConfig { eps: 0.05, w_size: m };
        let run = |a: &[f32], b: &[f32], o: Option<&[u32]>| {
            let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
            wmse::loss(Views::new(a, b, n, d).unwrap(), None, o, &cfg, None, &mut s).unwrap()
        };
        prop_assert!(close(run(z1, z2, None), run(&p1, &p2, Some(&order))));
    }

    /// Score weights are non-negative with mean 1 before the clamp, never
    /// above w_max after it; shuffled weights are a permutation of them;
    /// uniform weights are all ones.
    #[test]
    fn pair_weight_properties(
        n in 1usize..40, dim in 1usize..20, seed in any::<u64>(),
        gamma in 0.0f32..3.0, alpha in 0.0f32..=1.0, w_max in 0.5f32..5.0,
    ) {
        let rng = Philox::new(seed, 7);
        let mut s = vec![0.0f32; 2 * n * dim];
        rng.fill_normal(0, &mut s);
        for (k, x) in s.iter_mut().enumerate() {
            *x *= 1.0 + (k / dim) as f32 * 0.1;
        }
        let (s1, s2) = s.split_at(n * dim);
        let v = Views::new(s1, s2, n, dim).unwrap();
        let shuffle = Philox::new(seed ^ 1, 9);
        let run = |cfg: ScoreWeightConfig| {
            let (mut w, mut st) = (vec![0.0; n], vec![0.0; 2 * n]);
            weights::score_weights(v, &cfg, &shuffle, &mut w, &mut st).unwrap();
            w
        };
        let free = ScoreWeightConfig { mode: WeightMode::Score, gamma, alpha, w_max: f32::INFINITY, ..Default::default() };
        let w = run(free);
        prop_assert!(w.iter().all(|x| *x >= 0.0 && x.is_finite()));
        let mean = w.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
        prop_assert!((mean - 1.0).abs() < 1e-5, "mean {mean}");
        let clamped = run(ScoreWeightConfig { w_max, ..free });
        prop_assert!(clamped.iter().zip(&w).all(|(c, x)| *c <= w_max && *c == x.min(w_max)));
        let mut sh = run(ScoreWeightConfig { mode: WeightMode::Shuffled, ..free });
        let mut sorted = w.clone();
        sh.sort_by(f32::total_cmp);
        sorted.sort_by(f32::total_cmp);
        prop_assert_eq!(sh, sorted);
        let uni = run(ScoreWeightConfig { mode: WeightMode::Uniform, ..free });
        prop_assert!(uni.iter().all(|x| *x == 1.0));
    }

    /// Every transform, pair or view: weights ≥ 0 and finite; mean 1
    /// before the clamp for power, rank and softmax, and the range
    /// [w_min, w_max] for minmax; a larger value never gets a smaller
    /// weight; reordering the pairs reorders the weights the same way
    /// (invariance to batch order); constant statistics give all ones
    /// (then the clamp).
    #[test]
    fn weight_transform_properties(
        n in 1usize..40, seed in any::<u64>(), gamma in 0.0f32..3.0, alpha in 0.0f32..=1.0,
        t in 0usize..4, view in any::<bool>(), temperature in 0.05f32..4.0,
        w_min in 0.0f32..1.0, span in 0.1f32..3.0, ties in any::<bool>(),
    ) {
        let rng = Philox::new(seed, 11);
        let mut a = vec![0.0f32; n];
        let mut b = vec![0.0f32; n];
        for i in 0..n {
            a[i] = 1.0 + rng.uniform_at(2 * i as u64) * 3.0;
            b[i] = 1.0 + rng.uniform_at(2 * i as u64 + 1) * 3.0;
            if ties {
                // Few distinct values: ties are the rule.
                a[i] = a[i].floor();
                b[i] = b[i].floor();
            }
        }
        let transform = [Transform::Power, Transform::Rank, Transform::Softmax, Transform::MinMax][t];
        let apply = if view { Apply::View } else { Apply::Pair };
        let cfg = ScoreWeightConfig {
            mode: WeightMode::Score, gamma, alpha: 1.0, transform, temperature, apply,
            w_min, w_max: if transform == Transform::MinMax { w_min + span } else { f32::INFINITY },
        };
        let m = apply.count(n);
        let shuffle = Philox::new(seed ^ 1, 9);
        let run = |a: &[f32], b: &[f32], cfg: &ScoreWeightConfig| {
            let mut w = vec![0.0f32; m];
            weights::from_statistics(a, b, cfg, &shuffle, &mut w).unwrap();
            w
        };
        let w = run(&a, &b, &cfg);
        prop_assert!(w.iter().all(|x| *x >= 0.0 && x.is_finite()), "{w:?}");
        let mean = w.iter().map(|x| *x as f64).sum::<f64>() / m as f64;
        let value = |i: usize| -> f64 {
            let d = if view {
                (if i < n { a[i] } else { b[i - n] }) as f64
            } else {
                (a[i] as f64 - b[i] as f64).abs()
            };
            d.powf(gamma as f64)
        };
        let constant = (1..m).all(|i| value(i) == value(0));
        if constant {
            // Ones, then the clamp (below 1 only for a minmax range under 1).
            prop_assert!(w.iter().all(|x| *x == 1f32.min(cfg.w_max)), "{w:?}");
        } else if transform == Transform::MinMax {
            let tol = 1e-5 * (1.0 + cfg.w_max);
            prop_assert!(w.iter().all(|x| *x >= w_min - tol && *x <= cfg.w_max + tol), "{w:?}");
        } else {
            prop_assert!((mean - 1.0).abs() < 1e-4, "mean {mean}");
        }
        for i in 0..m {
            for j in 0..m {
                if value(i) < value(j) {
                    prop_assert!(w[i] <= w[j] * (1.0 + 1e-6) + 1e-6, "{i} {j} {w:?}");
                }
                if value(i) == value(j) {
                    prop_assert_eq!(w[i], w[j]);
                }
            }
        }
        // Batch order: pairs permuted by `perm` give weights permuted alike.
        let mut perm: Vec<usize> = (0..n).collect();
        rng.shuffle(1 << 20, &mut perm);
        let pa: Vec<f32> = perm.iter().map(|&i| a[i]).collect();
        let pb: Vec<f32> = perm.iter().map(|&i| b[i]).collect();
        let pw = run(&pa, &pb, &cfg);
        for (k, &i) in perm.iter().enumerate() {
            let tol = 1e-5 * (1.0 + w[i].abs());
            prop_assert!((pw[k] - w[i]).abs() <= tol, "pair {i}: {} vs {}", pw[k], w[i]);
            if view {
                prop_assert!((pw[n + k] - w[n + i]).abs() <= 1e-5 * (1.0 + w[n + i].abs()));
            }
        }
        // α mixes with uniform after the transform (before the clamp,
        // which is off here but for minmax).
        prop_assume!(transform != Transform::MinMax);
        let mixed = run(&a, &b, &ScoreWeightConfig { alpha, ..cfg });
        for (x, y) in mixed.iter().zip(&w) {
            let want = (1.0 - alpha as f64) + alpha as f64 * *y as f64;
            prop_assert!((*x as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()));
        }
    }

    /// k-NN predictions do not depend on the order of the training set
    /// (for distinct similarities: d ≥ 2, since with d = 1 every cosine is
    /// ±1 and ties at the k-th neighbour are resolved by training index).
    #[test]
    fn knn_train_order(
        n_train in 1usize..60, n_test in 1usize..10, d in 2usize..6, classes in 1usize..5,
        k in 1usize..80, seed in any::<u64>(),
    ) {
        let rng = Philox::new(seed, 3);
        let mut train = vec![0.0f32; n_train * d];
        let mut test = vec![0.0f32; n_test * d];
        rng.fill_normal(0, &mut train);
        rng.fill_normal(1 << 30, &mut test);
        let labels: Vec<u32> = (0..n_train as u64).map(|i| rng.below_at((1 << 31) + i, classes as u32)).collect();
        let mut perm: Vec<usize> = (0..n_train).collect();
        rng.shuffle(1 << 32, &mut perm);
        let ptrain = permute_rows(&train, d, &perm);
        let plabels: Vec<u32> = perm.iter().map(|&i| labels[i]).collect();
        let cfg = KnnConfig { k, temperature: 0.1 };
        let predict = |train: &[f32], labels: &[u32]| {
            let set = KnnSet { train, train_labels: labels, test: &test, d, classes };
            let mut p = vec![0u32; n_test];
            let mut s = vec![0.0; knn::scratch_len(n_train, k, classes)];
            let mut si = vec![0u32; knn::index_scratch_len(n_train, k)];
            knn::predict(&set, &cfg, &mut p, &mut s, &mut si).unwrap();
            p
        };
        prop_assert_eq!(predict(&train, &labels), predict(&ptrain, &plabels));
    }
}

proptest! {
    /// Spearman's ρ: 1 for any strictly increasing map, −1 for a decreasing
    /// one, symmetric in its arguments, within [−1, 1].
    #[test]
    fn spearman_rank_invariances(
        x in proptest::collection::vec(-10.0f32..10.0, 3..40),
        y in proptest::collection::vec(-10.0f32..10.0, 40),
    ) {
        use scorecl_core::stats::spearman;
        let n = x.len();
        let y = &y[..n];
        let (mut idx, mut a, mut b) = (vec![0u32; n], vec![0.0; n], vec![0.0; n]);
        let distinct = {
            let mut s = x.clone();
            s.sort_by(f32::total_cmp);
            s.windows(2).all(|w| w[0] < w[1])
        };
        prop_assume!(distinct);
        let up: Vec<f32> = x.iter().map(|v| v * v * v + 2.0 * v).collect();
        let down: Vec<f32> = x.iter().map(|v| -v).collect();
        let r = spearman(&x, &up, &mut idx, &mut a, &mut b).unwrap().unwrap();
        prop_assert!((r - 1.0).abs() < 1e-12, "{r}");
        let r = spearman(&x, &down, &mut idx, &mut a, &mut b).unwrap().unwrap();
        prop_assert!((r + 1.0).abs() < 1e-12, "{r}");
        let xy = spearman(&x, y, &mut idx, &mut a, &mut b).unwrap();
        let yx = spearman(y, &x, &mut idx, &mut a, &mut b).unwrap();
        prop_assert_eq!(xy, yx);
        if let Some(r) = xy {
            prop_assert!((-1.0..=1.0).contains(&r));
        }
        // A constant argument has no rank correlation.
        let c = vec![0.5f32; n];
        prop_assert_eq!(spearman(&x, &c, &mut idx, &mut a, &mut b).unwrap(), None);
        prop_assert!(spearman(&x, &c[..n - 1], &mut idx, &mut a, &mut b).is_err());
    }
}

/// The hand-crafted strength of the `augment` control: zero for the
/// identity, the cropped-away fraction for a crop, the jitter magnitude
/// only when the jitter is applied, linear in each coefficient, and
/// monotone: a smaller crop of the same view never has a smaller strength.
#[test]
fn augment_statistic_reads_crop_and_jitter() {
    use scorecl_core::augment::AugParams;
    use scorecl_core::weights::{augment_statistic, AugStrength};
    let unit = AugStrength::default();
    let id = AugParams::identity(32, 32);
    assert_eq!(augment_statistic(&id, 32, 32, &unit), 0.0);
    let half = AugParams {
        height: 16,
        width: 32,
        flip: true,
        gray: true,
        ..id
    };
    assert!(close(augment_statistic(&half, 32, 32, &unit), 0.5));
    let jit = AugParams {
        jitter: true,
        brightness: 1.25,
        contrast: 0.875,
        saturation: 1.0,
        hue: -0.125,
        ..id
    };
    // |0.25| + |−0.125| + 0 + |−0.125|
    assert!(close(augment_statistic(&jit, 32, 32, &unit), 0.5));
    let off = AugParams {
        jitter: false,
        ..jit
    };
    assert_eq!(augment_statistic(&off, 32, 32, &unit), 0.0);
    let both = AugParams {
        height: 16,
        width: 16,
        ..jit
    };
    let coef = AugStrength {
        crop: 2.0,
        jitter: 0.5,
    };
    assert!(close(
        augment_statistic(&both, 32, 32, &coef),
        2.0 * 0.75 + 0.5 * 0.5
    ));
    assert!(AugStrength {
        crop: -1.0,
        jitter: 1.0
    }
    .validate()
    .is_err());
    assert!(AugStrength {
        crop: 1.0,
        jitter: f32::NAN
    }
    .validate()
    .is_err());
    assert!(!WeightMode::Augment.needs_score_net());
    assert!(WeightMode::Shuffled.needs_score_net() && WeightMode::Score.needs_score_net());
}

proptest! {
    #[test]
    fn augment_statistic_is_monotone_in_the_crop(
        h in 1u32..64, w in 1u32..64, ch in 1u32..64, cw in 1u32..64, shrink in 0u32..64,
    ) {
        use scorecl_core::augment::AugParams;
        use scorecl_core::weights::{augment_statistic, AugStrength};
        let big = AugParams { height: ch.min(h), width: cw.min(w), ..AugParams::identity(h, w) };
        let small = AugParams { height: big.height.saturating_sub(shrink).max(1), ..big };
        let c = AugStrength::default();
        let (a, b) = (augment_statistic(&big, h, w, &c), augment_statistic(&small, h, w, &c));
        prop_assert!((0.0..1.0).contains(&a) && b >= a, "{a} {b}");
    }
}
