//! Layers and models built on the kernels in [`crate::ops`], with explicit
//! forward and backward passes: a forward keeps what its backward needs in a
//! workspace allocated once per input shape, a backward accumulates
//! parameter gradients into the [`ParamStore`].

pub mod checkpoint;
pub mod encoder;
pub mod layers;
pub mod mlp;
pub mod params;
pub mod resnet;
pub mod score;

pub use encoder::{Encoder, EncoderWorkspace};
pub use layers::{BatchNorm, BnSaved, Conv2d, ConvInit, InitRng, Linear};
pub use mlp::{Mlp, MlpLayer, MlpWorkspace};
pub use params::{Counter, Param, ParamStore, State};
pub use resnet::{BlockKind, ResNet, ResNetConfig, Stem};
pub use score::{ScoreConfig, ScoreNet, ScoreWorkspace};
