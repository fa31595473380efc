//! `scorecl probe`: does the score statistic S grow with augmentation
//! strength? For each augmentation family at graded strengths, a fixed
//! sample of images is augmented (only that family; the views are drawn
//! with the core's `augment::sample` from a fixed seed), the score network
//! of a run gives the per-view statistic S of training (the core's
//! `weights::view_statistic`, default ‖s(v, σ_ref)‖/√D, averaged over the
//! run's `stat_sigmas`; the `dsm` statistic noises the views with normals
//! of stream `StatNoise` at 2⁴⁸ + level), and the report holds S (mean,
//! std) per level and Spearman's rank correlation (the core's
//! `stats::spearman`) between strength and |S(view) − S(original)| over
//! every (image, level) pair.

use std::path::{Path, PathBuf};

use scorecl_core::augment::{self, AugConfig, AugParams};
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::weights::Statistic;
use scorecl_core::{stats, weights};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::ScoreNet;
use crate::ops::augment::{Augmenter, Normalize};
use crate::tensor::DType;

/// One strength of one family.
#[derive(Debug, Clone)]
pub struct Level {
    /// The strength (x axis).
    pub strength: f64,
    /// The augmentation of this level (only the family's transform on).
    pub cfg: AugConfig,
    /// Solarisation threshold of this level.
    pub threshold: f32,
}

/// An augmentation family at graded strengths.
#[derive(Debug, Clone)]
pub struct Family {
    /// Name (file stem of its CSV and PNG).
    pub name: &'static str,
    /// What the strength means.
    pub strength_label: &'static str,
    /// Levels, weakest first.
    pub levels: Vec<Level>,
}

/// The families, graded from `preset` (the run's `[augment]`): crop scale
/// 1.0 → 0.08, colour-jitter strength 0 → 1.5 × the preset, grayscale
/// off/on, blur σ 0 → 2 px, solarisation threshold 1.0 (none) → 0.3.
pub fn families(preset: &AugConfig) -> Vec<Family> {
    let base = AugConfig {
        crop_scale: [1.0, 1.0],
        crop_ratio: [1.0, 1.0],
        flip_prob: 0.0,
        jitter_prob: 0.0,
        gray_prob: 0.0,
        blur_prob: 0.0,
        solarize_prob: 0.0,
        ..*preset
    };
    let lvl = |strength: f64, cfg: AugConfig| Level {
        strength,
        cfg,
        threshold: 0.5,
    };
    let crop = [1.0f32, 0.8, 0.6, 0.4, 0.2, 0.08]
        .iter()
        .map(|&s| {
            lvl(
                1.0 - s as f64,
                AugConfig {
                    crop_scale: [s, s],
                    crop_ratio: preset.crop_ratio,
                    ..base
                },
            )
        })
        .collect();
    let jitter = [0.0f32, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
        .iter()
        .map(|&m| {
            lvl(
                m as f64,
                AugConfig {
                    jitter_prob: if m > 0.0 { 1.0 } else { 0.0 },
                    brightness: m * preset.brightness,
                    contrast: m * preset.contrast,
                    saturation: m * preset.saturation,
                    hue: (m * preset.hue).min(0.5),
                    ..base
                },
            )
        })
        .collect();
    let gray = [0.0f32, 1.0]
        .iter()
        .map(|&g| {
            lvl(
                g as f64,
                AugConfig {
                    gray_prob: g,
                    ..base
                },
            )
        })
        .collect();
    let blur = [0.0f32, 0.5, 1.0, 1.5, 2.0]
        .iter()
        .map(|&s| {
            let mut c = base;
            if s > 0.0 {
                c.blur_prob = 1.0;
                c.blur_sigma = [s, s];
            }
            lvl(s as f64, c)
        })
        .collect();
    let solarize = [1.0f32, 0.9, 0.75, 0.6, 0.45, 0.3]
        .iter()
        .map(|&t| Level {
            strength: 1.0 - t as f64,
            cfg: AugConfig {
                solarize_prob: if t < 1.0 { 1.0 } else { 0.0 },
                solarize_threshold: t,
                ..base
            },
            threshold: t,
        })
        .collect();
    vec![
        Family {
            name: "crop",
            strength_label: "1 - crop area",
            levels: crop,
        },
        Family {
            name: "color_jitter",
            strength_label: "jitter strength (x preset)",
            levels: jitter,
        },
        Family {
            name: "grayscale",
            strength_label: "grayscale",
            levels: gray,
        },
        Family {
            name: "blur",
            strength_label: "blur sigma (px)",
            levels: blur,
        },
        Family {
            name: "solarize",
            strength_label: "1 - solarisation threshold",
            levels: solarize,
        },
    ]
}

/// S at one level.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelStats {
    /// Strength.
    pub strength: f64,
    /// Mean of S over the images.
    pub mean: f64,
    /// Standard deviation of S.
    pub std: f64,
    /// Mean |S(view) − S(original)|.
    pub mean_abs_diff: f64,
}

/// One family's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FamilyReport {
    /// Family name.
    pub name: String,
    /// What the strength means.
    pub strength_label: String,
    /// Per level.
    pub levels: Vec<LevelStats>,
    /// Spearman's ρ between strength and |S(view) − S(original)| (none
    /// when undefined).
    pub spearman: Option<f64>,
    /// Mean S of the unaugmented images.
    pub original_mean: f64,
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// The statistic a probe evaluates: its kind and the noise levels it is
/// averaged over (training's `scorecl.statistic` and `stat_sigmas`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatSpec {
    /// The per-view statistic.
    pub kind: Statistic,
    /// Noise levels (at least one).
    pub sigmas: Vec<f32>,
}

impl StatSpec {
    /// `norm` at one level σ_ref.
    pub fn norm(sigma_ref: f32) -> StatSpec {
        StatSpec {
            kind: Statistic::Norm,
            sigmas: vec![sigma_ref],
        }
    }
}

/// Probes `net` on the first `images` images of `data` at view size
/// `size` with the statistic `stat`.
#[allow(clippy::too_many_arguments)]
pub fn probe(
    gpu: &Gpu,
    net: &ScoreNet,
    stat: &StatSpec,
    data: &Dataset,
    size: usize,
    images: usize,
    preset: &AugConfig,
    seed: u64,
) -> Result<Vec<FamilyReport>> {
    let n = images.min(data.len());
    if n < 2 {
        return Err(Error::shape(
            "probe",
            format!(
                "`{}` has {} images; at least 2 are needed",
                data.name,
                data.len()
            ),
        ));
    }
    let idx: Vec<u32> = (0..n as u32).collect();
    let mut host = Vec::new();
    data.gather(&idx, &mut host);
    let clean = gpu.upload(&host, &[host.len()])?;
    let view = 3 * size * size;
    let (v01, vn) = (
        gpu.tensor(&[n * view], DType::F32)?,
        gpu.tensor(&[n * view], DType::F32)?,
    );
    if stat.sigmas.is_empty() {
        return Err(Error::shape(
            "probe",
            "no noise level for the statistic".to_string(),
        ));
    }
    let ws = net.forward_workspace(gpu, n, size, size)?;
    let levels: Vec<(f32, crate::Tensor, crate::Tensor)> = stat
        .sigmas
        .iter()
        .map(|&sg| {
            Ok((
                sg,
                gpu.upload(&vec![sg; n], &[n])?,
                gpu.upload(&vec![sg.ln(); n], &[n])?,
            ))
        })
        .collect::<Result<_>>()?;
    let noisy = gpu.tensor(&[n * view], DType::F32)?;
    let mut aug = Augmenter::new(gpu, n, (data.h, data.w), (size, size))?;
    // S of each image under one parameter set per image: the mean over
    // the levels of the core's statistic of the network's output.
    let mut stats_of = |params: &[AugParams], threshold: f32| -> Result<Vec<f32>> {
        aug.threshold = threshold;
        let mut s = gpu.step("probe views");
        aug.run(&mut s, &clean, params, &Normalize::CIFAR, &v01, &vn)?;
        let iv = s.readback(&v01);
        let views = s.submit()?.f32(iv);
        let mut total = vec![0.0f64; n];
        let mut eps = vec![0.0f32; n * view];
        for (l, (sg, sig, logsig)) in levels.iter().enumerate() {
            let mut s = gpu.step("probe");
            let input = if stat.kind == Statistic::Dsm {
                Philox::new(seed, stream_id(Purpose::StatNoise, (1 << 48) + l as u64))
                    .fill_normal(0, &mut eps);
                let x: Vec<f32> = views.iter().zip(&eps).map(|(v, e)| v + sg * e).collect();
                gpu.write(&noisy, bytemuck::cast_slice(&x))?;
                &noisy
            } else {
                &v01
            };
            net.forward(&mut s, &ws, input, sig, logsig)?;
            let i = s.readback(&ws.score);
            let score = s.submit()?.f32(i);
            for (j, t) in total.iter_mut().enumerate() {
                let r = j * view..(j + 1) * view;
                *t += weights::view_statistic(stat.kind, &score[r.clone()], &eps[r], *sg)
                    .map_err(|e| Error::shape("probe statistic", e.to_string()))?
                    as f64;
            }
        }
        Ok(total
            .iter()
            .map(|t| (t / levels.len() as f64) as f32)
            .collect())
    };
    let original = data.eval_params(size);
    let s0 = stats_of(&vec![original; n], 0.5)?;
    let (original_mean, _) = mean_std(&s0);
    let (h, w) = (data.h as u32, data.w as u32);
    let mut out = Vec::new();
    for (fi, fam) in families(preset).into_iter().enumerate() {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        let mut levels = Vec::new();
        for (li, level) in fam.levels.iter().enumerate() {
            let rng = Philox::new(
                seed,
                stream_id(Purpose::Augment, (1 << 40) + (fi as u64) * 64 + li as u64),
            );
            let mut params = Vec::with_capacity(n);
            for i in 0..n as u32 {
                let mut p = augment::sample(&rng, i, h, w, &level.cfg)?;
                if fam.name != "crop" {
                    // Only the family's transform differs from the original.
                    (p.top, p.left, p.height, p.width) =
                        (original.top, original.left, original.height, original.width);
                }
                params.push(p);
            }
            let s = stats_of(&params, level.threshold)?;
            let diffs: Vec<f32> = s.iter().zip(&s0).map(|(a, b)| (a - b).abs()).collect();
            let (mean, std) = mean_std(&s);
            let (mean_abs_diff, _) = mean_std(&diffs);
            xs.extend(std::iter::repeat_n(level.strength as f32, n));
            ys.extend_from_slice(&diffs);
            levels.push(LevelStats {
                strength: level.strength,
                mean,
                std,
                mean_abs_diff,
            });
        }
        let m = xs.len();
        let (mut ix, mut rx, mut ry) = (vec![0u32; m], vec![0.0; m], vec![0.0; m]);
        let spearman = stats::spearman(&xs, &ys, &mut ix, &mut rx, &mut ry)?;
        out.push(FamilyReport {
            name: fam.name.to_string(),
            strength_label: fam.strength_label.to_string(),
            levels,
            spearman,
            original_mean,
        });
    }
    Ok(out)
}

/// Writes `DIR/<family>.csv` (strength, S mean, S std, mean |ΔS|, ρ) and
/// `DIR/<family>.png` per family; returns the files.
pub fn write_outputs(dir: &Path, reports: &[FamilyReport]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    let mut files = Vec::new();
    for r in reports {
        let mut csv = String::from("family,strength,s_mean,s_std,mean_abs_diff,spearman\n");
        let rho = r.spearman.map_or(String::new(), |v| format!("{v}"));
        for l in &r.levels {
            csv.push_str(&format!(
                "{},{},{},{},{},{rho}\n",
                r.name, l.strength, l.mean, l.std, l.mean_abs_diff
            ));
        }
        let path = dir.join(format!("{}.csv", r.name));
        crate::nn::checkpoint::write_atomic(&path, csv.as_bytes())?;
        files.push(path);
        let png = dir.join(format!("{}.png", r.name));
        let pts: Vec<(f64, f64, f64)> = r
            .levels
            .iter()
            .map(|l| (l.strength, l.mean, l.std))
            .collect();
        crate::plot::probe_family(&png, &r.name, &r.strength_label, &pts, r.original_mean)?;
        files.push(png);
    }
    Ok(files)
}
