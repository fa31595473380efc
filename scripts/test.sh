#!/usr/bin/env bash
# The project's test command (see README): every test of the workspace, the
# PyTorch reference check with its per-kind error table, and the no_std proof
# (a #![no_std] staticlib with its own panic handler that links scorecl-core).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-features
echo "== reference cases (tests/fixtures, made by tests/reference/generate.py) =="
cargo test -q -p scorecl-core --all-features --test reference -- --nocapture --test-threads=1
echo "== no_std proof =="
cargo build --manifest-path core/no_std_check/Cargo.toml --target-dir target/no_std_check
echo "scorecl-core links into a #![no_std] staticlib: ok"
