#!/usr/bin/env bash
# Issue 17, part 3: the choices behind ScoreCL's weights, one factor at a
# time from the main job's ScoreCL (configs/default.toml: SimCLR, `norm`
# statistic at σ_ref = 0.01, `power` transform, pair weights, α 0.5, one
# warm-up epoch), each variant `on` × SEEDS against the same `off` runs
# (shared, trained once), at the main job's budget on the validation split.
# Every variant's own compare.md/compare.json (k-NN, paired on − off with
# its 95 % interval, the score network's DSM loss per level) is written by
# `scorecl compare`; the summary table at the end is read from those files.
#
#   scripts/sweep-weights.sh                 # seeds 0,1,2 into runs/sweep
#   SEEDS=0,1,2,3,4 OUT=runs/sweep5 scripts/sweep-weights.sh
#   BIN=path/to/scorecl  (default target/release/scorecl, built first)
#   VARIANTS="per-view rank" scripts/sweep-weights.sh   # only these (names below)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/sweep}
SEEDS=${SEEDS:-0,1,2}
CONFIG=${CONFIG:-configs/default.toml}
if [ -z "${BIN:-}" ]; then
    cargo build --release -q --bin scorecl
    BIN=target/release/scorecl
fi
# Four levels of the default schedule σ_k = (0.01)^(k/9): k = 0, 2, 4, 6,
# spread over its upper two-thirds (σ_ref = σ_min is k = 9).
LEVELS="[1.0,0.3594,0.1292,0.04642]"
variants=(
    "default|"
    "sigma_ref-0.1|scorecl.sigma_ref=0.1"
    "norm-4-levels|scorecl.stat_sigmas=$LEVELS"
    "sigma_norm-4-levels|scorecl.statistic=sigma_norm scorecl.stat_sigmas=$LEVELS"
    "dsm-4-levels|scorecl.statistic=dsm scorecl.stat_sigmas=$LEVELS"
    "rank|scorecl.transform=rank"
    "softmax-T1|scorecl.transform=softmax scorecl.temperature=1.0"
    "minmax-0.5-1.5|scorecl.transform=minmax scorecl.w_min=0.5 scorecl.w_max=1.5"
    "per-view|scorecl.apply=view"
    "score-init-30|scorecl.score_init=$OUT/score-alone-30 scorecl.score_warmup_epochs=0"
)
if [ -n "${VARIANTS:-}" ]; then
    picked=()
    for v in "${variants[@]}"; do
        for want in $VARIANTS; do
            [ "${v%%|*}" = "$want" ] && picked+=("$v")
        done
    done
    [ ${#picked[@]} -gt 0 ] || { echo "VARIANTS=$VARIANTS names none of: ${variants[*]%%|*}" >&2; exit 2; }
    variants=("${picked[@]}")
fi
mkdir -p "$OUT"
# A score network trained first, alone (30 epochs of DSM on the training
# images), for the last variant: it starts from it and weights from step 0.
if [[ " ${variants[*]} " == *score-init-30* ]] && [ ! -f "$OUT/score-alone-30/score.safetensors" ]; then
    "$BIN" probe --train-score-epochs 30 --config "$CONFIG" --images 128 --out "$OUT/score-alone-30"
fi
"$BIN" compare --config "$CONFIG" --methods simclr --weightings off --seeds "$SEEDS" \
    --out "$OUT/off" --quiet
for v in "${variants[@]}"; do
    name=${v%%|*}
    sets=()
    for s in ${v#*|}; do sets+=(--set "$s"); done
    mkdir -p "$OUT/$name"
    for seed in ${SEEDS//,/ }; do
        ln -sfn "../off/simclr-off-$seed" "$OUT/$name/simclr-off-$seed"
    done
    echo "== $name: ${v#*|}"
    "$BIN" compare --config "$CONFIG" --methods simclr --weightings off,on --seeds "$SEEDS" \
        --out "$OUT/$name" --quiet "${sets[@]}" | grep -E "seed|Δ|on \|" || true
done
{
    echo "| variant | overrides | k-NN on (%) | on − off: mean [95 % CI] (pairs) | DSM ÷ ½·D at σ_max … σ_min (on) |"
    echo "| --- | --- | ---: | ---: | --- |"
    for v in "${variants[@]}"; do
        name=${v%%|*}
        jq -r --arg name "$name" --arg sets "${v#*|}" '
            (.cells[] | select(.weighting == "on")) as $c
            | ([.runs[] | select(.weighting == "on" and .dsm != null) | .dsm] ) as $d
            | (if ($d | length) > 0 then
                  [range(0; $d[0].loss | length) as $k
                   | ([$d[] | .loss[$k] / .zero] | add / length * 1000 | round / 1000 | tostring)]
                  | join(" ")
               else "—" end) as $dsm
            | "| \($name) | \(if $sets == "" then "—" else "`\($sets)`" end) | \($c.mean * 100 | round / 100) ± \($c.std * 100 | round / 100) | \($c.vs_off.mean * 100 | round / 100) [\($c.vs_off.lo * 100 | round / 100), \($c.vs_off.hi * 100 | round / 100)] (\($c.vs_off.n)) | \($dsm) |"
        ' "$OUT/$name/compare.json"
    done
} | tee "$OUT/sweep.md"
