//! Data augmentation on the GPU (`shaders/wgsl/augment.wgsl`) from
//! scorecl-core's per-sample [`AugParams`]. CPU twin: [`cpu`] (the same
//! maths, step by step); tests: `host/tests/augment.rs`.
//!
//! Resampling is torchvision's bilinear `resized_crop`, antialiased when
//! the crop is downscaled (`antialias=True`, PyTorch's
//! `_upsample_bilinear2d_aa`) unless a sample's `antialias` is off
//! (`augment.antialias = false`: plain bilinear, `antialias=False`).
//! Difference from torchvision, by design: the blur kernel is truncated at
//! 3σ (radius capped by `max_radius`) instead of a fixed kernel size.

use bytemuck::Zeroable;
use scorecl_core::augment::AugParams;
use scorecl_shaders::AUGMENT;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::reduce::{reduce, Reduction};
use crate::step::{grid, Step};
use crate::tensor::{DType, Tensor};

/// Per-channel normalisation of the encoder's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Channel means (in [0, 1] pixel scale).
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
}

impl Normalize {
    /// CIFAR-10/100 statistics as solo-learn uses them.
    pub const CIFAR: Normalize = Normalize {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.247, 0.243, 0.261],
    };
    /// ImageNet statistics (torchvision).
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// Words per sample in the parameter buffer.
pub const WORDS: usize = 16;

/// Packs one sample's parameters as the kernel reads them.
pub fn pack(p: &AugParams) -> [u32; WORDS] {
    let f = f32::to_bits;
    let order = p
        .jitter_order
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, op)| acc | (*op as u32) << (8 * i));
    [
        f(p.top as f32),
        f(p.left as f32),
        f(p.height as f32),
        f(p.width as f32),
        p.flip as u32,
        p.jitter as u32,
        order,
        f(p.brightness),
        f(p.contrast),
        f(p.saturation),
        f(p.hue),
        p.gray as u32,
        f(p.blur_sigma),
        p.solarize as u32,
        p.antialias as u32,
        0,
    ]
}

kernel_params! {
    struct Params {
        n: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        max_radius: u32,
        n_src: u32,
        _p0: u32,
        mean: [f32; 4],
        stdev: [f32; 4],
        threshold: f32,
        _p1: [u32; 3],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Buffers of one augmentation shape: `n` views of oh × ow from `n_src`
/// sources of h × w (view i from source i mod n_src), allocated once.
pub struct Augmenter {
    n: usize,
    n_src: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    params: Tensor,
    gray: Tensor,
    cmean: Tensor,
    tmp: Tensor,
    tmp2: Tensor,
    packed: Vec<u32>,
    /// Largest blur radius in output pixels (default 8).
    pub max_radius: u32,
    /// Solarisation threshold (default 0.5).
    pub threshold: f32,
}

impl Augmenter {
    /// Buffers for `n` sources of h × w and views of oh × ow.
    pub fn new(gpu: &Gpu, n: usize, hw: (usize, usize), ohw: (usize, usize)) -> Result<Self> {
        Self::with_sources(gpu, n, n, hw, ohw)
    }

    /// Buffers for `n` views of oh × ow drawn from `n_src` sources of h × w:
    /// view i augments source i mod n_src (two views of a batch of B
    /// images: n = 2B, n_src = B).
    pub fn with_sources(
        gpu: &Gpu,
        n: usize,
        n_src: usize,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
    ) -> Result<Self> {
        if n == 0 || n_src == 0 || h == 0 || w == 0 || oh == 0 || ow == 0 {
            return Err(Error::shape("augment", "sizes must be at least 1"));
        }
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        Ok(Augmenter {
            n,
            n_src,
            h,
            w,
            oh,
            ow,
            params: gpu.tensor(&[n * WORDS], DType::U32)?,
            gray: t(n * oh * ow)?,
            cmean: t(n)?,
            tmp: t(n * 3 * oh * ow)?,
            tmp2: t(n * 3 * oh * ow)?,
            packed: Vec::with_capacity(n * WORDS),
            max_radius: 8,
            threshold: 0.5,
        })
    }

    /// Records the augmentation of `src` ([n, 3, h, w] in [0, 1]) with one
    /// parameter set per sample: `out01` gets the views in [0, 1] (for the
    /// score network), `outn` the normalised views (for the encoder).
    pub fn run(
        &mut self,
        step: &mut Step,
        src: &Tensor,
        params: &[AugParams],
        norm: &Normalize,
        out01: &Tensor,
        outn: &Tensor,
    ) -> Result<()> {
        let (n, ohw) = (self.n, self.oh * self.ow);
        if params.len() != n {
            return Err(Error::shape(
                "augment",
                format!("{} parameter sets for {n} images", params.len()),
            ));
        }
        src.expect_len("augment source", self.n_src * 3 * self.h * self.w)?;
        out01.expect_len("augment view", n * 3 * ohw)?;
        outn.expect_len("augment normalised view", n * 3 * ohw)?;
        for (i, p) in params.iter().enumerate() {
            if p.top as usize + p.height as usize > self.h
                || p.left as usize + p.width as usize > self.w
                || p.height == 0
                || p.width == 0
            {
                return Err(Error::shape(
                    "augment",
                    format!(
                        "crop of sample {i} {p:?} outside the {}×{} image",
                        self.h, self.w
                    ),
                ));
            }
        }
        self.packed.clear();
        for p in params {
            self.packed.extend_from_slice(&pack(p));
        }
        step.gpu()
            .write(&self.params, bytemuck::cast_slice(&self.packed))?;
        let pr = Params {
            n: n as u32,
            h: self.h as u32,
            w: self.w as u32,
            oh: self.oh as u32,
            ow: self.ow as u32,
            max_radius: self.max_radius,
            n_src: self.n_src as u32,
            mean: [norm.mean[0], norm.mean[1], norm.mean[2], 0.0],
            stdev: [norm.std[0], norm.std[1], norm.std[2], 1.0],
            threshold: self.threshold,
            ..Zeroable::zeroed()
        };
        let gpu = step.gpu();
        let k = |entry: &'static str| gpu.kernel(&AUGMENT, entry, &[], &[]);
        step.dispatch(
            &k("aug_pre")?,
            &pr,
            crate::bind![src, prm = &self.params, gray_buf = &self.gray],
            grid(n * ohw, 256),
        )?;
        reduce(
            step,
            &self.gray,
            [n, ohw, 1],
            Reduction::Mean,
            1.0,
            &self.cmean,
        )?;
        step.dispatch(
            &k("aug_main")?,
            &pr,
            crate::bind![
                src,
                prm = &self.params,
                cmean = &self.cmean,
                tmp = &self.tmp
            ],
            grid(n * ohw, 256),
        )?;
        step.dispatch(
            &k("aug_blur_h")?,
            &pr,
            crate::bind![prm = &self.params, tmp = &self.tmp2, tmp_in = &self.tmp],
            grid(n * 3 * ohw, 256),
        )?;
        step.dispatch(
            &k("aug_blur_v")?,
            &pr,
            crate::bind![prm = &self.params, tmp_in = &self.tmp2, out01, outn],
            grid(n * 3 * ohw, 256),
        )
    }
}

/// The pixel maths the CPU twin, the native device's kernels and the
/// generated dataset share: torchvision's colour-space conversions and the
/// crop's resampling taps (the kernel's `axis` and `sample_rgb`), f32 in the
/// kernel's order.
pub mod pixel {
    /// torchvision's `_rgb2hsv`.
    pub fn rgb2hsv(c: [f32; 3]) -> [f32; 3] {
        let maxc = c[0].max(c[1]).max(c[2]);
        let minc = c[0].min(c[1]).min(c[2]);
        let eqc = maxc == minc;
        let cr = maxc - minc;
        let s = cr / if eqc { 1.0 } else { maxc };
        let d = if eqc { 1.0 } else { cr };
        let (rc, gc, bc) = ((maxc - c[0]) / d, (maxc - c[1]) / d, (maxc - c[2]) / d);
        let h = if maxc == c[0] {
            bc - gc
        } else if maxc == c[1] {
            2.0 + rc - bc
        } else {
            4.0 + gc - rc
        };
        let h = (h / 6.0 + 1.0).fract();
        [h, s, maxc]
    }

    /// torchvision's `_hsv2rgb`.
    pub fn hsv2rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
        let i6 = (h * 6.0).floor();
        let f = h * 6.0 - i6;
        let p = (v * (1.0 - s)).clamp(0.0, 1.0);
        let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
        let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
        match (i6 as i32).rem_euclid(6) {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        }
    }

    /// The source taps of output index `o` along one axis, for a crop of
    /// `crop` pixels resampled to `out` (the kernel's `axis`): plain
    /// bilinear (align_corners=False, two taps or one at the last pixel),
    /// or, antialiased, PyTorch's `_upsample_bilinear2d_aa` (the triangle
    /// filter stretched by the scale when downscaling, weights normalised).
    #[derive(Debug, Clone, Copy)]
    pub struct Axis {
        /// First tap (in the crop).
        pub start: usize,
        /// Number of taps.
        pub len: usize,
        /// Taps past `last` (relative to `start`) read tap `last`.
        pub last: usize,
        at: f32,
        inv: f32,
        total: f32,
        aa: bool,
    }

    fn tri(x: f32) -> f32 {
        (1.0 - x.abs()).max(0.0)
    }

    /// The taps of output index `o` of `out` from a crop of `crop` pixels.
    pub fn axis(crop: f32, out: usize, o: usize, aa: bool) -> Axis {
        let n = crop as usize;
        // Upscaled, the antialiased weights are the bilinear ones (edges
        // included): the plain taps, equal up to rounding.
        if !aa || crop <= out as f32 {
            let s = ((o as f32 + 0.5) * crop / out as f32 - 0.5).max(0.0);
            let start = (s as usize).min(n - 1);
            // Two taps, both on the last pixel at the edge (PyTorch's
            // h1p = 0: the same rounding as PyTorch's bilinear).
            return Axis {
                start,
                len: 2,
                last: n - 1 - start,
                at: s - start as f32,
                inv: 1.0,
                total: 1.0,
                aa: false,
            };
        }
        let scale = crop / out as f32;
        let (support, inv) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0, 1.0)
        };
        let at = scale * (o as f32 + 0.5);
        let start = ((at - support + 0.5) as i32).max(0) as usize;
        let end = (((at + support + 0.5) as i32).max(0) as usize).min(n);
        let len = end - start;
        let mut total = 0.0f32;
        for j in 0..len {
            total += tri(((j + start) as f32 - at + 0.5) * inv);
        }
        Axis {
            start,
            len,
            last: len.saturating_sub(1),
            at,
            inv,
            total,
            aa,
        }
    }

    impl Axis {
        /// Weight of tap `j`.
        pub fn tap(&self, j: usize) -> f32 {
            if !self.aa {
                return if j == 0 { 1.0 - self.at } else { self.at };
            }
            if self.total == 0.0 {
                return 0.0;
            }
            tri(((j + self.start) as f32 - self.at + 0.5) * self.inv) / self.total
        }
    }

    /// Crop, flip and resampling of output pixel (oy, ox) of the view
    /// `p` of `at(channel, row, column)` (the kernel's `sample_rgb`).
    pub fn resample(
        at: impl Fn(usize, usize, usize) -> f32,
        (oh, ow): (usize, usize),
        [top, left, ch, cw]: [f32; 4],
        flip: bool,
        aa: bool,
        oy: usize,
        ox: usize,
    ) -> [f32; 3] {
        let x = if flip { ow - 1 - ox } else { ox };
        let (ay, ax) = (axis(ch, oh, oy, aa), axis(cw, ow, x, aa));
        let (top, left) = (top as usize + ay.start, left as usize + ax.start);
        let mut out = [0.0f32; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for i in 0..ay.len {
                let mut row = 0.0f32;
                for j in 0..ax.len {
                    row += ax.tap(j) * at(k, top + i.min(ay.last), left + j.min(ax.last));
                }
                acc += ay.tap(i) * row;
            }
            *o = acc;
        }
        out
    }
}

/// CPU twin: the same maths in the same order (f32). The reference of
/// `host/tests/augment.rs`, built with the `reference` feature.
#[cfg(feature = "reference")]
pub mod cpu {
    pub use super::pixel::{axis, hsv2rgb, resample, rgb2hsv, Axis};
    use super::Normalize;
    use scorecl_core::augment::AugParams;

    fn gray(c: [f32; 3]) -> f32 {
        0.2989 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    }

    fn clamp3(c: [f32; 3]) -> [f32; 3] {
        c.map(|v| v.clamp(0.0, 1.0))
    }

    fn sample(
        src: &[f32],
        (h, w): (usize, usize),
        ohw: (usize, usize),
        p: &AugParams,
        oy: usize,
        ox: usize,
    ) -> [f32; 3] {
        let crop = [p.top as f32, p.left as f32, p.height as f32, p.width as f32];
        resample(
            |k, r, c| src[(k * h + r) * w + c],
            ohw,
            crop,
            p.flip,
            p.antialias,
            oy,
            ox,
        )
    }

    fn jitter(p: &AugParams, mut c: [f32; 3], until_contrast: bool, mean: f32) -> [f32; 3] {
        if !p.jitter {
            return c;
        }
        for &op in &p.jitter_order {
            c = match op {
                0 => clamp3(c.map(|v| v * p.brightness)),
                1 => {
                    if until_contrast {
                        return c;
                    }
                    clamp3(c.map(|v| p.contrast * v + (1.0 - p.contrast) * mean))
                }
                2 => {
                    let g = gray(c);
                    clamp3(c.map(|v| p.saturation * v + (1.0 - p.saturation) * g))
                }
                _ => {
                    let mut hsv = rgb2hsv(c);
                    hsv[0] = (hsv[0] + p.hue).rem_euclid(1.0);
                    hsv2rgb(hsv)
                }
            };
        }
        c
    }

    fn reflect(i: isize, len: usize) -> usize {
        let l = len as isize;
        if l == 1 {
            return 0;
        }
        let period = 2 * (l - 1);
        let mut j = i.rem_euclid(period);
        if j >= l {
            j = period - j;
        }
        j as usize
    }

    /// One view of one image `src` ([3, h, w]); returns (in [0, 1],
    /// normalised, and the values before solarisation).
    #[allow(clippy::type_complexity)]
    pub fn augment(
        src: &[f32],
        hw: (usize, usize),
        (oh, ow): (usize, usize),
        p: &AugParams,
        norm: &Normalize,
        max_radius: u32,
        threshold: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let ohw = oh * ow;
        let mut mean = 0.0f64;
        for i in 0..ohw {
            mean += gray(jitter(
                p,
                sample(src, hw, (oh, ow), p, i / ow, i % ow),
                true,
                0.0,
            )) as f64;
        }
        let mean = (mean / ohw as f64) as f32;
        let mut img = vec![0.0f32; 3 * ohw];
        for i in 0..ohw {
            let mut c = jitter(p, sample(src, hw, (oh, ow), p, i / ow, i % ow), false, mean);
            if p.gray {
                c = [gray(c); 3];
            }
            for k in 0..3 {
                img[k * ohw + i] = c[k];
            }
        }
        let blur = |img: &[f32], horizontal: bool| -> Vec<f32> {
            if p.blur_sigma <= 0.0 {
                return img.to_vec();
            }
            let s = p.blur_sigma;
            let radius = ((3.0 * s).ceil() as u32).min(max_radius) as isize;
            let mut out = vec![0.0f32; img.len()];
            for k in 0..3 {
                for y in 0..oh {
                    for x in 0..ow {
                        let (mut acc, mut nrm) = (0.0f32, 0.0f32);
                        for d in -radius..=radius {
                            let wgt = (-0.5 * (d as f32 / s) * (d as f32 / s)).exp();
                            let v = if horizontal {
                                img[k * ohw + y * ow + reflect(x as isize + d, ow)]
                            } else {
                                img[k * ohw + reflect(y as isize + d, oh) * ow + x]
                            };
                            acc += wgt * v;
                            nrm += wgt;
                        }
                        out[k * ohw + y * ow + x] = acc / nrm;
                    }
                }
            }
            out
        };
        let pre = blur(&blur(&img, true), false);
        let out01: Vec<f32> = pre
            .iter()
            .map(|&v| {
                if p.solarize && v >= threshold {
                    1.0 - v
                } else {
                    v
                }
            })
            .collect();
        let outn = out01
            .iter()
            .enumerate()
            .map(|(i, v)| (v - norm.mean[i / ohw]) / norm.std[i / ohw])
            .collect();
        (out01, outn, pre)
    }
}

/// Native CPU twins of `aug_pre`, `aug_main`, `aug_blur_h` and
/// `aug_blur_v`, reading the packed per-sample words as the kernels do.
pub(crate) mod native {
    use super::{pixel, Params, WORDS};
    use crate::error::Result;
    use crate::native::{need, rows_mut, Invocation, KernelFn};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "aug_pre" => pre,
            "aug_main" => main,
            "aug_blur_h" => |inv| blur(inv, true),
            "aug_blur_v" => |inv| blur(inv, false),
            _ => return None,
        })
    }

    struct Sample<'a>(&'a [u32]);

    impl Sample<'_> {
        fn f(&self, k: usize) -> f32 {
            f32::from_bits(self.0[k])
        }
        fn u(&self, k: usize) -> u32 {
            self.0[k]
        }
    }

    fn gray(c: [f32; 3]) -> f32 {
        0.2989 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    }

    fn clamp3(c: [f32; 3]) -> [f32; 3] {
        c.map(|v| v.clamp(0.0, 1.0))
    }

    fn fract(x: f32) -> f32 {
        x - x.floor()
    }

    /// Crop, flip and resampling of output pixel (oy, ox) of view `n` (the
    /// kernel's `sample_rgb`).
    fn sample_rgb(p: &Params, src: &[f32], s: &Sample, n: usize, oy: usize, ox: usize) -> [f32; 3] {
        let (h, w) = (p.h as usize, p.w as usize);
        let sn = n % p.n_src.max(1) as usize;
        pixel::resample(
            |k, r, c| src[((sn * 3 + k) * h + r) * w + c],
            (p.oh as usize, p.ow as usize),
            [s.f(0), s.f(1), s.f(2), s.f(3)],
            s.u(4) != 0,
            s.u(14) != 0,
            oy,
            ox,
        )
    }

    /// The jitter ops in the sampled order; stops before contrast when
    /// `until_contrast`.
    fn jitter(s: &Sample, mut c: [f32; 3], until_contrast: bool, mean: f32) -> [f32; 3] {
        if s.u(5) == 0 {
            return c;
        }
        let order = s.u(6);
        for i in 0..4 {
            match (order >> (8 * i)) & 0xFF {
                0 => c = clamp3(c.map(|v| v * s.f(7))),
                1 => {
                    if until_contrast {
                        return c;
                    }
                    let k = s.f(8);
                    c = clamp3(c.map(|v| k * v + (1.0 - k) * mean));
                }
                2 => {
                    let k = s.f(9);
                    let g = gray(c);
                    c = clamp3(c.map(|v| k * v + (1.0 - k) * g));
                }
                _ => {
                    let mut hsv = pixel::rgb2hsv(c);
                    hsv[0] = fract(hsv[0] + s.f(10));
                    c = pixel::hsv2rgb(hsv);
                }
            }
        }
        c
    }

    fn checks(inv: &Invocation, p: &Params, src: &[f32], prm: &[u32]) -> Result<()> {
        let n = p.n as usize;
        need(
            inv,
            &[
                (
                    "src",
                    src.len(),
                    p.n_src as usize * 3 * (p.h * p.w) as usize,
                ),
                ("params", prm.len(), n * WORDS),
            ],
        )?;
        for i in 0..n {
            let s = Sample(&prm[i * WORDS..(i + 1) * WORDS]);
            let (top, left, ch, cw) = (s.f(0), s.f(1), s.f(2), s.f(3));
            if !(ch >= 1.0 && cw >= 1.0 && top >= 0.0 && left >= 0.0)
                || top as u32 + ch as u32 > p.h
                || left as u32 + cw as u32 > p.w
            {
                return Err(inv.short("params (crop inside the image)", 0, 1));
            }
        }
        Ok(())
    }

    fn pre(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (src, prm, gray_buf) = (inv.f32(0)?, inv.u32(1)?, inv.f32_mut(2)?);
        let (n, ohw) = (p.n as usize, (p.oh * p.ow) as usize);
        checks(inv, &p, src, prm)?;
        need(inv, &[("gray", gray_buf.len(), n * ohw)])?;
        let ow = p.ow as usize;
        rows_mut(gray_buf, n, ohw, ohw * 8, |i, out| {
            let s = Sample(&prm[i * WORDS..(i + 1) * WORDS]);
            for (q, o) in out.iter_mut().enumerate() {
                let c = jitter(&s, sample_rgb(&p, src, &s, i, q / ow, q % ow), true, 0.0);
                *o = gray(c);
            }
        });
        Ok(())
    }

    fn main(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (src, prm, cmean, tmp) = (inv.f32(0)?, inv.u32(1)?, inv.f32(2)?, inv.f32_mut(3)?);
        let (n, ohw) = (p.n as usize, (p.oh * p.ow) as usize);
        checks(inv, &p, src, prm)?;
        need(
            inv,
            &[("cmean", cmean.len(), n), ("tmp", tmp.len(), n * 3 * ohw)],
        )?;
        let ow = p.ow as usize;
        rows_mut(tmp, n, 3 * ohw, 3 * ohw * 8, |i, out| {
            let s = Sample(&prm[i * WORDS..(i + 1) * WORDS]);
            for q in 0..ohw {
                let mut c = jitter(
                    &s,
                    sample_rgb(&p, src, &s, i, q / ow, q % ow),
                    false,
                    cmean[i],
                );
                if s.u(11) != 0 {
                    c = [gray(c); 3];
                }
                for k in 0..3 {
                    out[k * ohw + q] = c[k];
                }
            }
        });
        Ok(())
    }

    /// torchvision's reflect padding.
    fn reflect(i: i32, len: usize) -> usize {
        let l = len as i32;
        if l == 1 {
            return 0;
        }
        let period = 2 * (l - 1);
        let mut j = ((i % period) + period) % period;
        if j >= l {
            j = period - j;
        }
        j as usize
    }

    fn blur(inv: &Invocation, horizontal: bool) -> Result<()> {
        let p: Params = inv.params()?;
        let prm = inv.u32(0)?;
        let (oh, ow, n) = (p.oh as usize, p.ow as usize, p.n as usize);
        let ohw = oh * ow;
        let (tmp_in, out) = if horizontal {
            (inv.f32(2)?, inv.f32_mut(1)?)
        } else {
            (inv.f32(1)?, inv.f32_mut(2)?)
        };
        need(
            inv,
            &[
                ("params", prm.len(), n * WORDS),
                ("tmp_in", tmp_in.len(), n * 3 * ohw),
                ("out", out.len(), n * 3 * ohw),
            ],
        )?;
        let outn = if horizontal {
            None
        } else {
            let o = inv.f32_mut(3)?;
            need(inv, &[("outn", o.len(), n * 3 * ohw)])?;
            Some(crate::native::SharedMut::new(o))
        };
        rows_mut(out, n * 3, ohw, ohw * 16, |plane, o| {
            let (i, k) = (plane / 3, plane % 3);
            let s = Sample(&prm[i * WORDS..(i + 1) * WORDS]);
            let sigma = s.f(12);
            let src = &tmp_in[plane * ohw..(plane + 1) * ohw];
            let radius = if sigma > 0.0 {
                ((3.0 * sigma).ceil() as u32).min(p.max_radius) as i32
            } else {
                0
            };
            // The taps' weights once per plane (the kernel computes them
            // per pixel; the same expression, so the same bits).
            let taps: Vec<f32> = if sigma > 0.0 {
                (-radius..=radius)
                    .map(|d| (-0.5 * (d as f32 / sigma) * (d as f32 / sigma)).exp())
                    .collect()
            } else {
                Vec::new()
            };
            for (q, v) in o.iter_mut().enumerate() {
                let (y, x) = (q / ow, q % ow);
                let mut b = if sigma <= 0.0 {
                    src[q]
                } else {
                    let mut acc = 0.0f32;
                    let mut norm = 0.0f32;
                    for d in -radius..=radius {
                        let wgt = taps[(d + radius) as usize];
                        let sv = if horizontal {
                            src[y * ow + reflect(x as i32 + d, ow)]
                        } else {
                            src[reflect(y as i32 + d, oh) * ow + x]
                        };
                        acc += wgt * sv;
                        norm += wgt;
                    }
                    acc / norm
                };
                if let Some(on) = &outn {
                    if s.u(13) != 0 && b >= p.threshold {
                        b = 1.0 - b;
                    }
                    on.set(plane * ohw + q, (b - p.mean[k]) / p.stdev[k]);
                }
                *v = b;
            }
        });
        Ok(())
    }
}
