//! The WGSL compute kernels of scorecl, one `.wgsl` file per family, shipped
//! as source strings. Each module is validated by naga in a plain unit test.
//!
//! No kernels have landed yet: the GPU runtime issue adds the first ones.

/// `(family name, WGSL source)` of every module the host ships.
pub const MODULES: &[(&str, &str)] = &[];
