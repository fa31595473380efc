//! Operations on GPU tensors, one module per WGSL family. Each records
//! dispatches into a [`Step`](crate::Step); the CPU twin of each is named
//! in its module documentation.

pub mod elementwise;
pub mod gemm;
