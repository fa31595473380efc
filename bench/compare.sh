#!/usr/bin/env bash
# scorecl against PyTorch on the same machine, one after the other: the same
# configuration (model, method, batch, augmentations, ScoreCL off and on),
# images/s after warm-up, and the ratio scorecl / PyTorch.
#
#   bench/compare.sh [CONFIG] [BATCH] [STEPS] [OUT_JSON]
#   (defaults: configs/tiny-simclr.toml, its batch, 5, none)
#
# Needs: cargo, python3 with torch + torchvision (bench/pytorch/requirements.txt).
# SCORECL_BIN overrides the scorecl binary (default: built here in release).
# PYTORCH_MODES picks PyTorch's rows (default eager,amp; `eager` alone where
# the CPU has no bf16 units and autocast crawls).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-configs/tiny-simclr.toml}"
BATCH="${2:-}"
STEPS="${3:-5}"
OUT="${4:-}"
export NODEVICE_SELECT=1
if [ -z "${SCORECL_BIN:-}" ]; then
  cargo build -q --release --bin scorecl
  SCORECL_BIN=target/release/scorecl
fi
args=(--config "$CONFIG" --steps "$STEPS")
[ -n "$BATCH" ] && args+=(--batch-size "$BATCH")
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "== scorecl bench train ${args[*]} ==" >&2
"$SCORECL_BIN" bench train --json "${args[@]}" > "$tmp/scorecl.json"
echo "== PyTorch bench/pytorch/bench_train.py ${args[*]} ==" >&2
python3 bench/pytorch/bench_train.py --json --modes "${PYTORCH_MODES:-eager,amp}" "${args[@]}" \
  > "$tmp/pytorch.json"
python3 - "$tmp/scorecl.json" "$tmp/pytorch.json" "$CONFIG" "$OUT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = json.load(open(sys.argv[2]))
rows = []
print(f"config {sys.argv[3]}, batch {s['batch']}, width {s['width']}, {s['size']}x{s['size']}")
print(f"scorecl on {s['adapter_description']}")
print(f"PyTorch ({p['framework']}) on {p['device']}")
print(f"{'ScoreCL':<8} {'scorecl img/s':>14} {'torch eager':>12} {'torch amp':>10} {'ratio/eager':>12} {'ratio/amp':>10}")
for sc in ["off", "on"]:
    ours = s[f"{sc}_images_per_s"]
    by = {r["mode"]: r["images_per_s"] for r in p["results"] if r["scorecl"] == sc}
    e, a = by.get("eager"), by.get("amp")
    rows.append({"scorecl": sc, "scorecl_images_per_s": ours, "torch_eager": e, "torch_amp": a,
                 "ratio_eager": ours / e if e else None, "ratio_amp": ours / a if a else None})
    fmt = lambda v, f: format(v, f) if v is not None else "-"
    print(f"{sc:<8} {ours:>14.1f} {fmt(e, '12.1f')} {fmt(a, '10.1f')} "
          f"{fmt(rows[-1]['ratio_eager'], '12.3f')} {fmt(rows[-1]['ratio_amp'], '10.3f')}")
if sys.argv[4]:
    json.dump({"config": sys.argv[3], "scorecl": s, "pytorch": p, "ratios": rows}, open(sys.argv[4], "w"), indent=1)
PY
