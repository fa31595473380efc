//! The wgpu host of scorecl. The GPU runtime lands with the runtime issue;
//! for now this crate only re-exports the core it will be tested against.

pub use scorecl_core as core;
pub use scorecl_shaders as shaders;
