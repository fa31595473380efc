//! Training: configuration ([`config`]),
//! the ScoreCL trainer ([`trainer`]) and its run directory with
//! checkpoints and metrics ([`run`]).

pub mod compare;
pub mod config;
pub mod fits;
pub(crate) mod methods;
pub mod run;
pub mod score_only;
pub mod score_part;
pub mod trainer;

pub use crate::data::Dataset;
pub use config::{
    Arch, Choice, ConfigError, Method, NormalizeKind, OptimizerName, StemKind, TrainConfig,
};
pub use run::{run_training, RunDir, RunOptions, RunSummary};
pub use trainer::{GivenInputs, StepReport, TrainState, Trainer};

use crate::error::GpuError;

/// What can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The GPU side failed (kernel, memory, device, file).
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A loss term became NaN or infinite.
    #[error(
        "step {step} (epoch {epoch}): the {term} is not finite ({value}); the run stopped and \
         the last good checkpoint is kept"
    )]
    NonFinite {
        /// Global step (0-based).
        step: u64,
        /// Epoch (0-based).
        epoch: u64,
        /// Which term (`simclr loss`, `DSM loss`, `pair weights`).
        term: String,
        /// The value read back.
        value: f32,
    },
    /// The optimizer's guard found a NaN or ±inf in a tensor's gradient,
    /// updated value or moments.
    #[error(
        "step {step} (epoch {epoch}): `{tensor}` has a non-finite {what}; the run stopped and \
         the last good checkpoint is kept"
    )]
    NonFiniteTensor {
        /// Global step (0-based).
        step: u64,
        /// Epoch (0-based).
        epoch: u64,
        /// The tensor (`backbone.layer4.1.conv2.weight`).
        tensor: String,
        /// What was not finite (`gradient, updated value`).
        what: String,
    },
    /// A checkpoint or run-directory file is missing or inconsistent.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file or folder.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl TrainError {
    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// Result of training functions.
pub type TrainResult<T> = std::result::Result<T, TrainError>;
