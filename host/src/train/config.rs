//! Training configuration: TOML files in `configs/`, every key validated on
//! load (an unknown key, or a value out of range, is an error naming the
//! key and what is allowed).
//!
//! Learning rates are given for a batch of 256 and scaled by
//! batch_size / 256, as solo-learn does.

use std::path::Path;

use scorecl_core::augment::AugConfig;
use scorecl_core::dsm::SigmaSchedule;
use scorecl_core::weights::{
    Apply, AugStrength, ScoreWeightConfig, Statistic, Transform, WeightMode,
};
use serde::{Deserialize, Serialize};

pub use crate::error::ConfigError;

fn bad<T>(key: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        key: key.to_string(),
        message: message.into(),
    })
}

/// A configuration value that is one of a few names.
pub trait Choice: Sized + Copy + 'static {
    /// Every value with its name, in the order messages list them.
    const NAMES: &'static [(&'static str, Self)];

    /// The value named `s` (from the command line), or an error naming
    /// `key` and the allowed names.
    fn parse_for(key: &str, s: &str) -> Result<Self, ConfigError> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| ConfigError {
                key: key.into(),
                message: format!("`{s}`: allowed {}", Self::allowed()),
            })
    }

    /// The allowed names, comma-separated.
    fn allowed() -> String {
        Self::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The encoder's stem (`model.stem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// 3×3 convolution, stride 1, no max-pool (CIFAR-sized images).
    Cifar,
    /// 7×7 convolution, stride 2, then a 3×3 max-pool (torchvision's).
    Imagenet,
}

impl Choice for StemKind {
    const NAMES: &'static [(&'static str, Self)] =
        &[("cifar", StemKind::Cifar), ("imagenet", StemKind::Imagenet)];
}

/// The encoder's architecture (`model.arch`), torchvision's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18: basic blocks [2, 2, 2, 2], 8·width features (512).
    #[default]
    Resnet18,
    /// ResNet-50: bottleneck blocks [3, 4, 6, 3] (the stride on the 3×3
    /// convolution, torchvision's v1.5), 32·width features (2048).
    Resnet50,
}

impl Choice for Arch {
    const NAMES: &'static [(&'static str, Self)] =
        &[("resnet18", Arch::Resnet18), ("resnet50", Arch::Resnet50)];
}

impl Arch {
    /// The encoder of this architecture at base width `width` with `stem`.
    pub fn config(self, width: usize, stem: crate::nn::Stem) -> crate::nn::ResNetConfig {
        match self {
            Arch::Resnet18 => crate::nn::ResNetConfig::resnet18(width, stem),
            Arch::Resnet50 => crate::nn::ResNetConfig::resnet50(width, stem),
        }
    }

    /// Its configuration name (`resnet18`, `resnet50`).
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(n, _)| n)
    }
}

/// The input normalisation statistics (`data.normalize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormalizeKind {
    /// CIFAR-10/100's, as solo-learn.
    Cifar,
    /// ImageNet's, as torchvision.
    Imagenet,
}

impl Choice for NormalizeKind {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("cifar", NormalizeKind::Cifar),
        ("imagenet", NormalizeKind::Imagenet),
    ];
}

/// The encoder's and heads' optimizer (`optimizer.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// LARS (solo-learn's, with `eta`, `clip_lr`, `exclude_bias_n_norm`).
    Lars,
    /// SGD with momentum.
    Sgd,
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

impl Choice for OptimizerName {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("lars", OptimizerName::Lars),
        ("sgd", OptimizerName::Sgd),
        ("adam", OptimizerName::Adam),
        ("adamw", OptimizerName::Adamw),
    ];
}

impl Choice for crate::ops::conv::ConvPrecision {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("f32", crate::ops::conv::ConvPrecision::F32),
        ("f16", crate::ops::conv::ConvPrecision::F16),
    ];
}

impl Choice for WeightMode {
    const NAMES: &'static [(&'static str, Self)] = &WeightMode::NAMES;
}

impl Choice for Method {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("simclr", Method::Simclr),
        ("simsiam", Method::Simsiam),
        ("wmse", Method::Wmse),
        ("vicreg", Method::Vicreg),
    ];
}

/// The self-supervised method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SimCLR (NT-Xent).
    Simclr,
    /// SimSiam.
    Simsiam,
    /// W-MSE.
    Wmse,
    /// VICReg.
    Vicreg,
}

impl Method {
    /// Parses a method name (for `--method`).
    pub fn parse(s: &str) -> Result<Method, ConfigError> {
        Method::parse_for("method", s)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Simclr => "simclr",
            Method::Simsiam => "simsiam",
            Method::Wmse => "wmse",
            Method::Vicreg => "vicreg",
        }
    }
}

/// `[model]`: the encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `resnet18` or `resnet50`.
    pub arch: Arch,
    /// Base width (64 standard): the first stage's width.
    pub width: usize,
    /// `cifar` or `imagenet`.
    pub stem: StemKind,
    /// Padding of the CIFAR stem's convolution (1; solo-learn uses 2).
    pub cifar_padding: usize,
    /// Seed of the initial weights (defaults to `train.seed`).
    pub init_seed: Option<u64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Resnet18,
            width: 64,
            stem: StemKind::Cifar,
            cifar_padding: 1,
            init_seed: None,
        }
    }
}

/// `[simclr]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimClrSection {
    /// Softmax temperature.
    pub temperature: f32,
    /// Projector hidden width.
    pub proj_hidden_dim: usize,
    /// Projector output width.
    pub proj_output_dim: usize,
}

impl Default for SimClrSection {
    fn default() -> Self {
        SimClrSection {
            temperature: 0.2,
            proj_hidden_dim: 2048,
            proj_output_dim: 256,
        }
    }
}

/// `[simsiam]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSiamSection {
    /// Projector hidden width.
    pub proj_hidden_dim: usize,
    /// Projector output width.
    pub proj_output_dim: usize,
    /// Predictor bottleneck width.
    pub pred_hidden_dim: usize,
}

impl Default for SimSiamSection {
    fn default() -> Self {
        SimSiamSection {
            proj_hidden_dim: 2048,
            proj_output_dim: 2048,
            pred_hidden_dim: 512,
        }
    }
}

/// `[wmse]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WmseSection {
    /// Projector hidden width.
    pub proj_hidden_dim: usize,
    /// Projector output width (whitened dimension).
    pub proj_output_dim: usize,
    /// Rows per whitening chunk.
    pub w_size: usize,
    /// Shrinkage towards the identity.
    pub eps: f32,
}

impl Default for WmseSection {
    fn default() -> Self {
        WmseSection {
            proj_hidden_dim: 1024,
            proj_output_dim: 64,
            w_size: 128,
            eps: 0.0,
        }
    }
}

/// `[vicreg]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicRegSection {
    /// Projector hidden width (two hidden layers).
    pub proj_hidden_dim: usize,
    /// Projector output width.
    pub proj_output_dim: usize,
    /// Invariance coefficient.
    pub sim_coeff: f32,
    /// Variance coefficient.
    pub std_coeff: f32,
    /// Covariance coefficient.
    pub cov_coeff: f32,
}

impl Default for VicRegSection {
    fn default() -> Self {
        VicRegSection {
            proj_hidden_dim: 2048,
            proj_output_dim: 2048,
            sim_coeff: 25.0,
            std_coeff: 25.0,
            cov_coeff: 1.0,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `builtin[:N]` (the embedded dataset, N training images),
    /// `cifar10:DIR`, `cifar100:DIR`, `cifar100-coarse:DIR` or `folder:DIR`
    /// (see [`crate::data`]).
    pub dataset: String,
    /// Side of the square views (crop size).
    pub size: usize,
    /// Normalisation: `cifar` or `imagenet`.
    pub normalize: NormalizeKind,
    /// Directory of the decoded-image cache of image folders (empty: no
    /// cache).
    pub cache: String,
}

impl DataConfig {
    /// Opens `split` of the configured dataset.
    pub fn open(&self, split: crate::data::Split) -> crate::Result<crate::data::Dataset> {
        crate::data::Dataset::open_with(
            &self.dataset,
            &crate::data::OpenOptions {
                split,
                size: self.size,
                cache: (!self.cache.is_empty()).then(|| self.cache.clone().into()),
            },
        )
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "builtin".into(),
            size: 32,
            normalize: NormalizeKind::Cifar,
            cache: String::new(),
        }
    }
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// `lars`, `sgd`, `adam` or `adamw`.
    pub name: OptimizerName,
    /// Learning rate for a batch of 256.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Momentum (SGD, LARS).
    pub momentum: f32,
    /// LARS trust coefficient.
    pub eta: f32,
    /// LARS clipping.
    pub clip_lr: bool,
    /// LARS: no adaptation or decay for biases and norm parameters.
    pub exclude_bias_n_norm: bool,
    /// Adam β₁.
    pub beta1: f32,
    /// Adam β₂.
    pub beta2: f32,
    /// Adam ε.
    pub eps: f32,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            name: OptimizerName::Lars,
            lr: 0.4,
            weight_decay: 1e-4,
            momentum: 0.9,
            eta: 0.02,
            clip_lr: true,
            exclude_bias_n_norm: true,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// `[schedule]`: linear warm-up, then cosine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Warm-up epochs.
    pub warmup_epochs: f32,
    /// Learning rate at step 0.
    pub warmup_start_lr: f32,
    /// Final learning rate.
    pub min_lr: f32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            warmup_epochs: 10.0,
            warmup_start_lr: 3e-5,
            min_lr: 0.0,
        }
    }
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Epochs.
    pub epochs: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of everything random (data order, augmentation, noise).
    pub seed: u64,
    /// Log a metrics line every this many steps.
    pub log_every: u64,
    /// Write a checkpoint every this many epochs (and at the end).
    pub checkpoint_every: u64,
    /// Storage of the convolutions' operands: `f32`, or `f16` (the column
    /// matrices and weights read by the products stored as f16, with f32
    /// accumulation, outputs and gradients; for GPUs with shader-f16, and
    /// f32 on adapters without it).
    pub precision: crate::ops::conv::ConvPrecision,
    /// In a data-parallel run (more than one rank), batch statistics over
    /// the global batch (every batch norm's sums exchanged between the
    /// ranks, as solo-learn's `sync_batchnorm: True`); false: each rank
    /// normalises its own samples and keeps its own running statistics
    /// (rank 0's are checkpointed). No effect on one rank.
    pub sync_batchnorm: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 1000,
            batch_size: 256,
            seed: 0,
            log_every: 10,
            checkpoint_every: 1,
            precision: crate::ops::conv::ConvPrecision::F32,
            sync_batchnorm: true,
        }
    }
}

/// `[scorecl]`: the score network and the pair weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreClConfig {
    /// `on` (score weights), `off` (uniform), `shuffled` (control) or
    /// `augment` (hand-crafted control from the augmentation parameters).
    pub mode: WeightMode,
    /// Exponent γ.
    pub gamma: f32,
    /// Mix with uniform α.
    pub alpha: f32,
    /// Upper clamp (and the top of the `minmax` range).
    pub w_max: f32,
    /// Reference noise level σ_ref (defaults to sigma_min).
    pub sigma_ref: Option<f32>,
    /// The per-view statistic: `norm` (‖s‖/√D), `sigma_norm` (‖σ·s‖/√D)
    /// or `dsm` (the view's own DSM loss), averaged over `stat_sigmas`.
    pub statistic: Statistic,
    /// Noise levels the statistic is evaluated at and averaged over
    /// (empty: [sigma_ref]); each costs a score-network pass on 2n views.
    pub stat_sigmas: Vec<f32>,
    /// The weight transform: `power` (|ΔS|^γ / mean), `rank`, `softmax`
    /// (with `temperature`) or `minmax` (onto [w_min, w_max]).
    pub transform: Transform,
    /// The `softmax` transform's temperature.
    pub temperature: f32,
    /// The bottom of the `minmax` range.
    pub w_min: f32,
    /// What a weight multiplies: `pair` (the pair's loss, from |ΔS|) or
    /// `view` (each view's own loss term, from S(v); SimCLR and SimSiam).
    pub apply: Apply,
    /// Epochs with uniform weights before the score weights start
    /// (the score network trains from the first step).
    pub score_warmup_epochs: u64,
    /// Start the score network from this one instead of its random
    /// initialisation: a safetensors file, a folder holding
    /// `score.safetensors` (`scorecl probe --train-score-epochs N --out
    /// DIR` writes one) or a run directory (its latest checkpoint). Same
    /// width and depth; its Adam moments start at zero.
    pub score_init: Option<String>,
    /// Score-network Adam learning rate.
    pub lr: f32,
    /// Score-network width (channels at full resolution).
    pub width: usize,
    /// Score-network depth (residual blocks per resolution stage).
    pub depth: usize,
    /// Largest noise level.
    pub sigma_max: f32,
    /// Smallest noise level.
    pub sigma_min: f32,
    /// Noise levels.
    pub levels: u32,
    /// `augment` mode: coefficient of the cropped-away area fraction.
    pub augment_crop: f32,
    /// `augment` mode: coefficient of the colour-jitter magnitude.
    pub augment_jitter: f32,
}

impl Default for ScoreClConfig {
    fn default() -> Self {
        ScoreClConfig {
            mode: WeightMode::Score,
            gamma: 1.0,
            alpha: 1.0,
            w_max: 5.0,
            sigma_ref: None,
            statistic: Statistic::Norm,
            stat_sigmas: Vec::new(),
            transform: Transform::Power,
            temperature: 1.0,
            w_min: 0.0,
            apply: Apply::Pair,
            score_warmup_epochs: 0,
            score_init: None,
            lr: 1e-4,
            width: 32,
            depth: 1,
            sigma_max: 1.0,
            sigma_min: 0.01,
            levels: 10,
            augment_crop: 1.0,
            augment_jitter: 1.0,
        }
    }
}

impl ScoreClConfig {
    /// The weight mode.
    pub fn weight_mode(&self) -> WeightMode {
        self.mode
    }

    /// The pair-weight configuration.
    pub fn weights(&self) -> ScoreWeightConfig {
        ScoreWeightConfig {
            mode: self.weight_mode(),
            gamma: self.gamma,
            alpha: self.alpha,
            w_max: self.w_max,
            transform: self.transform,
            temperature: self.temperature,
            w_min: self.w_min,
            apply: self.apply,
        }
    }

    /// The noise levels the statistic is averaged over.
    pub fn stat_sigmas(&self) -> Vec<f32> {
        if self.stat_sigmas.is_empty() {
            vec![self.sigma_ref()]
        } else {
            self.stat_sigmas.clone()
        }
    }

    /// The coefficients of the `augment` mode's hand-crafted strength.
    pub fn augment_strength(&self) -> AugStrength {
        AugStrength {
            crop: self.augment_crop,
            jitter: self.augment_jitter,
        }
    }

    /// The noise schedule.
    pub fn schedule(&self) -> SigmaSchedule {
        SigmaSchedule {
            sigma_max: self.sigma_max,
            sigma_min: self.sigma_min,
            levels: self.levels,
        }
    }

    /// σ_ref.
    pub fn sigma_ref(&self) -> f32 {
        self.sigma_ref.unwrap_or(self.sigma_min)
    }
}

/// A whole training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The method.
    pub method: Method,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[simclr]`.
    pub simclr: SimClrSection,
    /// `[simsiam]`.
    pub simsiam: SimSiamSection,
    /// `[wmse]`.
    pub wmse: WmseSection,
    /// `[vicreg]`.
    pub vicreg: VicRegSection,
    /// `[data]`.
    pub data: DataConfig,
    /// `[augment]`: both views (torchvision parameter meanings).
    pub augment: AugConfig,
    /// `[augment_view2]`: the second view, if it differs.
    pub augment_view2: Option<AugConfig>,
    /// `[optimizer]`.
    pub optimizer: OptimizerConfig,
    /// `[schedule]`.
    pub schedule: ScheduleConfig,
    /// `[train]`.
    pub train: TrainSection,
    /// `[scorecl]`.
    pub scorecl: ScoreClConfig,
    /// `[eval]`.
    pub eval: EvalSection,
}

/// `[eval]`: the k-NN monitor during training (on the dataset's test
/// split, with the training split as the memory bank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// Run the k-NN every this many epochs and after the last (0: never).
    pub knn_every: u64,
    /// Neighbours (200).
    pub knn_k: usize,
    /// Vote temperature (0.1).
    pub knn_temperature: f32,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            knn_every: 0,
            knn_k: 200,
            knn_temperature: 0.1,
        }
    }
}

impl EvalSection {
    /// The k-NN settings.
    pub fn knn(&self) -> scorecl_core::knn::KnnConfig {
        scorecl_core::knn::KnnConfig {
            k: self.knn_k,
            temperature: self.knn_temperature,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: Method::Simclr,
            model: ModelConfig::default(),
            simclr: SimClrSection::default(),
            simsiam: SimSiamSection::default(),
            wmse: WmseSection::default(),
            vicreg: VicRegSection::default(),
            data: DataConfig::default(),
            augment: AugConfig::default(),
            augment_view2: None,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            train: TrainSection::default(),
            scorecl: ScoreClConfig::default(),
            eval: EvalSection::default(),
        }
    }
}

fn positive(key: &str, v: f32) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        bad(key, format!("{v}: allowed a finite value > 0"))
    }
}

fn non_negative(key: &str, v: f32) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        bad(key, format!("{v}: allowed a finite value ≥ 0"))
    }
}

fn at_least(key: &str, v: usize, min: usize) -> Result<(), ConfigError> {
    if v >= min {
        Ok(())
    } else {
        bad(key, format!("{v}: allowed ≥ {min}"))
    }
}

impl ModelConfig {
    /// Checks `[model]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("model.width", self.width, 1)?;
        if self.cifar_padding > 3 {
            return bad(
                "model.cifar_padding",
                format!("{}: allowed 0 to 3", self.cifar_padding),
            );
        }
        Ok(())
    }
}

impl SimClrSection {
    /// Checks `[simclr]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("simclr.temperature", self.temperature)?;
        at_least("simclr.proj_hidden_dim", self.proj_hidden_dim, 1)?;
        at_least("simclr.proj_output_dim", self.proj_output_dim, 1)
    }
}

impl SimSiamSection {
    /// Checks `[simsiam]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("simsiam.proj_hidden_dim", self.proj_hidden_dim, 1)?;
        at_least("simsiam.proj_output_dim", self.proj_output_dim, 1)?;
        at_least("simsiam.pred_hidden_dim", self.pred_hidden_dim, 1)
    }
}

impl WmseSection {
    /// Checks `[wmse]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("wmse.proj_hidden_dim", self.proj_hidden_dim, 1)?;
        at_least("wmse.proj_output_dim", self.proj_output_dim, 1)?;
        at_least("wmse.w_size", self.w_size, 2)?;
        if !(0.0..1.0).contains(&self.eps) {
            return bad("wmse.eps", format!("{}: allowed [0, 1)", self.eps));
        }
        Ok(())
    }
}

impl VicRegSection {
    /// Checks `[vicreg]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("vicreg.proj_hidden_dim", self.proj_hidden_dim, 1)?;
        at_least("vicreg.proj_output_dim", self.proj_output_dim, 1)?;
        non_negative("vicreg.sim_coeff", self.sim_coeff)?;
        non_negative("vicreg.std_coeff", self.std_coeff)?;
        non_negative("vicreg.cov_coeff", self.cov_coeff)
    }
}

impl DataConfig {
    /// Checks `[data]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::data::DataSpec::parse(&self.dataset)?;
        if self.size < 8 || self.size % 2 != 0 {
            return bad(
                "data.size",
                format!("{}: allowed an even number ≥ 8", self.size),
            );
        }
        Ok(())
    }
}

impl EvalSection {
    /// Checks `[eval]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("eval.knn_k", self.knn_k, 1)?;
        positive("eval.knn_temperature", self.knn_temperature)
    }
}

impl OptimizerConfig {
    /// Checks `[optimizer]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("optimizer.lr", self.lr)?;
        non_negative("optimizer.weight_decay", self.weight_decay)?;
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "optimizer.momentum",
                format!("{}: allowed [0, 1)", self.momentum),
            );
        }
        positive("optimizer.eta", self.eta)?;
        for (key, b) in [
            ("optimizer.beta1", self.beta1),
            ("optimizer.beta2", self.beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return bad(key, format!("{b}: allowed [0, 1)"));
            }
        }
        positive("optimizer.eps", self.eps)
    }
}

impl ScheduleConfig {
    /// Checks `[schedule]` (its bound by `train.epochs` is checked with the
    /// whole configuration).
    pub fn validate(&self) -> Result<(), ConfigError> {
        non_negative("schedule.warmup_epochs", self.warmup_epochs)?;
        non_negative("schedule.warmup_start_lr", self.warmup_start_lr)?;
        non_negative("schedule.min_lr", self.min_lr)
    }
}

impl TrainSection {
    /// Checks `[train]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs == 0 {
            return bad("train.epochs", "0: allowed ≥ 1");
        }
        at_least("train.batch_size", self.batch_size, 2)?;
        if self.log_every == 0 {
            return bad("train.log_every", "0: allowed ≥ 1");
        }
        if self.checkpoint_every == 0 {
            return bad("train.checkpoint_every", "0: allowed ≥ 1");
        }
        Ok(())
    }
}

impl ScoreClConfig {
    /// Checks `[scorecl]` (whether `apply = "view"` fits the method is
    /// checked with the whole configuration).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let core = |e: scorecl_core::CoreError| ConfigError {
            key: "scorecl".into(),
            message: e.to_string(),
        };
        self.weights().validate().map_err(core)?;
        self.augment_strength().validate().map_err(core)?;
        self.schedule().validate().map_err(core)?;
        positive("scorecl.sigma_ref", self.sigma_ref())?;
        for (i, s) in self.stat_sigmas.iter().enumerate() {
            positive(&format!("scorecl.stat_sigmas[{i}]"), *s)?;
        }
        if self.stat_sigmas.len() > 16 {
            return bad(
                "scorecl.stat_sigmas",
                format!(
                    "{} levels: at most 16 (each is a score-network pass per step)",
                    self.stat_sigmas.len()
                ),
            );
        }
        positive("scorecl.lr", self.lr)?;
        at_least("scorecl.width", self.width, 1)?;
        at_least("scorecl.depth", self.depth, 1)
    }
}

impl TrainConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        Self::load_with(path, false)
    }

    /// [`TrainConfig::load`]; a file that sets nothing (empty, or only
    /// comments) is refused unless `allow_defaults`, since every default
    /// would then apply silently (a 1000-epoch ResNet-18 run on the
    /// embedded data).
    pub fn load_with(path: &Path, allow_defaults: bool) -> Result<TrainConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        if !allow_defaults {
            if let Ok(table) = text.parse::<toml::Table>() {
                if table.is_empty() {
                    return Err(ConfigError {
                        key: file,
                        message: "sets nothing (empty, or only comments): every default would \
                                  apply (method simclr, ResNet-18 width 64, 1000 epochs on the \
                                  embedded data). Start from a preset in configs/, or pass \
                                  --allow-defaults to train with the defaults"
                            .into(),
                    });
                }
            }
        }
        Self::parse(&text).map_err(|e| {
            if e.key.is_empty() {
                ConfigError {
                    key: file,
                    message: e.message,
                }
            } else {
                e
            }
        })
    }

    /// This configuration with `key=value` overrides applied (a dotted key,
    /// as `scorecl.transform=rank` or `train.epochs=12`; the value is read
    /// as a TOML value, or as a string when it is not one), validated.
    /// Errors name the override.
    pub fn with_overrides(&self, sets: &[String]) -> Result<TrainConfig, ConfigError> {
        if sets.is_empty() {
            return Ok(self.clone());
        }
        let mut root = toml::Table::try_from(self).map_err(|e| ConfigError {
            key: "--set".into(),
            message: format!("the configuration does not serialise: {e}"),
        })?;
        for set in sets {
            let Some((key, value)) = set.split_once('=') else {
                return bad("--set", format!("`{set}`: expected KEY=VALUE"));
            };
            let (key, value) = (key.trim(), value.trim());
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            let parts: Vec<&str> = key.split('.').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return bad("--set", format!("`{set}`: an empty key part"));
            }
            let mut table = &mut root;
            for part in &parts[..parts.len() - 1] {
                let entry = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table = match entry {
                    toml::Value::Table(t) => t,
                    _ => return bad(key, format!("`{set}`: `{part}` is not a section")),
                };
            }
            table.insert(parts[parts.len() - 1].to_string(), parsed);
        }
        let cfg: TrainConfig =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError {
                    key: format!("--set {}: {key}", sets.join(" --set ")),
                    message: e.into_inner().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates TOML text. A value of the wrong type or name
    /// is reported with its dotted key (`model.stem`) and TOML's message
    /// (the line, and the names allowed); malformed TOML with the line.
    pub fn parse(text: &str) -> Result<TrainConfig, ConfigError> {
        let cfg: TrainConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let path = e.path().to_string();
                ConfigError {
                    // The root (`.`) is where syntax errors land: the
                    // caller names the file instead.
                    key: if path == "." { String::new() } else { path },
                    message: e.into_inner().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The encoder this configuration trains.
    pub fn encoder_config(&self) -> crate::nn::ResNetConfig {
        let stem = match self.model.stem {
            StemKind::Imagenet => crate::nn::Stem::ImageNet,
            StemKind::Cifar => crate::nn::Stem::Cifar {
                padding: self.model.cifar_padding,
            },
        };
        self.model.arch.config(self.model.width, stem)
    }

    /// The encoder `model.arch` names, initialised from `seed`.
    pub fn build_encoder(
        &self,
        gpu: &crate::Gpu,
        seed: u64,
    ) -> crate::Result<Box<dyn crate::nn::Encoder>> {
        Ok(match self.model.arch {
            Arch::Resnet18 | Arch::Resnet50 => {
                Box::new(crate::nn::ResNet::new(gpu, self.encoder_config(), seed)?)
            }
        })
    }

    /// The input normalisation (`data.normalize`).
    pub fn normalize(&self) -> crate::ops::augment::Normalize {
        match self.data.normalize {
            NormalizeKind::Imagenet => crate::ops::augment::Normalize::IMAGENET,
            NormalizeKind::Cifar => crate::ops::augment::Normalize::CIFAR,
        }
    }

    /// The configuration as TOML (written into run directories).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a validated configuration serialises")
    }

    /// The convolutions' operand storage asked for (`train.precision`).
    pub fn conv_precision(&self) -> crate::ops::conv::ConvPrecision {
        self.train.precision
    }

    /// Checks every key; the first bad one is reported. Each section
    /// checks its own keys; what spans sections is checked here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate()?;
        self.simclr.validate()?;
        self.simsiam.validate()?;
        self.wmse.validate()?;
        self.vicreg.validate()?;
        self.data.validate()?;
        self.eval.validate()?;
        for (key, a) in [
            ("augment", Some(&self.augment)),
            ("augment_view2", self.augment_view2.as_ref()),
        ] {
            if let Some(a) = a {
                a.validate().map_err(|e| ConfigError {
                    key: key.into(),
                    message: e.to_string(),
                })?;
            }
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.train.validate()?;
        if self.schedule.warmup_epochs > self.train.epochs as f32 {
            return bad(
                "schedule.warmup_epochs",
                format!(
                    "{}: allowed ≤ train.epochs ({})",
                    self.schedule.warmup_epochs, self.train.epochs
                ),
            );
        }
        if self.method == Method::Wmse && self.train.batch_size % self.wmse.w_size != 0 {
            return bad(
                "wmse.w_size",
                format!(
                    "{}: must divide train.batch_size ({})",
                    self.wmse.w_size, self.train.batch_size
                ),
            );
        }
        self.scorecl.validate()?;
        if self.scorecl.apply == Apply::View
            && !matches!(self.method, Method::Simclr | Method::Simsiam)
        {
            return bad(
                "scorecl.apply",
                format!(
                    "`view` needs a loss with a term per view (simclr, simsiam); {} has one per pair",
                    self.method.name()
                ),
            );
        }
        Ok(())
    }

    /// The learning rate actually used at the peak: lr · batch_size / 256.
    pub fn scaled_lr(&self) -> f32 {
        self.optimizer.lr * self.train.batch_size as f32 / 256.0
    }
}
