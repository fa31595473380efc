//! Layers and models built on the kernels in [`crate::ops`], with explicit
//! forward and backward passes: a forward keeps what its backward needs in a
//! workspace allocated once per input shape, a backward accumulates
//! parameter gradients into the [`ParamStore`].

pub mod checkpoint;
pub mod params;
pub mod resnet;

pub use params::{Counter, Param, ParamStore, State};
pub use resnet::{ResNet, ResNetConfig, ResNetWorkspace, Stem};
