#!/usr/bin/env bash
# The project's test command (see README): every test of the workspace (the
# PyTorch reference check prints its per-kind error table; the GPU tests run
# on whatever adapter wgpu finds, lavapipe in CI), the training tests again
# on the GL backend (Mesa's llvmpipe through EGL: no subgroups, no f16, so
# every kernel takes its f32 fallback), the no_std proof (a #![no_std]
# staticlib with its own panic handler that links scorecl-core), the
# core-only example with no wgpu in its dependency tree, and scorecl-core
# built for wasm32-unknown-unknown where that target is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa's device-select layer prints a harmless XDG_RUNTIME_DIR warning.
export NODEVICE_SELECT=1

# Device passes a test binary could not open (no wgpu adapter, outside CI)
# are noted here by host/tests/common and counted at the end.
skipped_dir=target/tmp/skipped
rm -rf "$skipped_dir"

# Every feature, the mpi one (data-parallel training, tests/mpi.rs under
# `mpirun -n 2`) included where an MPI library and libclang are installed
# (Debian: openmpi-bin libopenmpi-dev libclang-dev; .ci/run installs them);
# elsewhere every other feature, and the end says what was left out.
mpi_missing=""
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null \
  || ! ldconfig -p 2>/dev/null | grep -q 'libclang'; then
  mpi_missing="no MPI library or libclang (apt install openmpi-bin libopenmpi-dev libclang-dev)"
fi
if [ -z "$mpi_missing" ]; then
  features=(--all-features)
elif [ -n "${CI:-}" ]; then
  echo "error: CI runs the mpi feature's tests, but there is $mpi_missing" >&2
  exit 1
else
  features=(--features scorecl-core/serde,scorecl-host/reference)
fi

# The C ABI test (capi/tests/python.rs) loads the shared library from
# Python: `cargo test` builds only its rlib, so build the cdylib first.
cargo build -q -p scorecl-capi
# The reference test (core/tests/reference.rs) prints its per-kind table.
cargo test --workspace "${features[@]}"
echo "== training tests on the GL backend =="
# Without a GL adapter these skip (and fail under CI=true, which installs one).
# --workspace keeps the first run's feature set, so nothing is rebuilt.
# Every method trains, f16 falls back, resume is exact and the backend is
# the one asked for, all through GLSL on llvmpipe; the device-independent
# tests (checkpoint damage, guards, sizes, allocation) ran above already.
WGPU_BACKEND=gl cargo test --workspace "${features[@]}" --test train -- \
  trains_with_and_without_scorecl f16_storage resume_matches_an_uninterrupted_run_lars \
  runs_on_the_backend
echo "== kernel tests on the GL backend =="
# Every kernel family's test through GLSL (about 30 s): naga writes some
# WGSL as GLSL whose meaning differs (`%` on a negative integer is
# undefined in GLSL; the blur's edge reflection was wrong on llvmpipe until
# these ran here).
kernel_tests=()
for t in augment batchnorm budgets conv conv_bn_fd dsm elementwise eval_view gemm knn linear \
  linear_probe models nonfinite optim pool reduce resnet_reference rng rows score_probe step_reference unet dist \
  simclr simsiam vicreg pair_weights wmse; do
  kernel_tests+=(--test "$t")
done
WGPU_BACKEND=gl cargo test --workspace "${features[@]}" "${kernel_tests[@]}"
echo "== no_std proof =="
cargo build --manifest-path core/no_std_check/Cargo.toml --target-dir target/no_std_check
echo "scorecl-core links into a #![no_std] staticlib: ok"
echo "== the core without wgpu =="
for p in scorecl-core-example scorecl-capi; do
  if cargo tree -q -p "$p" -e normal --prefix none | grep -E '^(wgpu|naga|scorecl-host) '; then
    echo "error: $p depends on the GPU stack" >&2
    exit 1
  fi
done
cargo run -q --release -p scorecl-core-example
echo "scorecl-core-example and scorecl-capi: no wgpu in their dependency trees: ok"
echo "== wasm32 =="
if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  cargo build -q -p scorecl-core --all-features --target wasm32-unknown-unknown --target-dir target/wasm
  echo "scorecl-core builds for wasm32-unknown-unknown: ok"
elif [ -n "${CI:-}" ]; then
  echo "SKIPPED under CI: the wasm32-unknown-unknown target could not be installed"
else
  echo "SKIPPED: rustup target add wasm32-unknown-unknown to check it"
fi
if [ -n "$mpi_missing" ]; then
  echo "SKIPPED: the mpi feature and its tests (tests/mpi.rs): $mpi_missing"
fi
echo "== skipped device passes =="
if [ -d "$skipped_dir" ] && [ -n "$(ls -A "$skipped_dir")" ]; then
  echo "SKIPPED: $(ls "$skipped_dir" | wc -l) device passes had no wgpu adapter (the CPU-device passes ran):"
  cat "$skipped_dir"/* | sed 's/^/  /'
else
  echo "none: every test binary found the devices it asked for"
fi
