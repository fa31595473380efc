//! The embedded default dataset (`builtin[:N]`): generated in code from
//! fixed Philox streams, no download, the same on every machine.
//!
//! Ten classes defined by content: disc, square, triangle, ring, plus,
//! diagonal cross, horizontal bars, vertical bars, checkerboard and a pair
//! of discs. What varies inside a class is what the augmentations vary:
//! the shape's colour, the background (a two-colour gradient in a random
//! direction), position, scale and pixel noise. A classifier on raw colour
//! statistics is therefore near chance, and an encoder must become
//! invariant to colour and position to separate the classes: the k-NN
//! accuracy measures what self-supervised training learned.
//!
//! Shapes are drawn with 4 × 4 supersampling so they stay recognisable at
//! 16 × 16. Image `i` has class `i mod 10`; the test split (N/4 images, at
//! least one per class) comes from a different stream than the training
//! split.

use scorecl_core::rng::{stream_id, Philox, Purpose};

use super::{Dataset, Split};

/// Number of classes.
pub const CLASSES: usize = 10;

/// Class names.
pub const NAMES: [&str; CLASSES] = [
    "disc",
    "square",
    "triangle",
    "ring",
    "plus",
    "cross",
    "horizontal bars",
    "vertical bars",
    "checkerboard",
    "two discs",
];

/// Images of the test split for `n` training images.
pub fn test_len(n: usize) -> usize {
    (n / 4).max(CLASSES)
}

/// Whether the point (u, v), in units of the shape's radius around its
/// centre, is inside a shape of `class`.
pub fn inside(class: usize, u: f32, v: f32) -> bool {
    let (au, av) = (u.abs(), v.abs());
    let in_box = au <= 1.0 && av <= 1.0;
    let even = |a: f32| (a.floor() as i32).rem_euclid(2) == 0;
    match class {
        0 => u * u + v * v <= 1.0,
        1 => au <= 0.85 && av <= 0.85,
        2 => (-0.9..=0.8).contains(&v) && au <= (v + 0.9) / 1.7,
        3 => (0.3..=1.0).contains(&(u * u + v * v)),
        4 => (au <= 1.0 && av <= 0.32) || (av <= 1.0 && au <= 0.32),
        5 => au <= 0.9 && av <= 0.9 && ((u - v).abs() <= 0.38 || (u + v).abs() <= 0.38),
        6 => in_box && even((v + 1.0) * 2.5),
        7 => in_box && even((u + 1.0) * 2.5),
        8 => in_box && even((u + 1.0) * 1.5 + 2.0 * ((v + 1.0) * 1.5).floor()),
        _ => (au - 0.55).powi(2) + v * v <= 0.2,
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
        let bg0 = [u(0), u(1), u(2)].map(|v| 0.1 + 0.8 * v);
        let bg1 = [u(3), u(4), u(5)].map(|v| 0.1 + 0.8 * v);
        let mut fg = [u(6), u(7), u(8)];
        // Keep the shape visible against both ends of the background.
        let far = |a: [f32; 3], b: [f32; 3]| (0..3).map(|k| (a[k] - b[k]).abs()).sum::<f32>();
        if far(fg, bg0) < 0.7 || far(fg, bg1) < 0.7 {
            let mid = [0, 1, 2].map(|k| 0.5 * (bg0[k] + bg1[k]));
            fg = mid.map(|v| {
                if v > 0.5 {
                    0.05 * u(9)
                } else {
                    1.0 - 0.05 * u(9)
                }
            });
        }
        let angle = std::f32::consts::TAU * u(10);
        let (gx, gy) = (angle.cos(), angle.sin());
        let s = size as f32;
        let r = s * (0.2 + 0.14 * u(11));
        let (cx, cy) = (r + (s - 2.0 * r) * u(12), r + (s - 2.0 * r) * u(13));
        let noise = 0.03 + 0.05 * u(14);
        for y in 0..size {
            for x in 0..size {
                let mut cover = 0.0f32;
                for sy in 0..SS {
                    for sx in 0..SS {
                        let px = x as f32 + (sx as f32 + 0.5) / SS as f32;
                        let py = y as f32 + (sy as f32 + 0.5) / SS as f32;
                        if inside(class, (px - cx) / r, (py - cy) / r) {
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
    }
}
