#!/usr/bin/env bash
# The authors' SAR-JEPA pretraining beside ours (issue 23, item 3), at run.sh's budget and seeds.
#   usage: results/mstar-cpu/authors_run.sh AUTHORS_DIR WORK [ITERS_PER_STAGE] [STAGES]
# AUTHORS_DIR: their Pretraining/ folder (github waterdisappear/SAR-JEPA), kept outside this
# repository; WORK: run.sh's WORK (its pool and dataset root). Run from the repo root after run.sh.
set -euo pipefail
AUTHORS=${1:?AUTHORS_DIR}
WORK=${2:?WORK folder}
ITERS=${3:-60}
STAGES=${4:-4}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
last=$((STAGES - 1))
for s in 0 1; do
  out="$WORK/authors/seed$s"
  [ -f "$out/checkpoint-$last.pth" ] && continue
  $PY results/mstar-cpu/authors_pretrain.py "$AUTHORS" "$WORK/pool" "$out" "$s" "$ITERS" "$STAGES"
done
BACKBONE="MODEL.BACKBONE.EMBED_DIM 96 MODEL.BACKBONE.DEPTH 4 MODEL.BACKBONE.NUM_HEADS 4
  MODEL.BACKBONE.PATCH_SIZE 16 INPUT.SIZE (112,112) DATALOADER.TEST.BATCH_SIZE 128"
cks="$WORK/authors/seed0/checkpoint-$last.pth,$WORK/authors/seed1/checkpoint-$last.pth"
# the same cells as run.sh step 3, in the same run folders (their label: authors@1, authors@2)
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "authors=$cks" --datasets MSTAR_SOC --shots 10 20 40 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols logreg knn --root "$WORK/data" \
  --trainer-config vit_tiny_cpu --out "$WORK/grid_authors" --jobs 1 --force $BACKBONE
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "authors=$cks" --datasets MSTAR_EOC1 --shots 10 20 40 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols logreg knn --root "$WORK/data" \
  --trainer-config vit_tiny_cpu --out "$WORK/grid_authors_eoc1" --jobs 1 --force $BACKBONE
args=()
for e in $(seq 0 $last); do
  args+=("authors_n$(( (e + 1) * ITERS * 32 ))=$WORK/authors/seed0/checkpoint-$e.pth")
done
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols logreg --root "$WORK/data" \
  --trainer-config vit_tiny_cpu --out "$WORK/curve_authors" --jobs 1 --force $BACKBONE
