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

use crate::error::{Error, GpuError};

/// What can stop a training run: the host's errors (device, file,
/// configuration), or a value that is not finite.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The device, a file or a configuration value.
    #[error(transparent)]
    Host(#[from] Error),
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
}

impl From<GpuError> for TrainError {
    fn from(e: GpuError) -> Self {
        TrainError::Host(e.into())
    }
}

impl From<ConfigError> for TrainError {
    fn from(e: ConfigError) -> Self {
        TrainError::Host(e.into())
    }
}

impl TrainError {
    /// A checkpoint or run-directory file is missing or inconsistent.
    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Self {
        TrainError::Host(Error::file(path, message))
    }
}

/// Result of training functions.
pub type TrainResult<T> = std::result::Result<T, TrainError>;
