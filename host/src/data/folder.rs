//! Image folders in the ImageNet layout: `DIR/train/CLASS/*.JPEG` and
//! `DIR/val/CLASS/*.JPEG` (JPEG or PNG; class index = position of the
//! class folder in the sorted list of `train/`'s folders, as torchvision's
//! `ImageFolder`).
//!
//! Images are decoded in parallel (rayon) with the `image` crate, resized
//! (bilinear, antialiased) so the shorter side is [`source_side`] and
//! centre-cropped to a square of that side: 256 for 224-pixel views, as
//! torchvision's `Resize(256)` + `CenterCrop`. Training views are random
//! resized crops of that square (made on the GPU); evaluation views its
//! centred `size` crop (`Resize(256)` + `CenterCrop(224)`).
//!
//! With a cache directory, the decoded split is written once to
//! `CACHE/folder-SPLIT-SIDE-HASH.bin` (HASH covers the file list, sizes and
//! modification times) and read back by later runs instead of decoding.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Dataset, EvalView, OpenOptions, Split};
use crate::error::{Error, Result};

/// Side of the stored square for views of `size`: `round(size · 256/224)`.
pub fn source_side(size: usize) -> usize {
    (size * 256 + 112) / 224
}

const MAGIC: &[u8; 8] = b"SCLFOLD1";

/// Loads `opts.split` of the folder tree at `dir`.
pub fn load(dir: &Path, opts: &OpenOptions) -> Result<Dataset> {
    let train_dir = dir.join("train");
    let (split_dir, class_dir) = match opts.split {
        Split::Train if train_dir.is_dir() => (train_dir.clone(), train_dir),
        // A tree without train/ and val/: DIR itself holds the classes.
        Split::Train => (dir.to_path_buf(), dir.to_path_buf()),
        Split::Test => {
            let val = dir.join("val");
            if !val.is_dir() {
                return Err(Error::file(
                    &val,
                    "missing: the test split of an image folder is DIR/val/CLASS/*",
                ));
            }
            let classes_from = if train_dir.is_dir() {
                train_dir
            } else {
                val.clone()
            };
            (val, classes_from)
        }
    };
    let classes = class_folders(&class_dir)?;
    let mut files: Vec<(PathBuf, u32)> = Vec::new();
    for sub in class_folders(&split_dir)? {
        let label = classes.iter().position(|c| *c == sub).ok_or_else(|| {
            Error::file(
                &split_dir.join(&sub),
                format!("class folder not in {}", class_dir.display()),
            )
        })?;
        let folder = split_dir.join(&sub);
        let imgs = images_in(&folder)?;
        if imgs.is_empty() {
            return Err(Error::file(
                &folder,
                "no JPEG or PNG images (an empty class folder)",
            ));
        }
        files.extend(imgs.into_iter().map(|p| (p, label as u32)));
    }
    let side = source_side(opts.size);
    let cache = opts
        .cache
        .as_ref()
        .map(|c| c.join(cache_name(&files, opts.split, side)));
    if let Some(path) = &cache {
        if path.exists() {
            match read_cache(path, files.len(), side) {
                Ok((images, labels)) => {
                    return Ok(dataset(images, labels, side, classes));
                }
                Err(e) => eprintln!("warning: ignoring the image cache: {e}; decoding again"),
            }
        }
    }
    let decoded: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(p, _)| decode(p, side))
        .collect::<Result<_>>()?;
    let images: Vec<u8> = decoded.concat();
    let labels: Vec<u32> = files.iter().map(|f| f.1).collect();
    if let Some(path) = &cache {
        write_cache(path, &images, &labels, side)?;
    }
    Ok(dataset(images, labels, side, classes))
}

fn dataset(images: Vec<u8>, labels: Vec<u32>, side: usize, classes: Vec<String>) -> Dataset {
    Dataset {
        images,
        labels,
        h: side,
        w: side,
        classes: classes.len(),
        class_names: classes,
        name: String::new(),
        eval_view: EvalView::CenterCrop,
    }
}

/// Sorted names of the sub-folders of `dir` (at least one).
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::file(dir, format!("cannot read: {e}")))?;
        if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    if out.is_empty() {
        return Err(Error::file(
            dir,
            "no class folders (expected DIR/CLASS/*.JPEG)",
        ));
    }
    out.sort();
    Ok(out)
}

/// Sorted JPEG and PNG files of `dir`.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for e in rd {
        let p = e
            .map_err(|e| Error::file(dir, format!("cannot read: {e}")))?
            .path();
        let ext = p
            .extension()
            .map(|x| x.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if p.is_file() && matches!(ext.as_str(), "jpg" | "jpeg" | "png") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// One image as `[3, side, side]` bytes.
fn decode(path: &Path, side: usize) -> Result<Vec<u8>> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?
        .with_guessed_format()
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| Error::file(path, format!("cannot decode the image: {e}")))?;
    let s = side as u32;
    let rgb = img
        .resize_to_fill(s, s, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let plane = side * side;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px.0[c];
        }
    }
    Ok(out)
}

fn cache_name(files: &[(PathBuf, u32)], split: Split, side: usize) -> String {
    let mut h = DefaultHasher::new();
    side.hash(&mut h);
    for (p, l) in files {
        p.hash(&mut h);
        l.hash(&mut h);
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(&mut h);
            if let Ok(t) = m.modified() {
                t.hash(&mut h);
            }
        }
    }
    format!("folder-{}-{side}-{:016x}.bin", split.name(), h.finish())
}

fn write_cache(path: &Path, images: &[u8], labels: &[u32], side: usize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create the cache folder: {e}")))?;
    }
    let mut bytes = Vec::with_capacity(24 + 4 * labels.len() + images.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(labels.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(side as u64).to_le_bytes());
    for l in labels {
        bytes.extend_from_slice(&l.to_le_bytes());
    }
    bytes.extend_from_slice(images);
    crate::nn::checkpoint::write_atomic(path, &bytes)
}

fn read_cache(path: &Path, n: usize, side: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("{e}")))?;
    let want = 24 + 4 * n + n * 3 * side * side;
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap()) as usize;
    if bytes.len() != want || &bytes[..8] != MAGIC || word(8) != n || word(16) != side {
        return Err(Error::file(
            path,
            format!(
                "{} bytes, not a cache of {n} images of {side}²",
                bytes.len()
            ),
        ));
    }
    let labels = bytes[24..24 + 4 * n]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Ok((bytes[24 + 4 * n..].to_vec(), labels))
}
