//! Datasets held in memory as 8-bit images `[n, 3, h, w]` with labels.
//!
//! A `data.dataset` value (or `--data`) names one:
//! - `builtin[:N]`: the embedded synthetic dataset ([`synth`]), generated
//!   in code, N training images (2048 by default) and N/2 test images;
//! - `cifar10:DIR`, `cifar100:DIR` (fine labels), `cifar100-coarse:DIR`:
//!   the binary versions of CIFAR ([`cifar`]);
//! - `folder:DIR`: an image-folder tree in the ImageNet layout,
//!   `DIR/train/CLASS/*` and `DIR/val/CLASS/*`, JPEG or PNG ([`folder`]).
//!
//! Every loader checks what it reads and names the file (and record) that
//! is wrong.

pub mod cifar;
pub mod folder;
pub mod synth;

use std::path::PathBuf;

use scorecl_core::augment::AugParams;
use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::error::{ConfigError, Error, Result};

/// Which half of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training images (CIFAR `data_batch_*`, folder `train/`).
    Train,
    /// The held-out images (CIFAR `test_batch`, folder `val/`).
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Images and labels held in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `[n, 3, h, w]`, 0–255, row-major (CIFAR's own layout).
    pub images: Vec<u8>,
    /// One label per image, each below `classes`.
    pub labels: Vec<u32>,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Number of classes.
    pub classes: usize,
    /// Class names (index = label).
    pub class_names: Vec<String>,
    /// Name (for logs and reports), e.g. `cifar10:DIR (train)`.
    pub name: String,
    /// How evaluation sees an image ([`Dataset::eval_params`]).
    pub eval_view: EvalView,
}

/// The evaluation view of a dataset kind, as torchvision users write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalView {
    /// The whole image resized to the view size, antialiased
    /// (`Resize((size, size))`): CIFAR and `builtin`, stored at their own
    /// size.
    Resize,
    /// The centred view-size crop (`CenterCrop(size)`): image folders,
    /// stored at `Resize(round(size·256/224))`, so together torchvision's
    /// `Resize(256)` + `CenterCrop(224)`.
    CenterCrop,
}

/// A parsed `data.dataset` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// `builtin[:N]`.
    Builtin {
        /// Training images.
        n: usize,
    },
    /// `cifar10:DIR`.
    Cifar10(PathBuf),
    /// `cifar100:DIR` (fine labels) or `cifar100-coarse:DIR`.
    Cifar100 {
        /// The directory with `train.bin` and `test.bin`.
        dir: PathBuf,
        /// The 20 coarse labels instead of the 100 fine ones.
        coarse: bool,
    },
    /// `folder:DIR`.
    Folder(PathBuf),
}

/// Default size of `builtin`.
pub const BUILTIN_DEFAULT: usize = 2048;

impl DataSpec {
    /// Parses `spec`; errors name `data.dataset`.
    pub fn parse(spec: &str) -> std::result::Result<DataSpec, ConfigError> {
        let bad = |why: &str| {
            ConfigError::new(
                "data.dataset",
                format!(
                    "`{spec}`: {why}; expected builtin[:N], cifar10:DIR, cifar100:DIR, \
                     cifar100-coarse:DIR or folder:DIR"
                ),
            )
        };
        if spec == "builtin" {
            return Ok(DataSpec::Builtin { n: BUILTIN_DEFAULT });
        }
        let (kind, rest) = spec.split_once(':').ok_or_else(|| bad("no kind"))?;
        if rest.is_empty() {
            return Err(bad("the path (or count) after the colon is empty"));
        }
        let dir = PathBuf::from(rest);
        Ok(match kind {
            "builtin" => DataSpec::Builtin {
                n: rest
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("builtin:N needs a count N ≥ 1"))?,
            },
            "cifar10" => DataSpec::Cifar10(dir),
            "cifar100" => DataSpec::Cifar100 { dir, coarse: false },
            "cifar100-coarse" => DataSpec::Cifar100 { dir, coarse: true },
            "folder" | "imagenet100" => DataSpec::Folder(dir),
            _ => return Err(bad(&format!("unknown kind `{kind}`"))),
        })
    }
}

/// How to open a dataset.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Which split.
    pub split: Split,
    /// Side of the views the model sees (`data.size`); image folders are
    /// stored at `folder::source_side(size)`.
    pub size: usize,
    /// Directory of the decoded-image cache for image folders (none: no
    /// cache).
    pub cache: Option<PathBuf>,
}

impl OpenOptions {
    /// `split` at `size`, no cache.
    pub fn new(split: Split, size: usize) -> Self {
        OpenOptions {
            split,
            size,
            cache: None,
        }
    }
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

    /// Values per image.
    pub fn image_len(&self) -> usize {
        3 * self.h * self.w
    }

    /// Copies images `idx` into `out` (len · 3hw) as floats in [0, 1].
    pub fn gather(&self, idx: &[u32], out: &mut Vec<f32>) {
        out.clear();
        let k = self.image_len();
        for &i in idx {
            let src = &self.images[i as usize * k..(i as usize + 1) * k];
            out.extend(src.iter().map(|&v| v as f32 * (1.0 / 255.0)));
        }
    }

    /// The training split of `spec` at view size `size` (no cache).
    pub fn open(spec: &str, size: usize) -> Result<Dataset> {
        Self::open_with(spec, &OpenOptions::new(Split::Train, size))
    }

    /// The dataset `spec` names, as `opts` asks.
    pub fn open_with(spec: &str, opts: &OpenOptions) -> Result<Dataset> {
        if opts.size == 0 {
            return Err(Error::config("data.size", "0: must be at least 1"));
        }
        let spec_parsed = DataSpec::parse(spec)?;
        if let DataSpec::Folder(_) = &spec_parsed {
            // Decoded at folder::source_side(size): one image must fit.
            let side = folder::source_side(opts.size) as u128;
            let need = 3 * side * side;
            let mem = crate::native::host_memory() as u128;
            if mem > 0 && need > mem {
                return Err(Error::config(
                    "data.size",
                    format!(
                        "{}: one image stored at {side}×{side} needs {need} bytes of host \
                         memory, more than this machine has ({mem} bytes)",
                        opts.size
                    ),
                ));
            }
        }
        if let DataSpec::Builtin { n } = &spec_parsed {
            // Generated in memory: checked before allocating.
            let need = *n as u128 * 3 * (opts.size as u128).pow(2);
            let mem = crate::native::host_memory() as u128;
            if mem > 0 && need > mem {
                return Err(Error::config(
                    "data.size",
                    format!(
                        "`{spec}` at {0}×{0} needs {need} bytes of host memory, more than this \
                         machine has ({mem} bytes)",
                        opts.size
                    ),
                ));
            }
        }
        let mut d = match spec_parsed {
            DataSpec::Builtin { n } => synth::generate(n, opts.split, opts.size),
            DataSpec::Cifar10(dir) => cifar::load_cifar10(&dir, opts.split)?,
            DataSpec::Cifar100 { dir, coarse } => cifar::load_cifar100(&dir, opts.split, coarse)?,
            DataSpec::Folder(dir) => folder::load(&dir, opts)?,
        };
        d.name = format!("{spec} ({})", opts.split.name());
        Ok(d)
    }

    /// The order of epoch `epoch`: a permutation of 0..len from Philox.
    pub fn order(&self, seed: u64, epoch: u64) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.len() as u32).collect();
        Philox::new(seed, stream_id(Purpose::DataOrder, epoch)).shuffle(0, &mut idx);
        idx
    }

    /// The evaluation view of a `size` × `size` model input, the one place
    /// every evaluation (k-NN monitor, `eval`, linear probe, `probe`,
    /// `compare`) takes it from: per [`EvalView`], the whole image resized
    /// (antialiased when it shrinks), or the centred `size` × `size` crop
    /// where the image is at least that large (else the whole image).
    pub fn eval_params(&self, size: usize) -> AugParams {
        let (h, w) = (self.h as u32, self.w as u32);
        let s = size as u32;
        if self.eval_view == EvalView::CenterCrop && h >= s && w >= s {
            AugParams {
                top: (h - s) / 2,
                left: (w - s) / 2,
                height: s,
                width: s,
                ..AugParams::identity(h, w)
            }
        } else {
            AugParams::identity(h, w)
        }
    }
}
