//! CIFAR-10 and CIFAR-100 in their binary versions
//! (<https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin`
//! (train) and `test_batch.bin`, records of 1 label byte + 3072 pixel bytes
//! (red, green, blue planes of 32 × 32, row-major). CIFAR-100
//! (`cifar-100-binary/`): `train.bin` and `test.bin`, records of a coarse
//! label byte, a fine label byte and the same 3072 pixel bytes. Class names
//! come from `batches.meta.txt` / `fine_label_names.txt` /
//! `coarse_label_names.txt` when present.

use std::path::Path;

use super::{Dataset, EvalView, Split};
use crate::error::{Error, Result};

/// Pixel bytes per record.
pub const PIXELS: usize = 3 * 32 * 32;

/// The CIFAR-10 split in `dir`.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<Dataset> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let mut d = empty(10);
    for f in &files {
        read_records(&dir.join(f), 1, 0, 10, &mut d)?;
    }
    d.class_names = names(&dir.join("batches.meta.txt"), 10);
    Ok(d)
}

/// The CIFAR-100 split in `dir`, fine (100) or coarse (20) labels.
pub fn load_cifar100(dir: &Path, split: Split, coarse: bool) -> Result<Dataset> {
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let (classes, offset, names_file) = if coarse {
        (20, 0, "coarse_label_names.txt")
    } else {
        (100, 1, "fine_label_names.txt")
    };
    let mut d = empty(classes);
    read_records(&dir.join(file), 2, offset, classes, &mut d)?;
    d.class_names = names(&dir.join(names_file), classes);
    Ok(d)
}

fn empty(classes: usize) -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        h: 32,
        w: 32,
        classes,
        class_names: Vec::new(),
        name: String::new(),
        eval_view: EvalView::Resize,
    }
}

/// Appends the records of `path`: `label_bytes` label bytes (the label at
/// `label_at`) then [`PIXELS`] pixel bytes each.
fn read_records(
    path: &Path,
    label_bytes: usize,
    label_at: usize,
    classes: usize,
    d: &mut Dataset,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::file(
            path,
            format!(
                "cannot read ({e}); expected the binary version of CIFAR (cifar-10-batches-bin \
                 or cifar-100-binary)"
            ),
        )
    })?;
    let rec = label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(Error::file(path, "empty file: no records"));
    }
    if bytes.len() % rec != 0 {
        return Err(Error::file(
            path,
            format!(
                "truncated or wrongly sized: {} bytes is not a whole number of {rec}-byte \
                 records (record {} is incomplete)",
                bytes.len(),
                bytes.len() / rec
            ),
        ));
    }
    d.images.reserve(bytes.len() / rec * PIXELS);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[label_at] as usize;
        if label >= classes {
            return Err(Error::file(
                path,
                format!("record {i}: label {label} out of range ({classes} classes)"),
            ));
        }
        d.labels.push(label as u32);
        d.images.extend_from_slice(&r[label_bytes..]);
    }
    Ok(())
}

/// Class names, one per line, or `class N` when the file is absent or
/// does not hold `classes` names.
fn names(path: &Path, classes: usize) -> Vec<String> {
    let read: Vec<String> = std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if read.len() == classes {
        read
    } else {
        (0..classes).map(|c| format!("class {c}")).collect()
    }
}
