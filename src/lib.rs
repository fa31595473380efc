//! The root package of the scorecl workspace: its `tests/` hold the
//! end-to-end tests and its `examples/` the runnable examples.

pub use scorecl_core as core;
pub use scorecl_host as host;
