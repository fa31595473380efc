//! # scorecl-core
//!
//! The single source of truth for the maths of ScoreCL
//! (Kim et al., "ScoreCL: Augmentation-Adaptive Contrastive Learning via
//! Score-Matching Function", arXiv 2306.04175). Every GPU kernel of the
//! project is tested against the functions here.
//!
//! * `#![no_std]`, no allocation: callers pass output and scratch slices,
//!   whose required lengths are given by the `*_scratch_len` functions.
//! * f32 row-major slices in, values and exact analytic gradients out.
//!   Reductions accumulate in f64 so the core is a tighter reference than
//!   the f32 kernels it checks.
//! * Optional `serde` feature: Serialize/Deserialize on the config structs.
//!
//! | item | module |
//! | --- | --- |
//! | weighted NT-Xent (SimCLR) | [`simclr`] |
//! | weighted SimSiam | [`simsiam`] |
//! | weighted W-MSE with whitening and its exact gradient | [`wmse`] |
//! | weighted VICReg | [`vicreg`] |
//! | denoising score matching and the σ schedule | [`dsm`] |
//! | ScoreCL pair weights (score, uniform, shuffled) | [`weights`] |
//! | weighted k-NN vote | [`knn`] |
//! | softmax cross-entropy (linear probe), top-k accuracy | [`xent`] |
//! | average ranks, Spearman's rank correlation | [`stats`] |
//! | SGD, LARS, Adam, AdamW, warm-up + cosine | [`optim`] |
//! | Philox4x32-10 counter-based RNG | [`rng`] |
//! | augmentation parameters (torchvision semantics) | [`augment`] |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Index loops mirror the formulas and the WGSL kernels written from them.
#![allow(clippy::needless_range_loop)]

pub mod augment;
pub mod dsm;
mod error;
pub mod knn;
mod math;
pub mod optim;
pub mod rng;
pub mod simclr;
pub mod simsiam;
pub mod stats;
pub mod vicreg;
pub mod weights;
pub mod wmse;
pub mod xent;

pub use error::{CoreError, Result};
pub use math::{normalize_backward, relu, relu_passes, GradPair, Views, NORM_EPS};
