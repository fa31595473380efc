//! Per-sample augmentation parameters drawn from Philox, with torchvision's
//! semantics: `RandomResizedCrop` (ten tries, then the centre-crop
//! fallback), `RandomHorizontalFlip`, `RandomApply(ColorJitter)` with a
//! random order of the four adjustments, `RandomGrayscale`, Gaussian blur
//! and solarisation (the ImageNet presets).
//!
//! Every draw has a fixed slot, so a parameter never depends on how many
//! draws an earlier branch took, and a GPU kernel can draw any one of them
//! directly. Sample `s` uses words `(s << 34) + slot` of the caller's
//! stream (its own 2³² blocks); the caller picks the stream per step and
//! view, e.g. `stream_id(Purpose::Augment, (step << 1) | view)`.

use crate::math::{non_negative, probability};
use crate::rng::Philox;
use crate::{CoreError, Result};

/// RandomResizedCrop tries before the fallback (torchvision: 10).
pub const CROP_TRIES: u64 = 10;
/// Slot of try t's scale draw is `2t`, of its log-ratio draw `2t + 1`.
pub const SLOT_CROP_TOP: u64 = 20;
/// Slot of the crop's left offset.
pub const SLOT_CROP_LEFT: u64 = 21;
/// Slot of the flip draw.
pub const SLOT_FLIP: u64 = 22;
/// Slot of the colour-jitter apply draw.
pub const SLOT_JITTER: u64 = 23;
/// First of the three slots of the jitter order (Fisher–Yates of 4).
pub const SLOT_JITTER_ORDER: u64 = 24;
/// First of the four slots of the jitter factors (b, c, s, h).
pub const SLOT_JITTER_FACTORS: u64 = 27;
/// Slot of the grayscale draw.
pub const SLOT_GRAY: u64 = 31;
/// Slot of the blur apply draw.
pub const SLOT_BLUR: u64 = 32;
/// Slot of the blur sigma draw.
pub const SLOT_BLUR_SIGMA: u64 = 33;
/// Slot of the solarisation draw.
pub const SLOT_SOLARIZE: u64 = 34;
/// Words reserved per sample that are actually used.
pub const SLOTS: u64 = 35;

/// Augmentation settings of one view (torchvision parameter meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AugConfig {
    /// RandomResizedCrop area fraction range (0.08, 1.0).
    pub crop_scale: [f32; 2],
    /// RandomResizedCrop aspect-ratio range (3/4, 4/3).
    pub crop_ratio: [f32; 2],
    /// Horizontal flip probability (0.5).
    pub flip_prob: f32,
    /// Probability of applying the colour jitter (0.8).
    pub jitter_prob: f32,
    /// ColorJitter brightness (0.4): factor in [max(0, 1−b), 1+b].
    pub brightness: f32,
    /// ColorJitter contrast (0.4).
    pub contrast: f32,
    /// ColorJitter saturation (0.4).
    pub saturation: f32,
    /// ColorJitter hue (0.1): shift in [−h, h], h ≤ 0.5.
    pub hue: f32,
    /// RandomGrayscale probability (0.2).
    pub gray_prob: f32,
    /// Gaussian blur probability (0 for CIFAR).
    pub blur_prob: f32,
    /// Gaussian blur sigma range (0.1, 2.0).
    pub blur_sigma: [f32; 2],
    /// Solarisation probability (0 for CIFAR).
    pub solarize_prob: f32,
    /// Solarisation threshold in [0, 1] pixel scale (0.5, PIL's 128).
    pub solarize_threshold: f32,
    /// Antialiased resampling where the crop is downscaled (true):
    /// torchvision's `RandomResizedCrop(antialias=True)`, its default
    /// since 0.17; false gives plain bilinear (`antialias=False`).
    pub antialias: bool,
}

impl Default for AugConfig {
    fn default() -> Self {
        AugConfig {
            crop_scale: [0.08, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_prob: 0.5,
            jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            gray_prob: 0.2,
            blur_prob: 0.0,
            blur_sigma: [0.1, 2.0],
            solarize_prob: 0.0,
            solarize_threshold: 0.5,
            antialias: true,
        }
    }
}

impl AugConfig {
    /// The CIFAR pipeline (both views): crop, flip, jitter, grayscale.
    pub fn cifar() -> Self {
        Self::default()
    }

    /// The asymmetric ImageNet pipeline of BYOL / solo-learn: view 0 always
    /// blurred, never solarised; view 1 blurred with p = 0.1, solarised
    /// with p = 0.2.
    pub fn imagenet(view: usize) -> Self {
        let (blur_prob, solarize_prob) = if view == 0 { (1.0, 0.0) } else { (0.1, 0.2) };
        AugConfig {
            blur_prob,
            solarize_prob,
            ..Self::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let [s0, s1] = self.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(CoreError::Config {
                field: "crop_scale",
                allowed: "0 < min <= max <= 1",
            });
        }
        let [r0, r1] = self.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(CoreError::Config {
                field: "crop_ratio",
                allowed: "0 < min <= max",
            });
        }
        probability("flip_prob", self.flip_prob)?;
        probability("jitter_prob", self.jitter_prob)?;
        non_negative("brightness", self.brightness)?;
        non_negative("contrast", self.contrast)?;
        non_negative("saturation", self.saturation)?;
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(CoreError::Config {
                field: "hue",
                allowed: "a value in [0, 0.5]",
            });
        }
        probability("gray_prob", self.gray_prob)?;
        probability("blur_prob", self.blur_prob)?;
        let [b0, b1] = self.blur_sigma;
        if !(b0 > 0.0 && b0 <= b1 && b1.is_finite()) {
            return Err(CoreError::Config {
                field: "blur_sigma",
                allowed: "0 < min <= max",
            });
        }
        probability("solarize_prob", self.solarize_prob)?;
        probability("solarize_threshold", self.solarize_threshold)
    }
}

/// The parameters of one augmented view of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugParams {
    /// Crop box top row in the source image.
    pub top: u32,
    /// Crop box left column.
    pub left: u32,
    /// Crop box height.
    pub height: u32,
    /// Crop box width.
    pub width: u32,
    /// Horizontal flip.
    pub flip: bool,
    /// Whether the colour jitter is applied.
    pub jitter: bool,
    /// Order of the adjustments, torchvision's `fn_idx`: 0 brightness,
    /// 1 contrast, 2 saturation, 3 hue.
    pub jitter_order: [u8; 4],
    /// Brightness factor (1: none).
    pub brightness: f32,
    /// Contrast factor (1: none).
    pub contrast: f32,
    /// Saturation factor (1: none).
    pub saturation: f32,
    /// Hue shift in turns (0: none).
    pub hue: f32,
    /// Convert to grayscale.
    pub gray: bool,
    /// Gaussian blur sigma in pixels of the output (0: no blur).
    pub blur_sigma: f32,
    /// Solarise (invert values at or above the threshold).
    pub solarize: bool,
    /// Antialiased resampling when the crop is downscaled (torchvision's
    /// `antialias=True`); plain bilinear when false.
    pub antialias: bool,
}

impl AugParams {
    /// The identity on an `h × w` image: full crop, nothing else
    /// (resampled with antialiasing, as torchvision's `Resize`).
    pub fn identity(h: u32, w: u32) -> Self {
        AugParams {
            top: 0,
            left: 0,
            height: h,
            width: w,
            flip: false,
            jitter: false,
            jitter_order: [0, 1, 2, 3],
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
            gray: false,
            blur_sigma: 0.0,
            solarize: false,
            antialias: true,
        }
    }
}

/// Python's `round` (half to even) of a non-negative float.
fn round_half_even(x: f64) -> i64 {
    let f = libm::floor(x);
    let diff = x - f;
    let f = f as i64;
    if diff > 0.5 || (diff == 0.5 && f % 2 != 0) {
        f + 1
    } else {
        f
    }
}

/// torchvision's `RandomResizedCrop.get_params` on an `h × w` image, with
/// uniform draws `u(slot)`. Returns `(top, left, height, width)`.
pub fn crop_box(
    h: u32,
    w: u32,
    scale: [f32; 2],
    ratio: [f32; 2],
    u: &dyn Fn(u64) -> f32,
) -> [u32; 4] {
    let area = h as f64 * w as f64;
    let (l0, l1) = (libm::log(ratio[0] as f64), libm::log(ratio[1] as f64));
    for t in 0..CROP_TRIES {
        let s = scale[0] as f64 + u(2 * t) as f64 * (scale[1] as f64 - scale[0] as f64);
        let target = area * s;
        let aspect = libm::exp(l0 + u(2 * t + 1) as f64 * (l1 - l0));
        let cw = round_half_even(libm::sqrt(target * aspect));
        let ch = round_half_even(libm::sqrt(target / aspect));
        if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
            let (cw, ch) = (cw as u32, ch as u32);
            let pick = |slot: u64, n: u32| ((u(slot) as f64 * n as f64) as u32).min(n - 1);
            let top = pick(SLOT_CROP_TOP, h - ch + 1);
            let left = pick(SLOT_CROP_LEFT, w - cw + 1);
            return [top, left, ch, cw];
        }
    }
    // Fallback: centre crop at the nearest allowed ratio.
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio[0] as f64 {
        (round_half_even(w as f64 / ratio[0] as f64) as u32, w)
    } else if in_ratio > ratio[1] as f64 {
        (h, round_half_even(h as f64 * ratio[1] as f64) as u32)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    [(h - ch) / 2, (w - cw) / 2, ch, cw]
}

/// Draws the parameters of sample `sample` on an `h × w` source image.
pub fn sample(rng: &Philox, sample: u32, h: u32, w: u32, cfg: &AugConfig) -> Result<AugParams> {
    cfg.validate()?;
    if h == 0 || w == 0 {
        return Err(CoreError::Config {
            field: "image size",
            allowed: "at least 1 × 1",
        });
    }
    let base = (sample as u64) << 34;
    let u = |slot: u64| rng.uniform_at(base + slot);
    let [top, left, height, width] = crop_box(h, w, cfg.crop_scale, cfg.crop_ratio, &u);
    let mut p = AugParams {
        top,
        left,
        height,
        width,
        ..AugParams::identity(h, w)
    };
    p.flip = u(SLOT_FLIP) < cfg.flip_prob;
    p.jitter = u(SLOT_JITTER) < cfg.jitter_prob;
    if p.jitter {
        let mut order = [0u8, 1, 2, 3];
        for (t, i) in (1..4usize).rev().enumerate() {
            let j = rng.below_at(base + SLOT_JITTER_ORDER + t as u64, (i + 1) as u32) as usize;
            order.swap(i, j);
        }
        p.jitter_order = order;
        let factor = |slot: u64, x: f32| -> f32 {
            if x == 0.0 {
                1.0
            } else {
                let lo = (1.0 - x).max(0.0);
                lo + u(slot) * (1.0 + x - lo)
            }
        };
        p.brightness = factor(SLOT_JITTER_FACTORS, cfg.brightness);
        p.contrast = factor(SLOT_JITTER_FACTORS + 1, cfg.contrast);
        p.saturation = factor(SLOT_JITTER_FACTORS + 2, cfg.saturation);
        p.hue = if cfg.hue == 0.0 {
            0.0
        } else {
            -cfg.hue + u(SLOT_JITTER_FACTORS + 3) * 2.0 * cfg.hue
        };
    }
    p.gray = u(SLOT_GRAY) < cfg.gray_prob;
    if u(SLOT_BLUR) < cfg.blur_prob {
        let [s0, s1] = cfg.blur_sigma;
        p.blur_sigma = s0 + u(SLOT_BLUR_SIGMA) * (s1 - s0);
    }
    p.solarize = u(SLOT_SOLARIZE) < cfg.solarize_prob;
    p.antialias = cfg.antialias;
    Ok(p)
}
