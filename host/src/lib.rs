//! # scorecl-host
//!
//! The wgpu host of scorecl: the [`Gpu`] context, [`Tensor`]s, cached
//! [`Kernel`]s, [`Step`]s that submit once, and the operations built on the
//! WGSL kernels of `scorecl-shaders` (module [`ops`]). Every operation has a
//! CPU twin (the core, or a reference in `ops`) and a test in `host/tests/`
//! that compares the two on whatever adapter is present.

pub mod bench;
pub mod cli;
pub mod data;
pub mod dist;
pub mod doctor;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod kernel;
pub mod native;
pub mod nn;
pub mod ops;
pub mod plot;
pub mod score_probe;
pub mod step;
pub mod tensor;
pub mod train;

pub use error::{ConfigError, Error, GpuError, Result};
pub use gpu::{AdapterClass, Caps, Gpu, GpuOptions};
pub use kernel::Kernel;
pub use scorecl_core as core;
pub use scorecl_shaders as shaders;
pub use step::{grid, Readbacks, Step};
pub use tensor::{DType, MemoryStats, Tensor};
pub use wgpu;
