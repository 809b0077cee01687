#!/usr/bin/env bash
# The paper's comparison at CPU scale on the public MSTAR release (issue 23, item 2).
#   usage: results/mstar-cpu/run.sh RELEASE WORK [ITERS_PER_STAGE] [STAGES]
# RELEASE: the folder `sarjepa prepare mstar --src` reads; WORK: an output folder outside the
# repo. Every stage is skipped when its output exists, so a rerun resumes. Run from the repo root.
# Threads: one core per job (OMP_NUM_THREADS=1); set PY to another interpreter if needed.
set -euo pipefail
RELEASE=${1:?RELEASE folder}
WORK=${2:?WORK folder}
ITERS=${3:-20}    # iterations of batch 32 per pretraining stage (TRAIN.MAX_ITERS)
STAGES=${4:-4}    # stages (TRAIN.EPOCHS); a checkpoint after each: the learning curve
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
METHODS="sarjepa sarjepa_pixel mae lomar fgmae maskfeat ijepa"
# pretraining runs METHOD:SEED, in this order (the paper's ablation and MAE first); override RUNS
# to run fewer. The grid takes every finished run.
RUNS=${RUNS:-"sarjepa:0 sarjepa:1 sarjepa_pixel:0 sarjepa_pixel:1 mae:0 mae:1 lomar:0 fgmae:0
  maskfeat:0 ijepa:0 lomar:1 fgmae:1 maskfeat:1 ijepa:1"}

# 1. layouts, and a pool without the SOC test set (prepare --pool), then without EOC-1's either
if [ ! -d "$WORK/data/MSTAR_SOC" ]; then
  $PY -m sarjepa prepare mstar --src "$RELEASE" --out "$WORK/data" --protocol soc eoc1 \
    --pool "$WORK/pool_soc"
fi
if [ ! -d "$WORK/pool" ]; then
  $PY -m sarjepa pool-check --data "$WORK/pool_soc" --root "$WORK/data" --dataset MSTAR_EOC1 \
    --no-progress > "$WORK/eoc1_overlap.txt" || true
  sed -n 's/: MSTAR_EOC1\/TEST\/.*//p' "$WORK/eoc1_overlap.txt" | sort > "$WORK/excluded.txt"
  (cd "$WORK/pool_soc" && find . -type f ! -name manifest.json | sed 's#^\./##' | sort) \
    | comm -23 - <(sed "s#^$WORK/pool_soc/##" "$WORK/excluded.txt") > "$WORK/kept.txt"
  while read -r f; do
    mkdir -p "$WORK/pool/$(dirname "$f")" && ln "$WORK/pool_soc/$f" "$WORK/pool/$f"
  done < "$WORK/kept.txt"
fi
$PY -m sarjepa pool-check --data "$WORK/pool" --root "$WORK/data" \
  --dataset MSTAR_SOC MSTAR_EOC1 --no-progress   # exit status 1 (and stop) on any overlap

# 2. pretraining: one budget for all (the demo's micro ViT 96 x 4 at 112 px, batch 32, base lr
#    5e-3, 1 warm-up stage; each method's own tiny config for masking and target)
SHARED="MODEL.EMBED_DIM 96 MODEL.DEPTH 4 MODEL.NUM_HEADS 4 MODEL.PATCH_SIZE 16 INPUT.SIZE 112
  TRAIN.WARMUP_EPOCHS 1 TRAIN.BATCH_SIZE 32 TRAIN.BLR 0.005 TRAIN.EPOCHS $STAGES
  TRAIN.MAX_ITERS $ITERS TRAIN.SAVE_FREQ 1 DATA.CACHE False"
PRED="PREDICTOR.EMBED_DIM 96 PREDICTOR.DEPTH 2 PREDICTOR.NUM_HEADS 4"
last=$((STAGES - 1))
for run in $RUNS; do
  m=${run%:*} s=${run#*:}
  case $m in lomar|maskfeat) extra="" ;; *) extra=$PRED ;; esac
  out="$WORK/pretrain/$m/seed$s"
  [ -f "$out/checkpoint-$last.pth" ] && continue
  # shellcheck disable=SC2086
  /usr/bin/time -f "$m seed$s: %e s wall, %U s user" -a -o "$WORK/pretrain_times.txt" \
    $PY -m sarjepa pretrain --config "${m}_tiny" --data "$WORK/pool" --output "$out" \
    --resume auto --no-progress $SHARED $extra SEED "$s"
done

# 3. few-shot grids on the final checkpoints, both pretraining seeds per method (labels NAME@1,
#    NAME@2): MSTAR SOC (10 classes) and, as its own dataset with its own few-shot splits, EOC-1
#    (4 classes, trained at 17 deg, tested at 30 deg)
BACKBONE="MODEL.BACKBONE.EMBED_DIM 96 MODEL.BACKBONE.DEPTH 4 MODEL.BACKBONE.NUM_HEADS 4
  MODEL.BACKBONE.PATCH_SIZE 16 INPUT.SIZE (112,112) DATALOADER.TEST.BATCH_SIZE 128"
args=(random=none)
for m in $METHODS; do
  cks=$(ls "$WORK"/pretrain/"$m"/seed*/checkpoint-"$last".pth 2>/dev/null | paste -sd, -)
  [ -n "$cks" ] && args+=("$m=$cks")
done
REFS="--reference random --reference sarjepa_pixel --reference mae"
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 20 40 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols ${SOC_PROTOCOLS:-logreg knn} \
  --root "$WORK/data" --trainer-config vit_tiny_cpu --out "$WORK/grid" --jobs 1 --force \
  $REFS $BACKBONE
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_EOC1 --shots 10 20 40 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols ${EOC1_PROTOCOLS:-logreg knn} \
  --root "$WORK/data" --trainer-config vit_tiny_cpu --out "$WORK/grid_eoc1" --jobs 1 --force \
  $REFS $BACKBONE

# 3b. the linear probe (MIM_linear on frozen features) with the paper's optimiser settings
#     (vit_b16's 40 epochs, 2 warm-up epochs) over the micro backbone
for ds in MSTAR_SOC MSTAR_EOC1; do
  # shellcheck disable=SC2086
  $PY -m sarjepa grid --methods "${args[@]}" --datasets $ds --shots 10 20 40 \
    --seeds ${SPLIT_SEEDS:-0 1 2} --protocols linear --data "$WORK/data" --config vit_tiny_cpu \
    --out "$WORK/grid_linear_$ds" --jobs 2 $REFS $BACKBONE OPTIM.MAX_EPOCH 40 OPTIM.WARMUP_EPOCH 2
done

# 4. learning curve: every stage's checkpoint of pretraining seed 0, SOC 10-shot logreg
args=()
for m in $METHODS; do
  [ -f "$WORK/pretrain/$m/seed0/checkpoint-$last.pth" ] || continue
  for e in $(seq 0 $last); do
    args+=("${m}_n$(( (e + 1) * ITERS * 32 ))=$WORK/pretrain/$m/seed0/checkpoint-$e.pth")
  done
done
# shellcheck disable=SC2086
$PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
  --seeds ${SPLIT_SEEDS:-0 1 2} --protocols logreg --root "$WORK/data" \
  --trainer-config vit_tiny_cpu --out "$WORK/curve" --jobs 1 --force $BACKBONE
