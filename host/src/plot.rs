//! PNG plots of a run directory's `metrics.jsonl` (with `plotters`, text in
//! an embedded DejaVu Sans subset so that no system font is needed):
//!
//! - `loss.png`: the method's loss (epoch mean) over epochs;
//! - `dsm_loss.png`: the score network's DSM loss (ScoreCL on/shuffled);
//! - `knn.png`: k-NN top-1 of the monitor (`eval.knn_every`);
//! - `weights.png`: the distribution of the pair weights per epoch
//!   (5–95 % and 25–75 % bands, median).
//!
//! Each is written only when the metrics hold its series.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is part of the binary and known to parse.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// The per-epoch series of a run.
#[derive(Debug, Default, Clone)]
pub struct EpochSeries {
    /// (epoch, mean loss).
    pub loss: Vec<(f64, f64)>,
    /// (epoch, mean DSM loss).
    pub dsm: Vec<(f64, f64)>,
    /// (epoch, k-NN top-1 %).
    pub knn: Vec<(f64, f64)>,
    /// (epoch, [p5, p25, p50, p75, p95] of the pair weights).
    pub weights: Vec<(f64, [f64; 5])>,
}

/// Reads the epoch records of `metrics.jsonl` (epochs counted from 1; a
/// resumed run's repeated epochs keep the last record).
pub fn read_metrics(path: &Path) -> Result<EpochSeries> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut by_epoch = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::file(path, format!("line {}: not JSON: {e}", i + 1)))?;
        if v["kind"] == "epoch" {
            let e = v["epoch"].as_u64().ok_or_else(|| {
                Error::file(
                    path,
                    format!("line {}: epoch record without `epoch`", i + 1),
                )
            })?;
            by_epoch.insert(e, v);
        }
    }
    let mut s = EpochSeries::default();
    for (e, v) in by_epoch {
        let x = e as f64 + 1.0;
        if let Some(l) = v["loss_mean"].as_f64() {
            s.loss.push((x, l));
        }
        if let Some(l) = v["dsm_loss_mean"].as_f64() {
            s.dsm.push((x, l));
        }
        if let Some(k) = v["knn_top1"].as_f64() {
            s.knn.push((x, k));
        }
        if let Some(q) = v["w_quantiles"].as_array() {
            let q: Vec<f64> = q.iter().filter_map(|v| v.as_f64()).collect();
            if let Ok(q) = <[f64; 5]>::try_from(q) {
                s.weights.push((x, q));
            }
        }
    }
    Ok(s)
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1e-3));
    (lo - pad, hi + pad)
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("cannot draw the plot: {e}"))
}

type Chart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One chart over epochs with `draw` filling it; written atomically.
fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    epochs: f64,
    yr: (f64, f64),
    draw: impl FnOnce(&mut Chart) -> std::result::Result<(), String>,
) -> Result<()> {
    let labels = ("epoch", y_label);
    chart_xy(path, title, labels, (1.0, epochs.max(2.0)), yr, draw)
}

/// One chart with `draw` filling it; written atomically.
fn chart_xy(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    draw: impl FnOnce(&mut Chart) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    let tmp = path.with_extension("png.tmp.png");
    let (w, h) = (800u32, 500u32);
    // Drawn into memory and encoded by the `image` crate the loaders use
    // (plotters' own encoder would build a second version of it).
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(path, e))?;
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x:.2}")
                }
            })
            .draw()
            .map_err(|e| draw_err(path, e))?;
        draw(&mut c).map_err(|e| draw_err(path, e))?;
        root.present().map_err(|e| draw_err(path, e))?;
    }
    image::RgbImage::from_raw(w, h, rgb)
        .expect("the buffer holds w·h RGB pixels")
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, format!("cannot write: {e}")))
}

fn line(c: &mut Chart, pts: &[(f64, f64)], colour: RGBColor) -> std::result::Result<(), String> {
    c.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
        .map_err(|e| e.to_string())?;
    c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes the plots of the run in `dir` (from `dir/metrics.jsonl`);
/// returns the files written.
pub fn plot_run(dir: &Path) -> Result<Vec<PathBuf>> {
    let s = read_metrics(&dir.join("metrics.jsonl"))?;
    let epochs = s.loss.iter().map(|p| p.0).fold(1.0, f64::max);
    let mut out = Vec::new();
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let green = RGBColor(44, 160, 44);
    for (name, title, label, pts, colour) in [
        (
            "loss.png",
            "Training loss",
            "loss (epoch mean)",
            &s.loss,
            blue,
        ),
        (
            "dsm_loss.png",
            "Score network (DSM) loss",
            "DSM loss (epoch mean)",
            &s.dsm,
            orange,
        ),
        (
            "knn.png",
            "k-NN top-1 on the test split",
            "top-1 (%)",
            &s.knn,
            green,
        ),
    ] {
        if pts.is_empty() {
            continue;
        }
        let path = dir.join(name);
        let yr = range(pts.iter().map(|p| p.1));
        chart(&path, title, label, epochs, yr, |c| line(c, pts, colour))?;
        out.push(path);
    }
    if !s.weights.is_empty() {
        let path = dir.join("weights.png");
        let yr = range(s.weights.iter().flat_map(|(_, q)| [q[0], q[4]]));
        let w = &s.weights;
        chart(
            &path,
            "ScoreCL pair weights per epoch",
            "weight",
            epochs,
            yr,
            |c| {
                for (lo, hi, alpha) in [(0, 4, 0.2), (1, 3, 0.4)] {
                    let mut poly: Vec<(f64, f64)> = w.iter().map(|(x, q)| (*x, q[hi])).collect();
                    poly.extend(w.iter().rev().map(|(x, q)| (*x, q[lo])));
                    c.draw_series(std::iter::once(Polygon::new(
                        poly,
                        blue.mix(alpha).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
                }
                let med: Vec<(f64, f64)> = w.iter().map(|(x, q)| (*x, q[2])).collect();
                line(c, &med, blue)
            },
        )?;
        out.push(path);
    }
    Ok(out)
}

/// `scorecl probe`'s plot of one augmentation family: the score statistic
/// (mean ± std over the images) against the strength, the unaugmented
/// images' mean as a dashed reference.
pub fn probe_family(
    path: &Path,
    family: &str,
    strength_label: &str,
    points: &[(f64, f64, f64)],
    original: f64,
) -> Result<()> {
    let xr = range(points.iter().map(|p| p.0));
    let yr = range(
        points
            .iter()
            .flat_map(|p| [p.1 - p.2, p.1 + p.2])
            .chain(std::iter::once(original)),
    );
    let blue = RGBColor(31, 119, 180);
    let title = format!("Score statistic S under {family}");
    chart_xy(
        path,
        &title,
        (strength_label, "S (mean ± std)"),
        xr,
        yr,
        |c| {
            c.draw_series(points.iter().map(|(x, m, sd)| {
                PathElement::new(vec![(*x, m - sd), (*x, m + sd)], blue.stroke_width(2))
            }))
            .map_err(|e| e.to_string())?;
            let orig = [(xr.0, original), (xr.1, original)];
            c.draw_series(DashedLineSeries::new(orig, 6, 4, BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            let means: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
            line(c, &means, blue)
        },
    )
}
