//! Rank statistics for `scorecl probe` (does the score statistic grow with
//! augmentation strength?): average ranks with ties and Spearman's rank
//! correlation, as `scipy.stats.spearmanr`.

use crate::math::check_len;
use crate::{CoreError, Result};

/// Ranks of `x` (1-based; tied values share the mean of their ranks) into
/// `out`, using `idx` (len n) as scratch. NaN is refused.
pub fn ranks(x: &[f32], idx: &mut [u32], out: &mut [f64]) -> Result<()> {
    let n = x.len();
    check_len("ranks idx", idx.len(), n)?;
    check_len("ranks out", out.len(), n)?;
    if x.iter().any(|v| v.is_nan()) {
        return Err(CoreError::Config {
            field: "ranks",
            allowed: "values that are not NaN",
        });
    }
    for (i, v) in idx.iter_mut().enumerate() {
        *v = i as u32;
    }
    idx.sort_unstable_by(|a, b| x[*a as usize].total_cmp(&x[*b as usize]));
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && x[idx[j] as usize] == x[idx[i] as usize] {
            j += 1;
        }
        // Positions i..j (0-based) share rank mean(i+1..=j).
        let r = (i + 1 + j) as f64 / 2.0;
        for k in i..j {
            out[idx[k] as usize] = r;
        }
        i = j;
    }
    Ok(())
}

/// Spearman's rank correlation of `x` and `y` (Pearson's correlation of
/// their average ranks); `None` when either is constant (undefined, where
/// scipy gives NaN). Scratch: `idx` (n), `rx`, `ry` (n each).
pub fn spearman(
    x: &[f32],
    y: &[f32],
    idx: &mut [u32],
    rx: &mut [f64],
    ry: &mut [f64],
) -> Result<Option<f64>> {
    check_len("spearman y", y.len(), x.len())?;
    ranks(x, idx, rx)?;
    ranks(y, idx, ry)?;
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(ry.iter()) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(None);
    }
    Ok(Some(sxy / libm::sqrt(sxx * syy)))
}
