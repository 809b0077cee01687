#!/usr/bin/env bash
# The authors' SAR-JEPA pretraining beside ours (issue 23, item 3), at run.sh's budget and seeds.
#   usage: results/mstar-cpu/authors_run.sh AUTHORS_DIR WORK [ITERS_PER_STAGE] [STAGES]
# AUTHORS_DIR: their Pretraining/ folder (github waterdisappear/SAR-JEPA), kept outside this
# repository; WORK: run.sh's WORK (its pool and dataset root). Run from the repo root after run.sh.
# Environment as run.sh: JOBS (default 2: both seeds at once, one core each), SPLIT_SEEDS
# (default 0-4), STEPS (default "2 3 4": pretraining, grids, learning curve).
set -euo pipefail
AUTHORS=${1:?AUTHORS_DIR}
WORK=${2:?WORK folder}
ITERS=${3:-422}
STAGES=${4:-4}
STEPS=${STEPS:-2 3 4}
source "$(dirname "$0")/_env.sh"
last=$((STAGES - 1))
authors_one() {  # SEED
  local out="$WORK/authors/seed$1"
  [ -f "$out/checkpoint-$last.pth" ] && return 0
  /usr/bin/time -f "authors seed$1: %e s wall, %U s user" -a -o "$WORK/pretrain_times.txt" \
    $PY results/mstar-cpu/authors_pretrain.py "$AUTHORS" "$WORK/pool" "$out" "$1" "$ITERS" \
    "$STAGES" > "$WORK/authors_$1.log" 2>&1
}
export -f authors_one
export AUTHORS WORK PY ITERS STAGES last
step 2 && printf '%s\n' 0 1 | xargs -P "$JOBS" -I{} bash -c 'authors_one {}'
step 3 || step 4 || exit 0
cks="$WORK/authors/seed0/checkpoint-$last.pth,$WORK/authors/seed1/checkpoint-$last.pth"
if step 3; then
# the same cells as run.sh step 3, in the same run folders (their label: authors@1, authors@2)
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "authors=$cks" --datasets MSTAR_SOC --shots 10 20 40 \
  --seeds $SPLIT_SEEDS --protocols logreg knn --data "$WORK/data" \
  --config vit_tiny_cpu --out "$WORK/grid_authors" --jobs "$JOBS" --force $BACKBONE
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "authors=$cks" --datasets MSTAR_EOC1 --shots 10 20 40 \
  --seeds $SPLIT_SEEDS --protocols logreg knn --data "$WORK/data" \
  --config vit_tiny_cpu --out "$WORK/grid_authors_eoc1" --jobs "$JOBS" --force $BACKBONE
fi
step 4 || exit 0
args=()
for e in $(seq 0 $last); do
  args+=("authors_n$(( (e + 1) * ITERS * 32 ))=$WORK/authors/seed0/checkpoint-$e.pth")
done
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
  --seeds $SPLIT_SEEDS --protocols logreg --data "$WORK/data" \
  --config vit_tiny_cpu --out "$WORK/curve_authors" --jobs "$JOBS" --force $BACKBONE
