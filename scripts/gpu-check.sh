#!/usr/bin/env bash
# The GPU check for a lent GPU machine (DEVELOPERS.md, issue 8): one script,
# under 8 minutes there. The machine has no Rust toolchain and no network,
# so it runs in two halves:
#
#   scripts/gpu-check.sh prepare   # here: release build of the CLI and of
#                                  # every test binary, bundled into .gpu/
#                                  # (git-excluded), plus the Vulkan/EGL
#                                  # loader packages into .gl/
#   scripts/gpu-check.sh run       # there, via the device tool, with
#                                  # carry [".gpu", ".gl"]: see below
#
# `run` installs the loaders, points the Vulkan loader at the NVIDIA ICD,
# runs `scorecl doctor`, every test binary of the workspace on the GPU
# (CI=true: no skipping), `scorecl bench gemm` up to 4096² and `scorecl
# bench train` (configs/cifar-simclr.toml: ResNet-18 CIFAR stem,
# SimCLR + ScoreCL, batch 256) beside PyTorch's eager fp32 and
# channels_last + AMP (bench/pytorch/), and writes $OUT/summary.md plus the
# JSON reports; then the same training step with f16 storage and with
# every GEMM on gemm_wide (SCORECL_GEMM=wide), and, where the adapter has
# them, the cooperative-matrix GEMM (SCORECL_COOP_MATRIX=1). Device command:
#   scripts/gpu-check.sh run 2>&1 | tee $OUT/log.txt
# Put the figures in docs/PERFORMANCE.md with the date, adapter and command.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-}"
# Overrides for a dry run on a CPU driver: GPU_CHECK_CONFIG, GPU_CHECK_BATCH,
# GPU_CHECK_STEPS, GPU_CHECK_TESTS (a glob over test binary names),
# GPU_CHECK_NO_LOADERS=1 (keep the machine's own Vulkan loader).
CONFIG="${GPU_CHECK_CONFIG:-configs/cifar-simclr.toml}"
BATCH="${GPU_CHECK_BATCH:-256}"
STEPS="${GPU_CHECK_STEPS:-10}"

prepare() {
  set -e
  rm -rf .gpu && mkdir -p .gpu/bin
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >> .git/info/exclude
  cargo build --release --bin scorecl
  cp target/release/scorecl .gpu/bin/
  # Every test binary of the GPU packages (scorecl-host and the root
  # package; the core, shader and C ABI tests need no GPU), by target name.
  # Every feature but mpi: the GPU machine has no MPI library for the test
  # binaries to load (the data-parallel code is still tested there, with
  # ranks as threads: tests/dist.rs, host/tests/dist.rs).
  cargo test --release --workspace --features scorecl-core/serde,scorecl-host/reference \
    --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        pkg = m["package_id"].split("#")[0].rsplit("/", 1)[-1].split("@")[0]
        kind, name = t["kind"][0], t["name"]
        if pkg not in ("host", "main"):
            continue
        shutil.copy(m["executable"], ".gpu/bin/test." + pkg + "." + kind + "." + name)
'
  strip .gpu/bin/*
  tar -C .gpu -cJf .gpu/bundle.tar.xz bin
  rm -rf .gpu/bin
  du -h .gpu/bundle.tar.xz
  if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update -q >/dev/null
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  echo "ready: device run with carry [\".gpu\", \".gl\"], command: scripts/gpu-check.sh run 2>&1 | tee \$OUT/log.txt"
}

run() {
  OUT="${OUT:-/tmp/gpu-check-out}"
  mkdir -p "$OUT"
  local t0=$SECONDS
  if [ -z "${GPU_CHECK_NO_LOADERS:-}" ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  # Test binaries carry this checkout's absolute path (fixtures, presets).
  if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$PWD" /work/main; fi
  rm -rf .gpu/bin && tar -C .gpu -xJf .gpu/bundle.tar.xz
  # Where the CLI tests look for the binary (CARGO_BIN_EXE_scorecl).
  mkdir -p target/release
  cp .gpu/bin/scorecl target/release/
  local B=.gpu/bin S=.gpu/bin/scorecl
  export CI=true NODEVICE_SELECT=1 PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1 || true
  echo "== doctor ==" ; timeout 60 "$S" doctor | tee "$OUT/doctor.txt"
  echo "== tests on the GPU =="
  local pass=0 fail=0 failed=""
  for t in "$B"/test.${GPU_CHECK_TESTS:-*}; do
    if timeout 120 "$t" --test-threads 4 > "$OUT/$(basename "$t").log" 2>&1; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1)); failed="$failed $(basename "$t")"
    fi
    echo "$(basename "$t"): $(grep -E '^test result' "$OUT/$(basename "$t").log" | tail -1)"
  done
  echo "== bench gemm =="
  timeout 120 "$S" bench gemm --max 4096 --seconds 1 --json > "$OUT/scorecl-gemm.json"
  timeout 120 "$S" bench gemm --kernel wide --max 4096 --seconds 1 --only square --json \
    > "$OUT/scorecl-gemm-wide.json" || true
  timeout 60 python3 bench/pytorch/bench_gemm.py --sizes 1024,2048,4096 --json > "$OUT/torch-gemm.json"
  echo "== bench train ($CONFIG, batch $BATCH) =="
  SCORECL_BIN="$PWD/$S" timeout 180 bench/compare.sh "$CONFIG" "$BATCH" "$STEPS" \
    "$OUT/train-compare.json" > "$OUT/train-compare.txt" 2>&1 || true
  cat "$OUT/train-compare.txt"
  echo "== f16 storage and cooperative matrices =="
  timeout 120 "$S" bench train --config "$CONFIG" --batch-size "$BATCH" --steps "$STEPS" \
    --precision f16 --json > "$OUT/scorecl-train-f16.json" || true
  SCORECL_GEMM=wide timeout 120 "$S" bench train --config "$CONFIG" --batch-size "$BATCH" \
    --steps "$STEPS" --json > "$OUT/scorecl-train-wide.json" || true
  SCORECL_COOP_MATRIX=1 timeout 60 "$S" doctor > "$OUT/doctor-coop.txt" 2>&1 || true
  if grep -q "cooperative matrix 8" "$OUT/doctor-coop.txt" || grep -q "cooperative matrix 16" "$OUT/doctor-coop.txt"; then
    SCORECL_COOP_MATRIX=1 timeout 90 "$(ls "$B"/test.*.gemm | head -1)" > "$OUT/test.gemm.coop.log" 2>&1 || echo "coop GEMM tests FAILED"
    SCORECL_COOP_MATRIX=1 timeout 90 "$S" bench gemm --kernel coop --max 4096 --seconds 1 --json \
      > "$OUT/scorecl-gemm-coop.json" || true
  fi
  python3 - "$OUT" "$pass" "$fail" "$failed" "$((SECONDS - t0))" <<'PY'
import json, os, sys
out, npass, nfail, failed, secs = sys.argv[1:6]
lines = ["# GPU check", ""]
try:
    lines.append("GPU: " + open(os.path.join(out, "nvidia-smi.txt")).read().strip())
except OSError:
    pass
lines.append(f"Test binaries: {npass} passed, {nfail} failed{': ' + failed if failed.strip() else ''}")
try:
    g = json.load(open(os.path.join(out, "scorecl-gemm.json")))
    t = json.load(open(os.path.join(out, "torch-gemm.json")))
    ours = {r["shape"]: r for r in g["gemm"]}
    try:
        wide = {r["shape"]: r for r in json.load(open(os.path.join(out, "scorecl-gemm-wide.json")))["gemm"]}
    except (OSError, ValueError, KeyError):
        wide = {}
    lines += ["", f"GEMM, scorecl on {g.get('adapter', '?')} vs {t['framework']} fp32 (TF32 off):", "",
              "| size | scorecl auto GFLOP/s | scorecl wide GFLOP/s | torch GFLOP/s | ratio auto | ratio wide |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in t["results"]:
        o = ours.get(f"square {r['size']}")
        w = wide.get(f"square {r['size']}")
        if o:
            wg = f"{w['gflops']:.0f}" if w else "-"
            wr = f"{w['gflops'] / r['gflops']:.3f}" if w else "-"
            lines.append(f"| {r['size']} | {o['gflops']:.0f} | {wg} | {r['gflops']:.0f} | {o['gflops'] / r['gflops']:.3f} | {wr} |")
except (OSError, ValueError, KeyError) as e:
    lines.append(f"GEMM comparison unavailable: {e}")
try:
    c = json.load(open(os.path.join(out, "train-compare.json")))
    lines += ["", f"Training step ({c['config']}, batch {c['scorecl']['batch']}):", "",
              "| ScoreCL | scorecl img/s | torch eager | torch AMP | ratio / eager | ratio / AMP |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in c["ratios"]:
        lines.append(f"| {r['scorecl']} | {r['scorecl_images_per_s']:.1f} | {r['torch_eager']:.1f} | "
                     f"{r['torch_amp']:.1f} | {r['ratio_eager']:.3f} | {r['ratio_amp']:.3f} |")
    lines.append(f"\nscorecl peak memory: off {c['scorecl']['off_peak_memory_bytes'] / 2**20:.0f} MiB, "
                 f"on {c['scorecl']['on_peak_memory_bytes'] / 2**20:.0f} MiB")
except (OSError, ValueError, KeyError) as e:
    lines.append(f"training comparison unavailable: {e}")
try:
    h = json.load(open(os.path.join(out, "scorecl-train-f16.json")))
    lines.append(f"\ntrain.precision = f16 ({h['precision']} in effect): off {h['off_images_per_s']:.1f} img/s, "
                 f"on {h['on_images_per_s']:.1f} img/s; peak memory off {h['off_peak_memory_bytes'] / 2**20:.0f} MiB, "
                 f"on {h['on_peak_memory_bytes'] / 2**20:.0f} MiB")
except (OSError, ValueError, KeyError) as e:
    lines.append(f"f16 training bench unavailable: {e}")
try:
    h = json.load(open(os.path.join(out, "scorecl-train-wide.json")))
    lines.append(f"\nSCORECL_GEMM=wide (every GEMM on gemm_wide where it applies): off {h['off_images_per_s']:.1f} img/s, "
                 f"on {h['on_images_per_s']:.1f} img/s")
except (OSError, ValueError, KeyError) as e:
    lines.append(f"wide-GEMM training bench unavailable: {e}")
try:
    doc = open(os.path.join(out, "doctor-coop.txt")).read()
    lines.append("\nWith SCORECL_COOP_MATRIX=1: " + ("; ".join(l.strip() for l in doc.splitlines()
                 if "cooperative" in l or l.strip().startswith(("ok", "FAIL")))[:1500]))
    g = json.load(open(os.path.join(out, "scorecl-gemm-coop.json")))
    lines.append("coop GEMM GFLOP/s: " + ", ".join(f"{r['shape']} {r['gflops']:.0f}" for r in g["gemm"]))
except (OSError, ValueError, KeyError) as e:
    lines.append(f"cooperative matrices: not available ({e})")
lines.append(f"\n{secs} s in all.")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
}

case "$MODE" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
