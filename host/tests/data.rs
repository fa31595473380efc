//! Dataset loaders on small files written here in the real formats: CIFAR
//! binary records, image folders of PNG and JPEG, the decoded-image cache,
//! and the embedded dataset. Every kind of bad input gives an error that
//! names the file (and record).

use std::path::Path;

use scorecl_host::core::knn::{self, KnnConfig, KnnSet};
use scorecl_host::data::{synth, DataSpec, Dataset, EvalView, OpenOptions, Split};
use scorecl_host::{ConfigError, Error};

/// A CIFAR record: label bytes then 3072 pixels (value = seed + index).
fn record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..3072u32).map(|i| seed.wrapping_add(i as u8)));
    r
}

fn write_cifar10(dir: &Path) {
    for b in 1..=5u8 {
        let mut bytes = Vec::new();
        for j in 0..3u8 {
            bytes.extend(record(&[(b + j) % 10], 10 * b + j));
        }
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let mut test = record(&[9], 200);
    test.extend(record(&[0], 201));
    std::fs::write(dir.join("test_batch.bin"), test).unwrap();
}

fn err(spec: &str, split: Split) -> String {
    Dataset::open_with(spec, &OpenOptions::new(split, 32))
        .unwrap_err()
        .to_string()
}

#[test]
fn cifar10_reads_records_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path());
    std::fs::write(
        tmp.path().join("batches.meta.txt"),
        "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n",
    )
    .unwrap();
    let spec = format!("cifar10:{}", tmp.path().display());
    let d = Dataset::open_with(&spec, &OpenOptions::new(Split::Train, 32)).unwrap();
    assert_eq!((d.len(), d.h, d.w, d.classes), (15, 32, 32, 10));
    assert_eq!(d.labels[..4], [1, 2, 3, 2]);
    // Record 4 is the second record of data_batch_2: pixel i = 21 + i.
    let img = &d.images[4 * 3072..5 * 3072];
    assert_eq!((img[0], img[1], img[1024]), (21, 22, 21u8.wrapping_add(0)));
    assert_eq!(d.class_names[9], "j");
    let mut f = Vec::new();
    d.gather(&[4], &mut f);
    assert_eq!(f.len(), 3072);
    assert!((f[1] - 22.0 / 255.0).abs() < 1e-7);
    let t = Dataset::open_with(&spec, &OpenOptions::new(Split::Test, 32)).unwrap();
    assert_eq!((t.len(), t.labels.clone()), (2, vec![9, 0]));
    assert!(t.name.contains("test"));
}

#[test]
fn cifar_and_builtin_evaluate_the_whole_image_resized_antialiased() {
    // CIFAR is stored at 32×32: a 16-px eval view is the whole image
    // resized (torchvision's `Resize(16)`), not its centre quarter.
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path());
    let d = Dataset::open(&format!("cifar10:{}", tmp.path().display()), 16).unwrap();
    assert_eq!(d.eval_view, EvalView::Resize);
    for size in [8, 16, 32, 40] {
        let p = d.eval_params(size);
        assert_eq!((p.top, p.left, p.height, p.width), (0, 0, 32, 32), "{size}");
        assert!(p.antialias && !p.flip && !p.jitter && !p.gray && p.blur_sigma == 0.0);
    }
    let b = Dataset::open("builtin:20", 16).unwrap();
    assert_eq!(b.eval_view, EvalView::Resize);
    let p = b.eval_params(8);
    assert_eq!((p.top, p.left, p.height, p.width), (0, 0, 16, 16));
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = record(&[3, 77], 1);
    bytes.extend(record(&[19, 99], 2));
    std::fs::write(tmp.path().join("train.bin"), &bytes).unwrap();
    std::fs::write(tmp.path().join("test.bin"), record(&[0, 5], 3)).unwrap();
    let p = tmp.path().display();
    let fine = Dataset::open(&format!("cifar100:{p}"), 32).unwrap();
    assert_eq!((fine.classes, fine.labels.clone()), (100, vec![77, 99]));
    assert_eq!(fine.images[3072], 2);
    let coarse = Dataset::open(&format!("cifar100-coarse:{p}"), 32).unwrap();
    assert_eq!((coarse.classes, coarse.labels.clone()), (20, vec![3, 19]));
    let test =
        Dataset::open_with(&format!("cifar100:{p}"), &OpenOptions::new(Split::Test, 32)).unwrap();
    assert_eq!(test.labels, vec![5]);
}

#[test]
fn cifar_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    // Missing file.
    let e = err(&format!("cifar10:{}", p.display()), Split::Train);
    assert!(
        e.contains("data_batch_1.bin") && e.contains("cannot read"),
        "{e}"
    );
    // Truncated record.
    write_cifar10(p);
    let mut b3 = std::fs::read(p.join("data_batch_3.bin")).unwrap();
    b3.truncate(2 * 3073 + 100);
    std::fs::write(p.join("data_batch_3.bin"), &b3).unwrap();
    let e = err(&format!("cifar10:{}", p.display()), Split::Train);
    assert!(
        e.contains("data_batch_3.bin") && e.contains("record 2 is incomplete"),
        "{e}"
    );
    // Label out of range.
    write_cifar10(p);
    let mut t = record(&[9], 0);
    t.extend(record(&[10], 0));
    std::fs::write(p.join("test_batch.bin"), t).unwrap();
    let e = err(&format!("cifar10:{}", p.display()), Split::Test);
    assert!(
        e.contains("test_batch.bin") && e.contains("record 1: label 10 out of range"),
        "{e}"
    );
    // Empty file.
    std::fs::write(p.join("test_batch.bin"), b"").unwrap();
    let e = err(&format!("cifar10:{}", p.display()), Split::Test);
    assert!(e.contains("test_batch.bin") && e.contains("empty"), "{e}");
    // CIFAR-100 record size (3074) read as CIFAR-100 with a CIFAR-10 file.
    std::fs::write(p.join("train.bin"), record(&[1], 0)).unwrap();
    let e = err(&format!("cifar100:{}", p.display()), Split::Train);
    assert!(e.contains("train.bin") && e.contains("3074-byte"), "{e}");
    let e = err(&format!("cifar100:{}", p.display()), Split::Test);
    assert!(e.contains("test.bin"), "{e}");
}

/// A bad file is an `Error::File` naming the path, a bad configuration
/// value an `Error::Config` naming the key: neither is a device error.
#[test]
fn file_and_config_errors_are_their_own_kinds_not_device_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = Dataset::open(&format!("cifar10:{}", tmp.path().display()), 32).unwrap_err();
    match &missing {
        Error::File { path, .. } => assert!(path.ends_with("data_batch_1.bin"), "{path}"),
        e => panic!("a missing CIFAR file gave {e:?}, not Error::File"),
    }
    for (spec, size, key) in [
        ("nope:dir", 32, "data.dataset"),
        ("builtin:8", 0, "data.size"),
    ] {
        match Dataset::open(spec, size).unwrap_err() {
            Error::Config(ConfigError { key: k, .. }) => assert_eq!(k, key, "{spec} at {size}"),
            e => panic!("{spec} at {size} gave {e:?}, not Error::Config"),
        }
    }
}

#[test]
fn bad_dataset_specs_are_named() {
    for spec in ["cifar10", "nope:dir", "builtin:0", "builtin:x", "folder:"] {
        let e = DataSpec::parse(spec).unwrap_err().to_string();
        assert!(
            e.contains("data.dataset") && e.contains(spec),
            "{spec}: {e}"
        );
    }
    assert_eq!(
        DataSpec::parse("builtin:12").unwrap(),
        DataSpec::Builtin { n: 12 }
    );
}

fn write_image(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        image::Rgb([
            rgb[0],
            rgb[1],
            if x < w / 2 { rgb[2] } else { 255 - rgb[2] },
        ])
    });
    img.save(path).unwrap();
}

/// train/{cat,dog}/ and val/{cat,dog}/ with PNG and JPEG files of
/// different sizes.
fn write_folder(root: &Path) {
    for (split, n) in [("train", 3), ("val", 1)] {
        for (c, colour) in [("cat", [200u8, 10, 10]), ("dog", [10, 200, 10])] {
            let dir = root.join(split).join(c);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let ext = if i % 2 == 0 { "png" } else { "JPEG" };
                write_image(&dir.join(format!("{i}.{ext}")), 40 + 8 * i, 30, colour);
            }
            std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        }
    }
}

#[test]
fn image_folder_loads_resizes_and_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    write_folder(&root);
    let spec = format!("folder:{}", root.display());
    // Views of 14 px: stored side round(14 · 256/224) = 16.
    let d = Dataset::open_with(&spec, &OpenOptions::new(Split::Train, 14)).unwrap();
    assert_eq!((d.len(), d.h, d.w, d.classes), (6, 16, 16, 2));
    assert_eq!(d.class_names, ["cat", "dog"]);
    assert_eq!(d.labels, [0, 0, 0, 1, 1, 1]);
    // Colours survive decoding and resizing: red plane high for cats.
    let plane = 16 * 16;
    assert!(d.images[plane / 2] > 180 && d.images[3 * 3 * plane + plane + plane / 2] > 180);
    // The eval view is the centred 14-px crop.
    assert_eq!(d.eval_view, EvalView::CenterCrop);
    let p = d.eval_params(14);
    assert_eq!((p.top, p.left, p.height, p.width), (1, 1, 14, 14));
    let v = Dataset::open_with(&spec, &OpenOptions::new(Split::Test, 14)).unwrap();
    assert_eq!((v.len(), v.labels.clone()), (2, vec![0, 1]));
    // The cache: written once, read back identical, rebuilt when corrupt.
    let cache = tmp.path().join("cache");
    let opts = OpenOptions {
        cache: Some(cache.clone()),
        ..OpenOptions::new(Split::Train, 14)
    };
    let a = Dataset::open_with(&spec, &opts).unwrap();
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("folder-train-16-"));
    let b = Dataset::open_with(&spec, &opts).unwrap();
    assert_eq!(
        (a.images.clone(), a.labels.clone()),
        (d.images.clone(), d.labels.clone())
    );
    assert_eq!((b.images, b.labels), (d.images.clone(), d.labels.clone()));
    std::fs::write(&files[0], b"SCLFOLD1 truncated").unwrap();
    let c = Dataset::open_with(&spec, &opts).unwrap();
    assert_eq!(c.images, d.images);
    assert!(
        std::fs::metadata(&files[0]).unwrap().len() > 100,
        "cache rewritten"
    );
}

#[test]
fn image_folder_bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let spec = format!("folder:{}", root.display());
    let open = |split| {
        Dataset::open_with(&spec, &OpenOptions::new(split, 16))
            .unwrap_err()
            .to_string()
    };
    // No class folders at all.
    let e = open(Split::Train);
    assert!(e.contains("no class folders"), "{e}");
    write_folder(root);
    // An empty class folder.
    std::fs::create_dir_all(root.join("train/emu")).unwrap();
    let e = open(Split::Train);
    assert!(
        e.contains("train/emu") && e.contains("empty class folder"),
        "{e}"
    );
    std::fs::remove_dir(root.join("train/emu")).unwrap();
    // An undecodable image.
    std::fs::write(
        root.join("train/dog/broken.jpg"),
        b"\xff\xd8 not really a jpeg",
    )
    .unwrap();
    let e = open(Split::Train);
    assert!(e.contains("broken.jpg") && e.contains("decode"), "{e}");
    std::fs::remove_file(root.join("train/dog/broken.jpg")).unwrap();
    // A validation class that training does not have.
    std::fs::create_dir_all(root.join("val/emu")).unwrap();
    write_image(&root.join("val/emu/0.png"), 8, 8, [1, 2, 3]);
    let e = open(Split::Test);
    assert!(e.contains("val/emu") && e.contains("not in"), "{e}");
    // No val/ at all.
    std::fs::remove_dir_all(root.join("val")).unwrap();
    let e = open(Split::Test);
    assert!(e.contains("val") && e.contains("missing"), "{e}");
    // The training split still loads.
    assert_eq!(Dataset::open(&spec, 16).unwrap().len(), 6);
}

#[test]
fn builtin_dataset_is_deterministic_balanced_and_split() {
    let a = Dataset::open("builtin:200", 16).unwrap();
    let b = Dataset::open("builtin:200", 16).unwrap();
    assert_eq!(a.images, b.images);
    assert_eq!((a.len(), a.classes, a.h), (200, synth::CLASSES, 16));
    for c in 0..synth::CLASSES as u32 {
        assert_eq!(a.labels.iter().filter(|l| **l == c).count(), 20);
    }
    let t = Dataset::open_with("builtin:200", &OpenOptions::new(Split::Test, 16)).unwrap();
    assert_eq!(t.len(), synth::test_len(200));
    assert_ne!(
        t.images[..768],
        a.images[..768],
        "the test split is other images"
    );
    // Pixels use the whole range: shapes are visible.
    let (lo, hi) = a
        .images
        .iter()
        .fold((255u8, 0u8), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(lo < 30 && hi > 225, "{lo}..{hi}");
}

/// Per-image mean colour features.
fn mean_colour(d: &Dataset) -> Vec<f32> {
    let plane = d.h * d.w;
    d.images
        .chunks(3 * plane)
        .flat_map(|img| {
            (0..3).map(move |c| {
                img[c * plane..(c + 1) * plane]
                    .iter()
                    .map(|v| *v as f32)
                    .sum::<f32>()
                    / plane as f32
            })
        })
        .collect()
}

#[test]
fn builtin_classes_are_not_told_apart_by_colour() {
    // The classes are defined by content: a k-NN on each image's mean
    // colour is near chance (10 classes: 10 %), so colour cannot carry
    // the k-NN accuracy of an encoder.
    let train = Dataset::open("builtin:2000", 16).unwrap();
    let test = Dataset::open_with("builtin:2000", &OpenOptions::new(Split::Test, 16)).unwrap();
    let (ftr, fte) = (mean_colour(&train), mean_colour(&test));
    let set = KnnSet {
        train: &ftr,
        train_labels: &train.labels,
        test: &fte,
        d: 3,
        classes: synth::CLASSES,
    };
    let cfg = KnnConfig::default();
    let mut preds = vec![0u32; test.len()];
    let mut s = vec![0.0; knn::scratch_len(train.len(), cfg.k, synth::CLASSES)];
    let mut si = vec![0u32; knn::index_scratch_len(train.len(), cfg.k)];
    knn::predict(&set, &cfg, &mut preds, &mut s, &mut si).unwrap();
    let acc = preds
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count() as f64
        / test.len() as f64;
    println!("mean-colour k-NN on builtin: {:.1} %", 100.0 * acc);
    assert!(acc < 0.2, "mean-colour k-NN reaches {:.1} %", 100.0 * acc);
}
