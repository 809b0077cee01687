#!/usr/bin/env bash
# Upstream MAE (github facebookresearch/mae) beside ours (issue 23, item 3), at run.sh's budget
# and seeds: pretraining by mae_upstream_pretrain.py (mae_upstream.md), probed by our harness.
#   usage: results/mstar-cpu/mae_upstream_run.sh MAE_DIR WORK [EPOCHS]
# MAE_DIR: their checkout, kept outside this repository; WORK: run.sh's WORK (its pool and
# dataset root). Run from the repo root after run.sh. Environment as run.sh: JOBS (default 2),
# SPLIT_SEEDS (default 0-4), STEPS (default "2 3 4": pretraining, grids, learning curve).
set -euo pipefail
MAE=${1:?MAE_DIR}
WORK=${2:?WORK folder}
EPOCHS=${3:-4}
STEPS=${STEPS:-2 3 4}
source "$(dirname "$0")/_env.sh"
last=$((EPOCHS - 1))
mae_one() {  # SEED
  local out="$WORK/mae_upstream/seed$1"
  [ -f "$out/checkpoint-$last.pth" ] && return 0
  /usr/bin/time -f "mae_upstream seed$1: %e s wall, %U s user" -a -o "$WORK/pretrain_times.txt" \
    $PY results/mstar-cpu/mae_upstream_pretrain.py "$MAE" "$WORK/pool" "$out" "$1" "$EPOCHS" \
    > "$WORK/mae_upstream_$1.log" 2>&1
}
export -f mae_one
export MAE WORK PY EPOCHS last
step 2 && printf '%s\n' 0 1 | xargs -P "$JOBS" -I{} bash -c 'mae_one {}'
cks="$WORK/mae_upstream/seed0/checkpoint-$last.pth,$WORK/mae_upstream/seed1/checkpoint-$last.pth"
if step 3; then  # run.sh's step 3 cells, label mae_upstream (mae_upstream@1, @2)
  for ds in MSTAR_SOC MSTAR_EOC1; do
    # shellcheck disable=SC2086
    $PY -m sarjepa grid --methods "mae_upstream=$cks" --datasets $ds --shots 10 20 40 \
      --seeds $SPLIT_SEEDS --protocols logreg knn --data "$WORK/data" --config vit_tiny_cpu \
      --out "$WORK/grid_mae_upstream_$ds" --jobs "$JOBS" --force $BACKBONE
  done
fi
step 4 || exit 0
args=()
n=$(python -c "print(13520 // 32 * 32)")   # samples per epoch: full passes, drop_last
for e in $(seq 0 $last); do
  args+=("mae_upstream_n$(( (e + 1) * n ))=$WORK/mae_upstream/seed0/checkpoint-$e.pth")
done
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
  --seeds $SPLIT_SEEDS --protocols logreg --data "$WORK/data" \
  --config vit_tiny_cpu --out "$WORK/curve_mae_upstream" --jobs "$JOBS" --force $BACKBONE
