//! scorecl-core alone, on the CPU, with no wgpu in the dependency tree:
//! ScoreCL pair weights from two views' score fields, then the weighted
//! NT-Xent loss and its gradient. This is what another runtime embeds.
//!
//! Run: `cargo run --release -p scorecl-core-example` (synthetic arrays) or
//! `cargo run --release -p scorecl-core-example -- N DIM D s1.f32 s2.f32 z.f32`
//! with arrays from any source as raw little-endian f32 files: the score
//! fields of view 1 and view 2 (N × DIM each) and the projections of both
//! views stacked (2N × D, view 1's rows first), e.g. written by NumPy's
//! `a.astype('<f4').tofile(path)`.
//!
//! The synthetic score fields: the second view of pair i is scaled by
//! 1 + i/4, as if augmented more strongly, the way a score network's output
//! grows for a strongly augmented view. Pairs whose views differ most get
//! the largest weights.

use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::weights::{self, ScoreWeightConfig};
use scorecl_core::{simclr, GradPair, Views};

/// Reads `len` little-endian f32 values from `path`.
fn read_f32(path: &str, len: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() != 4 * len {
        return Err(format!(
            "{path}: {} bytes, expected {} ({len} f32 values)",
            bytes.len(),
            4 * len
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// (n, dim, d, s1, s2, z) from the arguments, or synthetic.
#[allow(clippy::type_complexity)]
fn inputs() -> Result<(usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 6 {
        let num = |i: usize, what: &str| {
            args[i]
                .parse::<usize>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{what}: `{}` is not a positive integer", args[i]))
        };
        let (n, dim, d) = (num(0, "N")?, num(1, "DIM")?, num(2, "D")?);
        return Ok((
            n,
            dim,
            d,
            read_f32(&args[3], n * dim)?,
            read_f32(&args[4], n * dim)?,
            read_f32(&args[5], 2 * n * d)?,
        ));
    }
    if !args.is_empty() {
        return Err("usage: scorecl-core-example [N DIM D s1.f32 s2.f32 z.f32]".into());
    }
    let (n, dim, d) = (8, 48, 16);
    let rng = Philox::new(2023, stream_id(Purpose::DsmNoise, 0));
    let mut s1 = vec![0.0f32; n * dim];
    rng.fill_normal(0, &mut s1);
    let s2: Vec<f32> = s1
        .iter()
        .enumerate()
        .map(|(k, x)| x * (1.0 + (k / dim) as f32 / 4.0))
        .collect();
    let mut z = vec![0.0f32; 2 * n * d];
    rng.fill_normal(1 << 20, &mut z);
    Ok((n, dim, d, s1, s2, z))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (n, dim, d, s1, s2, z) = inputs()?;
    let cfg = ScoreWeightConfig::default();
    let (mut w, mut stats) = (vec![0.0f32; n], vec![0.0f32; 2 * n]);
    let shuffle = Philox::new(2023, stream_id(Purpose::Shuffle, 0));
    weights::score_weights(
        Views::new(&s1, &s2, n, dim).map_err(|e| e.to_string())?,
        &cfg,
        &shuffle,
        &mut w,
        &mut stats,
    )
    .map_err(|e| e.to_string())?;
    println!("score statistic S(v1)  {:.3?}", &stats[..n]);
    println!("score statistic S(v2)  {:.3?}", &stats[n..]);
    println!("ScoreCL pair weights   {w:.3?}");

    // Projections of the two views (n × d) and the weighted NT-Xent.
    let (z1, z2) = z.split_at(n * d);
    let views = Views::new(z1, z2, n, d).map_err(|e| e.to_string())?;
    let mut scratch = vec![0.0f32; simclr::scratch_len(n, d)];
    let (mut g1, mut g2) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
    let cfg = simclr::SimClrConfig::default();
    let plain = simclr::loss(views, None, &cfg, None, &mut scratch).map_err(|e| e.to_string())?;
    let weighted = simclr::loss(
        views,
        Some(&w),
        &cfg,
        Some(GradPair::new(&mut g1, &mut g2)),
        &mut scratch,
    )
    .map_err(|e| e.to_string())?;
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
