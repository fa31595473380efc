//! Finite-difference checks of every loss gradient (proptest).
//!
//! Richardson-extrapolated central differences on f32 inputs, step
//! h = 1e-2·max(1, |x|) (the step actually taken is read back from the
//! rounded inputs). The loss is returned in f32 (rounding ≈ 6e-8·|L|), so
//! the estimate carries up to 3·(ε/2)·|L|/h of rounding plus O(h⁴)
//! truncation; each element must satisfy
//! |fd − analytic| ≤ 2e-3 + 2e-2·|analytic| + 3ε·|L|/h,
//! which a wrong factor or sign exceeds by far. Inputs where the loss curves on a scale near h (kinks, tiny
//! whitened norms, near-singular chunks) are skipped, each with its reason.

mod common;

use proptest::prelude::*;
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::wmse::WmseConfig;
use scorecl_core::{dsm, simclr, simsiam, vicreg, wmse, xent, GradPair, Views};

const ABS: f64 = 2e-3;
const REL: f64 = 2e-2;

/// Central difference of `f` at element `i` with step `h`, using the step
/// actually taken after rounding the perturbed inputs to f32.
fn central(x: &[f32], i: usize, h: f32, f: &dyn Fn(&[f32]) -> f32) -> f64 {
    let mut xp = x.to_vec();
    xp[i] = x[i] + h;
    let (lp, up) = (f(&xp) as f64, xp[i] as f64);
    xp[i] = x[i] - h;
    let (lm, dn) = (f(&xp) as f64, xp[i] as f64);
    (lp - lm) / (up - dn)
}

/// Checks `grad` against Richardson-extrapolated central differences
/// `(4·D(h/2) − D(h))/3` (truncation O(h⁴)) over every element of `x`.
fn check_fd(
    what: &str,
    x: &[f32],
    grad: &[f32],
    f: &dyn Fn(&[f32]) -> f32,
) -> Result<(), TestCaseError> {
    let loss = f(x).abs() as f64;
    for i in 0..x.len() {
        let h = 1e-2 * x[i].abs().max(1.0);
        let fd = (4.0 * central(x, i, h / 2.0, f) - central(x, i, h, f)) / 3.0;
        let g = grad[i] as f64;
        // Rounding of the f32 loss: at most ε/2·|L| per evaluation, which
        // the extrapolated quotient amplifies to 3·(ε/2)·|L|/h; doubled.
        let rounding = 3.0 * f32::EPSILON as f64 * loss / h as f64;
        prop_assert!(
            (fd - g).abs() <= ABS + REL * g.abs() + rounding,
            "{what}[{i}]: analytic {g}, finite difference {fd} (loss {loss})"
        );
    }
    Ok(())
}

fn matrix(n: usize, d: usize, lo: f32, hi: f32) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(lo..hi, n * d)
}

/// (n, d, z1, z2, weights)
fn batch(
    max_n: usize,
    max_d: usize,
) -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (2..=max_n, 1..=max_d).prop_flat_map(|(n, d)| {
        (
            Just(n),
            Just(d),
            matrix(n, d, -2.0, 2.0),
            matrix(n, d, -2.0, 2.0),
            proptest::collection::vec(0.0f32..2.0, n),
        )
    })
}

/// A lower bound on the smallest eigenvalue of the shrunk covariance of
/// one chunk (m × d, d ≤ 3): det / trace^(d−1).
fn min_eig_bound(x: &[f32], m: usize, d: usize, eps: f32) -> f64 {
    let mu: Vec<f64> = (0..d)
        .map(|j| (0..m).map(|k| x[k * d + j] as f64).sum::<f64>() / m as f64)
        .collect();
    let c = |j: usize, t: usize| {
        let s: f64 = (0..m)
            .map(|k| (x[k * d + j] as f64 - mu[j]) * (x[k * d + t] as f64 - mu[t]))
            .sum();
        (1.0 - eps as f64) * s / (m - 1) as f64 + if j == t { eps as f64 } else { 0.0 }
    };
    let tr: f64 = (0..d).map(|j| c(j, j)).sum();
    let det = match d {
        1 => c(0, 0),
        2 => c(0, 0) * c(1, 1) - c(0, 1) * c(1, 0),
        3 => {
            c(0, 0) * (c(1, 1) * c(2, 2) - c(1, 2) * c(2, 1))
                - c(0, 1) * (c(1, 0) * c(2, 2) - c(1, 2) * c(2, 0))
                + c(0, 2) * (c(1, 0) * c(2, 1) - c(1, 1) * c(2, 0))
        }
        _ => unreachable!("d ≤ 3 here"),
    };
    det / tr.powi(d as i32 - 1)
}

fn norms_ok(z: &[f32], d: usize) -> bool {
    z.chunks(d)
        .all(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt() > 0.3)
}

proptest! {
    #![proptest_config(common::proptest_config())]

    #[test]
    /// Pair weights (n) or, `per_view`, one weight per view (2n).
    fn simclr_gradient(
        (n, d, z1, z2, w) in batch(5, 4), tau in 0.1f32..1.0,
        extra in proptest::collection::vec(0.0f32..2.0, 5), per_view in any::<bool>(),
    ) {
        prop_assume!(norms_ok(&z1, d) && norms_ok(&z2, d));
        let w: Vec<f32> = if per_view { w.iter().chain(&extra[..n]).copied().collect() } else { w };
        let cfg = simclr::SimClrConfig { temperature: tau };
        let mut s = vec![0.0; simclr::scratch_len(n, d)];
        let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
        simclr::loss(Views::new(&z1, &z2, n, d).unwrap(), Some(&w), &cfg,
            Some(GradPair::new(&mut g1, &mut g2)), &mut s).unwrap();
        let loss = |a: &[f32], b: &[f32]| {
            let mut s = vec![0.0; simclr::scratch_len(n, d)];
            simclr::loss(Views::new(a, b, n, d).unwrap(), Some(&w), &cfg, None, &mut s).unwrap()
        };
        check_fd("simclr dz1", &z1, &g1, &|x| loss(x, &z2))?;
        check_fd("simclr dz2", &z2, &g2, &|x| loss(&z1, x))?;
    }

    #[test]
    /// Pair weights (n) or, `per_view`, one weight per view (2n).
    fn simsiam_gradient(
        (n, d, p1, p2, w) in batch(5, 4), z in matrix(10, 4, -2.0, 2.0),
        extra in proptest::collection::vec(0.0f32..2.0, 5), per_view in any::<bool>(),
    ) {
        prop_assume!(norms_ok(&p1, d) && norms_ok(&p2, d));
        let w: Vec<f32> = if per_view { w.iter().chain(&extra[..n]).copied().collect() } else { w };
        let (z1, z2) = (z[..n * d].to_vec(), z[z.len() - n * d..].to_vec());
        let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
        let zv = Views::new(&z1, &z2, n, d).unwrap();
        simsiam::loss(Views::new(&p1, &p2, n, d).unwrap(), zv, Some(&w),
            Some(GradPair::new(&mut g1, &mut g2))).unwrap();
        let loss = |a: &[f32], b: &[f32]| {
            simsiam::loss(Views::new(a, b, n, d).unwrap(), zv, Some(&w), None).unwrap()
        };
        check_fd("simsiam dp1", &p1, &g1, &|x| loss(x, &p2))?;
        check_fd("simsiam dp2", &p2, &g2, &|x| loss(&p1, x))?;
    }

    #[test]
    fn wmse_gradient(
        // d = 1 is left out: there cos(ẑ1, ẑ2) = ±1, a step function of the
        // inputs, whose finite differences jump where the gradient is 0.
        chunks in 1usize..=2, d in 2usize..=3, extra in 2usize..=4,
        eps in prop_oneof![Just(0.0f32), 0.05f32..0.5],
        seed in matrix(2 * 2 * 7, 3, -2.0, 2.0),
        w in proptest::collection::vec(0.0f32..2.0, 14),
    ) {
        let m = d + extra;
        let n = chunks * m;
        let z1 = seed[..n * d].to_vec();
        let z2 = seed[seed.len() - n * d..].to_vec();
        let w = &w[..n];
        let cfg = WmseConfig { eps, w_size: m };
        let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
        let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
        let r = wmse::loss(Views::new(&z1, &z2, n, d).unwrap(), Some(w), None, &cfg,
            Some(GradPair::new(&mut g1, &mut g2)), &mut s);
        prop_assume!(r.is_ok());
        // The loss curves on the scale sqrt(λ_min) of each chunk covariance;
        // finite differences with a 1e-2 step need that scale to be large.
        // λ_min ≥ det/trace^(d−1) gives a cheap lower bound.
        // Likewise cos(ẑ1, ẑ2) curves on the scale of the whitened row norms.
        for z in [&z1, &z2] {
            for c in 0..chunks {
                let x = &z[c * m * d..(c + 1) * m * d];
                prop_assume!(min_eig_bound(x, m, d, eps) > 0.05);
                let mut out = vec![0.0; m * d];
                let mut ws = vec![0.0f64; wmse::whiten_scratch_len(d)];
                wmse::whiten(x, m, d, eps, &mut out, &mut ws).unwrap();
                prop_assume!(out.chunks(d).all(|r| r.iter().map(|v| v * v).sum::<f32>() > 0.09));
            }
        }
        let loss = |a: &[f32], b: &[f32]| {
            let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
            wmse::loss(Views::new(a, b, n, d).unwrap(), Some(w), None, &cfg, None, &mut s)
                .unwrap()
        };
        check_fd("wmse dz1", &z1, &g1, &|x| loss(x, &z2))?;
        check_fd("wmse dz2", &z2, &g2, &|x| loss(&z1, x))?;
    }

    #[test]
    fn vicreg_gradient((n, d, z1, z2, w) in batch(6, 4), scale in 0.2f32..3.0) {
        let z1: Vec<f32> = z1.iter().map(|x| x * scale).collect();
        let z2: Vec<f32> = z2.iter().map(|x| x * scale).collect();
        // Away from the relu kink at std = 1, where the derivative jumps, and
        // from std ≈ 0, where sqrt(var + 1e-4) curves on the 1e-2 scale of
        // the finite-difference step.
        let stds_far_from_one = |z: &[f32]| (0..d).all(|j| {
            let col: Vec<f64> = (0..n).map(|i| z[i * d + j] as f64).collect();
            let mu = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (n - 1) as f64;
            let std = (var + 1e-4).sqrt();
            (std - 1.0).abs() > 0.1 && std > 0.2
        });
        prop_assume!(stds_far_from_one(&z1) && stds_far_from_one(&z2));
        let cfg = VicRegConfig::default();
        let mut s = vec![0.0; vicreg::scratch_len(d)];
        let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
        vicreg::loss(Views::new(&z1, &z2, n, d).unwrap(), Some(&w), &cfg,
            Some(GradPair::new(&mut g1, &mut g2)), &mut s).unwrap();
        let loss = |a: &[f32], b: &[f32]| {
            let mut s = vec![0.0; vicreg::scratch_len(d)];
            vicreg::loss(Views::new(a, b, n, d).unwrap(), Some(&w), &cfg, None, &mut s)
                .unwrap().loss
        };
        check_fd("vicreg dz1", &z1, &g1, &|x| loss(x, &z2))?;
        check_fd("vicreg dz2", &z2, &g2, &|x| loss(&z1, x))?;
    }

    #[test]
    fn dsm_gradient(
        (n, d, score, noise, _w) in batch(5, 6),
        sigma in proptest::collection::vec(0.01f32..1.0, 5),
    ) {
        let sigma = &sigma[..n];
        let mut g = vec![0.0; n * d];
        dsm::loss(&score, &noise, sigma, d, Some(&mut g)).unwrap();
        check_fd("dsm dscore", &score, &g, &|x| dsm::loss(x, &noise, sigma, d, None).unwrap())?;
    }

    #[test]
    fn xent_gradient(
        (n, c, logits, labels) in (1usize..6, 2usize..7).prop_flat_map(|(n, c)| (
            Just(n),
            Just(c),
            matrix(n, c, -4.0, 4.0),
            proptest::collection::vec(0..c as u32, n),
        )),
    ) {
        let mut g = vec![0.0; n * c];
        xent::softmax_xent(&logits, &labels, c, &mut g).unwrap();
        let mut scratch = vec![0.0; n * c];
        check_fd("xent dlogits", &logits, &g, &|x| {
            xent::softmax_xent(x, &labels, c, &mut scratch.clone()).unwrap()
        })?;
        // Each row's gradient sums to zero (softmax minus a one-hot).
        for r in 0..n {
            let sum: f32 = g[r * c..(r + 1) * c].iter().sum();
            prop_assert!(sum.abs() < 1e-6, "row {r} sums to {sum}");
        }
        scratch.clear();
    }
}
