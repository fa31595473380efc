//! The embedded default dataset (`builtin[:N]`): generated in code from
//! fixed Philox streams, no download, the same on every machine.
//!
//! Ten classes defined by texture, each filling the image: horizontal and
//! vertical stripes, checkerboard, diamonds, dots, rings, grid,
//! cross-hatch, zigzag and bricks. What varies inside a class is what the
//! augmentations vary: the two colours (random hue and saturation, one dark and one light),
//! the background gradient, the period (scale), the phase (position), a
//! small rotation and pixel noise. Because the pattern fills the image,
//! every random crop still shows its class; because colours are shared by
//! all classes, a classifier on colour statistics is near chance and an
//! encoder must become invariant to colour to separate the classes: the
//! k-NN accuracy measures what self-supervised training learned.
//!
//! Patterns are drawn with 4 × 4 supersampling so they stay recognisable
//! at 16 × 16. Image `i` has class `i mod 10`; the test split (N/2 images, at
//! least one per class) comes from a different stream than the training
//! split.

use scorecl_core::rng::{stream_id, Philox, Purpose};

use super::{Dataset, EvalView, Split};

/// Number of classes.
pub const CLASSES: usize = 10;

/// Class names.
pub const NAMES: [&str; CLASSES] = [
    "horizontal stripes",
    "vertical stripes",
    "checkerboard",
    "diamonds",
    "dots",
    "rings",
    "grid",
    "cross-hatch",
    "zigzag",
    "bricks",
];

/// Images of the test split for `n` training images.
pub fn test_len(n: usize) -> usize {
    (n / 2).max(CLASSES)
}

/// Whether the pattern of `class` covers the point (u, v), in units of the
/// pattern's period, already rotated and shifted. Every pattern maps to
/// itself under a horizontal flip, so the flip augmentation never turns
/// one class into another.
pub fn inside(class: usize, u: f32, v: f32) -> bool {
    let fr = |a: f32| a - a.floor();
    let even = |a: f32| (a.floor() as i32).rem_euclid(2) == 0;
    match class {
        0 => fr(v) < 0.5,
        1 => fr(u) < 0.5,
        2 => even(u) == even(v),
        3 => {
            let (a, b) = (
                (u + v) * std::f32::consts::FRAC_1_SQRT_2,
                (u - v) * std::f32::consts::FRAC_1_SQRT_2,
            );
            even(a) == even(b)
        }
        4 => {
            let (du, dv) = (fr(u) - 0.5, fr(v) - 0.5);
            du * du + dv * dv < 0.32 * 0.32
        }
        5 => fr((u * u + v * v).sqrt()) < 0.5,
        6 => fr(u) < 0.28 || fr(v) < 0.28,
        7 => {
            let k = std::f32::consts::FRAC_1_SQRT_2;
            fr((u + v) * k) < 0.25 || fr((u - v) * k) < 0.25
        }
        8 => {
            // Zigzag stripes: a triangle wave across u.
            let t = (fr(u) - 0.5).abs() * 2.0;
            fr(v + 0.6 * t) < 0.5
        }
        _ => {
            // Bricks: mortar rows, and joints shifted every other row.
            let shift = if even(v) { 0.0 } else { 0.5 };
            fr(v) < 0.25 || fr(u / 1.5 + shift) < 0.14
        }
    }
}

/// `n` training images (or [`test_len`]`(n)` test images) of `size`².
pub fn generate(n: usize, split: Split, size: usize) -> Dataset {
    let (count, stream) = match split {
        Split::Train => (n, 1u64 << 40),
        Split::Test => (test_len(n), 1u64 << 41),
    };
    let rng = Philox::new(0x5eed_da7a, stream_id(Purpose::DataOrder, stream));
    let plane = size * size;
    let mut images = vec![0u8; count * 3 * plane];
    let mut labels = Vec::with_capacity(count);
    const SS: usize = 4;
    for i in 0..count {
        let base = (i as u64) << 20;
        let u = |k: u64| rng.uniform_at(base + k);
        let class = i % CLASSES;
        labels.push(class as u32);
        // Two colours of random hue and saturation, one dark and one
        // light (which is which is random): the pattern always stands out
        // by its luminance, while its colours say nothing about the class.
        let colour = |k: u64, light: bool| -> [f32; 3] {
            let (h, sat) = (u(k), 0.3 + 0.7 * u(k + 1));
            let val = if light {
                0.75 + 0.25 * u(k + 2)
            } else {
                0.1 + 0.25 * u(k + 2)
            };
            crate::ops::augment::pixel::hsv2rgb([h, sat, val])
        };
        let light_fg = u(0) < 0.5;
        let fg = colour(1, light_fg);
        let bg0 = colour(4, !light_fg);
        let bg1 = [0, 1, 2].map(|k| (bg0[k] + 0.25 * (u(7 + k as u64) - 0.5)).clamp(0.0, 1.0));
        let angle = std::f32::consts::TAU * u(12);
        let (gx, gy) = (angle.cos(), angle.sin());
        let s = size as f32;
        // Period 22–36 % of the side, a small rotation, a random phase
        // (and, for rings, a random centre).
        let period = s * (0.22 + 0.14 * u(13));
        let rot = (u(14) - 0.5) * 0.3;
        let (rc, rs) = (rot.cos(), rot.sin());
        let (ox, oy) = (s * u(15), s * u(17));
        let noise = 0.02 + 0.04 * u(16);
        for y in 0..size {
            for x in 0..size {
                let mut cover = 0.0f32;
                for sy in 0..SS {
                    for sx in 0..SS {
                        let px = x as f32 + (sx as f32 + 0.5) / SS as f32;
                        let py = y as f32 + (sy as f32 + 0.5) / SS as f32;
                        let (dx, dy) = (px - ox, py - oy);
                        let (pu, pv) = (rc * dx + rs * dy, -rs * dx + rc * dy);
                        if inside(class, pu / period, pv / period) {
                            cover += 1.0 / (SS * SS) as f32;
                        }
                    }
                }
                let t = 0.5
                    + 0.5 * ((x as f32 + 0.5) / s - 0.5) * gx * 2.0
                    + 0.5 * ((y as f32 + 0.5) / s - 0.5) * gy * 2.0;
                let t = t.clamp(0.0, 1.0);
                let jitter = noise * (rng.normal_at(base + 64 + (y * size + x) as u64));
                for k in 0..3 {
                    let bg = bg0[k] + (bg1[k] - bg0[k]) * t;
                    let v = bg + (fg[k] - bg) * cover + jitter;
                    images[(i * 3 + k) * plane + y * size + x] =
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    Dataset {
        images,
        labels,
        h: size,
        w: size,
        classes: CLASSES,
        class_names: NAMES.iter().map(|s| s.to_string()).collect(),
        name: String::new(),
        eval_view: EvalView::Resize,
    }
}
