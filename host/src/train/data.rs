//! In-memory datasets: images [N, 3, H, W] in [0, 1] with labels.
//!
//! `builtin[:N]` is a small synthetic dataset generated deterministically
//! from a seed: four classes defined by shape (disc, square, horizontal
//! bars, cross) with colour, position, scale and background varying, so
//! that invariance to the augmentations is what a useful encoder learns.
//! It serves the tests and the tiny presets; the dataset loaders (CIFAR,
//! image folders, the embedded default dataset) come with the datasets
//! issue.

use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::error::{GpuError, Result};

/// Images and labels held in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// [n, 3, h, w] in [0, 1], row-major.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Number of classes.
    pub classes: usize,
    /// Name (for logs).
    pub name: String,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Floats per image.
    pub fn image_len(&self) -> usize {
        3 * self.h * self.w
    }

    /// Copies images `idx` into `out` (len · 3hw).
    pub fn gather(&self, idx: &[u32], out: &mut Vec<f32>) {
        out.clear();
        let k = self.image_len();
        for &i in idx {
            out.extend_from_slice(&self.images[i as usize * k..(i as usize + 1) * k]);
        }
    }

    /// The dataset a `data.dataset` value names. Only `builtin[:N]` exists
    /// until the dataset loaders land.
    pub fn open(spec: &str, size: usize, seed: u64) -> Result<Dataset> {
        if spec == "builtin" {
            return Ok(Self::builtin(2048, size, seed));
        }
        if let Some(n) = spec.strip_prefix("builtin:") {
            let n: usize = n.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                GpuError::shape(
                    "data.dataset",
                    format!("`{spec}`: builtin:N needs a count N ≥ 1"),
                )
            })?;
            return Ok(Self::builtin(n, size, seed));
        }
        Err(GpuError::shape(
            "data.dataset",
            format!(
                "`{spec}`: only the built-in dataset (builtin[:N]) is available in this version"
            ),
        ))
    }

    /// `n` synthetic images of `size` × `size`.
    pub fn builtin(n: usize, size: usize, seed: u64) -> Dataset {
        let classes = 4;
        let rng = Philox::new(seed ^ 0x5eed_da7a, stream_id(Purpose::DataOrder, 1 << 40));
        let mut images = vec![0.0f32; n * 3 * size * size];
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let base = (i as u64) << 5;
            let u = |k: u64| rng.uniform_at(base + k);
            let class = (i % classes) as u32;
            labels.push(class);
            let bg = [u(0), u(1), u(2)].map(|v| 0.2 + 0.6 * v);
            let mut fg = [u(3), u(4), u(5)];
            // Keep the shape visible against its background.
            if (0..3).map(|k| (fg[k] - bg[k]).abs()).sum::<f32>() < 0.6 {
                fg = bg.map(|v| 1.0 - v);
            }
            let s = size as f32;
            let (cx, cy) = (s * (0.3 + 0.4 * u(6)), s * (0.3 + 0.4 * u(7)));
            let r = s * (0.15 + 0.15 * u(8));
            let noise = u(9) * 0.05;
            for y in 0..size {
                for x in 0..size {
                    let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                    let inside = match class {
                        0 => dx * dx + dy * dy <= r * r,
                        1 => dx.abs() <= r && dy.abs() <= r,
                        2 => {
                            dx.abs() <= 1.4 * r
                                && dy.abs() <= r
                                && ((dy + r) / (0.5 * r)) as i32 % 2 == 0
                        }
                        _ => {
                            (dx.abs() <= r && dy.abs() <= 0.3 * r)
                                || (dy.abs() <= r && dx.abs() <= 0.3 * r)
                        }
                    };
                    let jitter =
                        noise * (rng.uniform_at(base + 16 + ((y * size + x) % 16) as u64) - 0.5);
                    for k in 0..3 {
                        let v = if inside { fg[k] } else { bg[k] };
                        images[((i * 3 + k) * size + y) * size + x] = (v + jitter).clamp(0.0, 1.0);
                    }
                }
            }
        }
        Dataset {
            images,
            labels,
            h: size,
            w: size,
            classes,
            name: format!("builtin:{n}"),
        }
    }

    /// The order of epoch `epoch`: a permutation of 0..len from Philox.
    pub fn order(&self, seed: u64, epoch: u64) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.len() as u32).collect();
        Philox::new(seed, stream_id(Purpose::DataOrder, epoch)).shuffle(0, &mut idx);
        idx
    }
}
