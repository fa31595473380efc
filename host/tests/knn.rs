//! GPU k-NN (`ops::knn`, `shaders/wgsl/knn.wgsl`) against the core's
//! `knn::predict` on the same features: the predictions must be equal,
//! over several tile/chunk shapes (so the top-k lists are merged across
//! chunks and test rows span tiles), k below and above the training-set
//! size, and duplicated training rows (exact similarity ties, where the
//! lower training index must win).

mod common;

use scorecl_host::core::knn::{self, KnnConfig, KnnSet};
use scorecl_host::ops::knn::{predict, KnnTiles};
use scorecl_host::{DType, Gpu};

fn core_predict(
    train: &[f32],
    labels: &[u32],
    test: &[f32],
    d: usize,
    classes: usize,
    cfg: &KnnConfig,
) -> Vec<u32> {
    let set = KnnSet {
        train,
        train_labels: labels,
        test,
        d,
        classes,
    };
    let n_test = test.len() / d;
    let mut preds = vec![0u32; n_test];
    let mut s = vec![0.0; knn::scratch_len(labels.len(), cfg.k, classes)];
    let mut si = vec![0u32; knn::index_scratch_len(labels.len(), cfg.k)];
    knn::predict(&set, cfg, &mut preds, &mut s, &mut si).unwrap();
    preds
}

fn upload(gpu: &Gpu, v: &[f32]) -> scorecl_host::Tensor {
    let t = gpu.tensor(&[v.len()], DType::F32).unwrap();
    gpu.write(&t, bytemuck::cast_slice(v)).unwrap();
    t
}

/// Clustered features: class centres plus noise, so votes are not all
/// trivially unanimous but predictions are stable.
fn features(seed: u64, n: usize, d: usize, classes: usize) -> (Vec<f32>, Vec<u32>) {
    let centres = common::normals(1000 + seed, classes * d, 1.0);
    let noise = common::normals(seed, n * d, 0.9);
    let labels: Vec<u32> = (0..n)
        .map(|i| ((i * 7 + seed as usize) % classes) as u32)
        .collect();
    let x = (0..n * d)
        .map(|j| centres[labels[j / d] as usize * d + j % d] + noise[j])
        .collect();
    (x, labels)
}

#[test]
fn gpu_knn_predicts_as_the_core() {
    let cases = [
        // (n_train, n_test, d, classes, k, T, tiles)
        (
            300,
            70,
            16,
            5,
            20,
            0.1,
            KnnTiles {
                test_rows: 32,
                train_cols: 64,
            },
        ),
        (
            300,
            70,
            16,
            5,
            200,
            0.07,
            KnnTiles {
                test_rows: 70,
                train_cols: 300,
            },
        ),
        (
            50,
            33,
            8,
            3,
            200,
            0.5,
            KnnTiles {
                test_rows: 8,
                train_cols: 7,
            },
        ),
        (129, 40, 3, 10, 1, 0.1, KnnTiles::default()),
        // The main job's size: 2048 training and 512 test rows of 64, one
        // chunk of every training row by default (llvmpipe's loop cap made
        // this case wrong there until chunks were bounded by k).
        (2048, 512, 64, 10, 200, 0.1, KnnTiles::default()),
    ];

    for gpu in common::gpus() {
        for (i, &(n_tr, n_te, d, classes, k, temp, tiles)) in cases.iter().enumerate() {
            let (train, labels) = features(i as u64, n_tr, d, classes);
            let (test, _) = features(50 + i as u64, n_te, d, classes);
            let cfg = KnnConfig {
                k,
                temperature: temp,
            };
            let want = core_predict(&train, &labels, &test, d, classes, &cfg);
            let got = predict(
                gpu,
                &upload(gpu, &train),
                &labels,
                &upload(gpu, &test),
                d,
                classes,
                &cfg,
                tiles,
            )
            .unwrap();
            assert_eq!(got, want, "case {i} on {}", gpu.describe());
            // The data is not degenerate: more than one class is predicted.
            let first = want[0];
            assert!(want.iter().any(|p| *p != first), "case {i}: one class only");
        }
    }
}

#[test]
fn gpu_knn_ties_keep_the_lower_training_index() {
    // Every training row appears twice with different labels: with k = 1
    // the first copy (lower index) must be the neighbour, on the GPU as in
    // the core, whatever the chunking.
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let d = 4;
    let base = common::normals(7, 20 * d, 1.0);
    let mut train = base.clone();
    train.extend_from_slice(&base);
    let labels: Vec<u32> = (0..40).map(|i| if i < 20 { 0 } else { 1 }).collect();
    let test = base.clone();
    let cfg = KnnConfig {
        k: 1,
        temperature: 0.1,
    };
    let want = core_predict(&train, &labels, &test, d, 2, &cfg);
    assert!(want.iter().all(|p| *p == 0), "core: {want:?}");
    for tiles in [
        KnnTiles::default(),
        KnnTiles {
            test_rows: 3,
            train_cols: 5,
        },
    ] {
        let got = predict(
            gpu,
            &upload(gpu, &train),
            &labels,
            &upload(gpu, &test),
            d,
            2,
            &cfg,
            tiles,
        )
        .unwrap();
        assert_eq!(got, want, "{tiles:?}");
    }
}

#[test]
fn gpu_knn_rejects_bad_input() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let t = upload(gpu, &[1.0; 8]);
    let e = predict(
        gpu,
        &t,
        &[0, 5],
        &t,
        4,
        3,
        &KnnConfig::default(),
        KnnTiles::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("label 5") && e.contains("3 classes"), "{e}");
    let e = predict(
        gpu,
        &t,
        &[0, 1],
        &t,
        3,
        3,
        &KnnConfig::default(),
        KnnTiles::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("knn"), "{e}");
    let cfg = KnnConfig {
        k: 0,
        temperature: 0.1,
    };
    assert!(predict(gpu, &t, &[0, 1], &t, 4, 3, &cfg, KnnTiles::default()).is_err());
}
