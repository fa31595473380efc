//! A tour of scorecl-core on the CPU: ScoreCL pair weights from score
//! fields, then the weighted NT-Xent loss and its gradient.
//!
//! Run: `cargo run --release --example core_tour`
//!
//! The score fields here are synthetic: the second view of each pair drifts
//! from the data by a different amount, so its score norm grows by that
//! amount, the way a score network's output grows for a strongly augmented
//! view. Pairs whose views differ most get the largest weights.

use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::weights::{self, ScoreWeightConfig};
use scorecl_core::{simclr, GradPair, Views};

fn main() -> Result<(), scorecl_core::CoreError> {
    let (n, dim, d) = (8, 48, 16);
    let rng = Philox::new(2023, stream_id(Purpose::DsmNoise, 0));

    // Score fields of the two views (n × dim): view 2 of pair i is scaled by
    // 1 + i/4, as if augmented more strongly.
    let mut s1 = vec![0.0f32; n * dim];
    rng.fill_normal(0, &mut s1);
    let s2: Vec<f32> = s1
        .iter()
        .enumerate()
        .map(|(k, x)| x * (1.0 + (k / dim) as f32 / 4.0))
        .collect();
    let cfg = ScoreWeightConfig::default();
    let (mut w, mut stats) = (vec![0.0f32; n], vec![0.0f32; 2 * n]);
    let shuffle = Philox::new(2023, stream_id(Purpose::Shuffle, 0));
    weights::score_weights(
        Views::new(&s1, &s2, n, dim)?,
        &cfg,
        &shuffle,
        &mut w,
        &mut stats,
    )?;
    println!("score statistic S(v1)  {:.3?}", &stats[..n]);
    println!("score statistic S(v2)  {:.3?}", &stats[n..]);
    println!("ScoreCL pair weights   {w:.3?}");

    // Projections of the two views (n × d) and the weighted NT-Xent.
    let mut z = vec![0.0f32; 2 * n * d];
    rng.fill_normal(1 << 20, &mut z);
    let (z1, z2) = z.split_at(n * d);
    let views = Views::new(z1, z2, n, d)?;
    let mut scratch = vec![0.0f32; simclr::scratch_len(n, d)];
    let (mut g1, mut g2) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
    let cfg = simclr::SimClrConfig::default();
    let plain = simclr::loss(views, None, &cfg, None, &mut scratch)?;
    let weighted = simclr::loss(
        views,
        Some(&w),
        &cfg,
        Some(GradPair::new(&mut g1, &mut g2)),
        &mut scratch,
    )?;
    let gnorm = |g: &[f32]| g.iter().map(|x| x * x).sum::<f32>().sqrt();
    println!(
        "NT-Xent (τ = {}): unweighted {plain:.4}, ScoreCL-weighted {weighted:.4}",
        cfg.temperature
    );
    println!(
        "gradient norms per pair (view 1): {:.4?}",
        (0..n)
            .map(|i| gnorm(&g1[i * d..(i + 1) * d]))
            .collect::<Vec<_>>()
    );
    Ok(())
}
