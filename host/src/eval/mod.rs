//! Evaluation of a frozen backbone: features of a dataset without
//! augmentation ([`extract`]), the weighted k-NN classifier on the GPU
//! ([`knn_eval`], the core's rule, k 200 and T 0.1 by default) and the
//! linear probe ([`linear`]).

pub mod linear;

use scorecl_core::knn::KnnConfig;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::Encoder;
use crate::ops::augment::{Augmenter, Normalize};
use crate::ops::knn::{self, KnnTiles};
use crate::tensor::{DType, Tensor};

pub use linear::{linear_probe, LinearConfig, LinearReport};

/// Features of every image of a dataset, on the GPU.
pub struct Features {
    /// `[n, d]`.
    pub tensor: Tensor,
    /// Rows.
    pub n: usize,
    /// Feature dimension.
    pub d: usize,
}

/// Backbone features (global average pool, `[n, feature_dim]`) of every
/// image of `data`: evaluation view ([`Dataset::eval_params`]: the whole
/// image resized for CIFAR and `builtin`, the centred `size` crop for image
/// folders), normalised with `norm`,
/// BatchNorm with running statistics, `batch` images per submit.
pub fn extract(
    gpu: &Gpu,
    encoder: &dyn Encoder,
    data: &Dataset,
    size: usize,
    norm: &Normalize,
    batch: usize,
) -> Result<Features> {
    if data.is_empty() {
        return Err(Error::shape(
            "features",
            format!("the dataset `{}` has no images", data.name),
        ));
    }
    let b = batch.clamp(1, data.len());
    let d = encoder.feature_dim();
    let n = data.len();
    let t = |len: usize| gpu.tensor(&[len], DType::F32);
    let ws = encoder.workspace(gpu, b, size, size, false)?;
    let mut aug = Augmenter::new(gpu, b, (data.h, data.w), (size, size))?;
    let clean = t(b * data.image_len())?;
    let (v01, vn) = (t(b * 3 * size * size)?, t(b * 3 * size * size)?);
    let out = t(n * d)?;
    let params = vec![data.eval_params(size); b];
    let mut host = Vec::new();
    for start in (0..n).step_by(b) {
        let r = b.min(n - start);
        // A short last batch repeats its first image; only r rows are kept.
        let idx: Vec<u32> = (0..b)
            .map(|i| (start + if i < r { i } else { 0 }) as u32)
            .collect();
        data.gather(&idx, &mut host);
        gpu.write(&clean, bytemuck::cast_slice(&host))?;
        let mut s = gpu.step("features");
        aug.run(&mut s, &clean, &params, norm, &v01, &vn)?;
        encoder.forward(&mut s, &ws, &vn, false)?;
        s.copy_range(&ws.features, 0, &out, start * d, r * d)?;
        s.submit()?;
    }
    Ok(Features { tensor: out, n, d })
}

/// What [`knn_eval`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KnnReport {
    /// Top-1 accuracy in percent.
    pub top1: f64,
    /// Correct test predictions.
    pub correct: usize,
    /// Test images.
    pub total: usize,
    /// Neighbours.
    pub k: usize,
    /// Vote temperature.
    pub temperature: f32,
}

/// k-NN top-1 of the test features against the training features.
pub fn knn_features(
    gpu: &Gpu,
    train: &Features,
    train_labels: &[u32],
    test: &Features,
    test_labels: &[u32],
    classes: usize,
    cfg: &KnnConfig,
) -> Result<KnnReport> {
    let preds = knn::predict(
        gpu,
        &train.tensor,
        train_labels,
        &test.tensor,
        train.d,
        classes,
        cfg,
        KnnTiles::default(),
    )?;
    let correct = preds
        .iter()
        .zip(test_labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(KnnReport {
        top1: 100.0 * correct as f64 / test_labels.len().max(1) as f64,
        correct,
        total: test_labels.len(),
        k: cfg.k,
        temperature: cfg.temperature,
    })
}

/// k-NN top-1 of `encoder` with `train` as the memory bank, on `test`.
pub fn knn_eval(
    gpu: &Gpu,
    encoder: &dyn Encoder,
    train: &Dataset,
    test: &Dataset,
    size: usize,
    norm: &Normalize,
    cfg: &KnnConfig,
) -> Result<KnnReport> {
    if train.classes != test.classes {
        return Err(Error::shape(
            "knn",
            format!(
                "`{}` has {} classes, `{}` {}",
                train.name, train.classes, test.name, test.classes
            ),
        ));
    }
    let ft = extract(gpu, encoder, train, size, norm, 256)?;
    let fe = extract(gpu, encoder, test, size, norm, 256)?;
    knn_features(
        gpu,
        &ft,
        &train.labels,
        &fe,
        &test.labels,
        train.classes,
        cfg,
    )
}
