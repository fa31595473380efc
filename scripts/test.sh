#!/usr/bin/env bash
# The project's test command (see README): every test of the workspace (the
# PyTorch reference check prints its per-kind error table; the GPU tests run
# on whatever adapter wgpu finds, lavapipe in CI), the training tests again
# on the GL backend (Mesa's llvmpipe through EGL: no subgroups, no f16, so
# every kernel takes its f32 fallback), and the no_std proof (a #![no_std]
# staticlib with its own panic handler that links scorecl-core).
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa's device-select layer prints a harmless XDG_RUNTIME_DIR warning.
export NODEVICE_SELECT=1

# The reference test (core/tests/reference.rs) prints its per-kind table.
cargo test --workspace --all-features
echo "== training tests on the GL backend =="
# Without a GL adapter these skip (and fail under CI=true, which installs one).
WGPU_BACKEND=gl cargo test --all-features --test train
echo "== no_std proof =="
cargo build --manifest-path core/no_std_check/Cargo.toml --target-dir target/no_std_check
echo "scorecl-core links into a #![no_std] staticlib: ok"
