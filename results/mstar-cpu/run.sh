#!/usr/bin/env bash
# The paper's comparison at CPU scale on the public MSTAR release (issue 23, item 2).
#   usage: results/mstar-cpu/run.sh RELEASE WORK [ITERS_PER_STAGE] [STAGES]
# RELEASE: the folder `sarjepa prepare mstar --src` reads; WORK: an output folder outside the
# repo. Every stage is skipped when its output exists, so a rerun resumes. Run from the repo root.
# Defaults: the budget of `results/demo-mstar`, 4 epochs (stages) of full passes over the pool:
# 4 x 422 iterations x 32 = 54,016 samples per run (the demo-mstar pool, 14,671 chips with the
# EOC-1 test images, gave it 58,684). ITERS_PER_STAGE caps an epoch (TRAIN.MAX_ITERS); at or
# above 422 it is a full pass.
# Environment: JOBS (processes at a time, one core each; default 2), STEPS (which steps, default
# "1 2 3 3b 3c 4"), SPLIT_SEEDS (default 0-4), FT_SEEDS (fine-tuning split seeds, default 0-2),
# FT_DATASETS (default MSTAR_SOC MSTAR_EOC1), PY (interpreter). Threads: one per process (OMP_NUM_THREADS=1).
set -euo pipefail
RELEASE=${1:?RELEASE folder}
WORK=${2:?WORK folder}
ITERS=${3:-422}   # iterations of batch 32 per pretraining stage (TRAIN.MAX_ITERS)
STAGES=${4:-4}    # stages (TRAIN.EPOCHS); a checkpoint after each: the learning curve
STEPS=${STEPS:-1 2 3 3b 3c 4}
source "$(dirname "$0")/_env.sh"
FT_SEEDS=${FT_SEEDS:-0 1 2}
SAMPLES_PER_STAGE=$((ITERS * 32))   # the learning curve's x (ITERS at most a full pass)
METHODS="sarjepa sarjepa_pixel mae lomar fgmae maskfeat ijepa"
# pretraining runs METHOD:SEED, in this order (the paper's ablation and MAE first); override RUNS
# to run fewer. The grid takes every finished run.
RUNS=${RUNS:-"sarjepa:0 sarjepa:1 sarjepa_pixel:0 sarjepa_pixel:1 mae:0 mae:1 lomar:0 fgmae:0
  maskfeat:0 ijepa:0 lomar:1 fgmae:1 maskfeat:1 ijepa:1"}

# 1. layouts, and a pool without the SOC test set (prepare --pool), then without EOC-1's either
if step 1 && [ ! -d "$WORK/data/MSTAR_SOC" ]; then
  $PY -m sarjepa prepare mstar --src "$RELEASE" --out "$WORK/data" --protocol soc eoc1 \
    --pool "$WORK/pool_soc"
fi
if step 1 && [ ! -d "$WORK/pool" ]; then
  $PY -m sarjepa pool-check --data "$WORK/pool_soc" --data "$WORK/data" --dataset MSTAR_EOC1 \
    --no-progress > "$WORK/eoc1_overlap.txt" || true
  sed -n 's/: MSTAR_EOC1\/TEST\/.*//p' "$WORK/eoc1_overlap.txt" | sort > "$WORK/excluded.txt"
  (cd "$WORK/pool_soc" && find . -type f ! -name manifest.json | sed 's#^\./##' | sort) \
    | comm -23 - <(sed "s#^$WORK/pool_soc/##" "$WORK/excluded.txt") > "$WORK/kept.txt"
  while read -r f; do
    mkdir -p "$WORK/pool/$(dirname "$f")" && ln "$WORK/pool_soc/$f" "$WORK/pool/$f"
  done < "$WORK/kept.txt"
fi
if step 1; then
  $PY -m sarjepa pool-check --data "$WORK/pool" --data "$WORK/data" \
    --dataset MSTAR_SOC MSTAR_EOC1 --no-progress   # exit status 1 (and stop) on any overlap
fi

# 2. pretraining: one budget for all (the demo's micro ViT 96 x 4 at 112 px, batch 32, base lr
#    5e-3, 1 warm-up stage; each method's own tiny config for masking and target)
SHARED="MODEL.EMBED_DIM 96 MODEL.DEPTH 4 MODEL.NUM_HEADS 4 MODEL.PATCH_SIZE 16 INPUT.SIZE 112
  TRAIN.WARMUP_EPOCHS 1 TRAIN.BATCH_SIZE 32 TRAIN.BLR 0.005 TRAIN.EPOCHS $STAGES
  TRAIN.MAX_ITERS $ITERS TRAIN.SAVE_FREQ 1 DATA.CACHE False"
PRED="PREDICTOR.EMBED_DIM 96 PREDICTOR.DEPTH 2 PREDICTOR.NUM_HEADS 4"
last=$((STAGES - 1))
pretrain_one() {  # METHOD:SEED
  local m=${1%:*} s=${1#*:} extra
  case $m in lomar|maskfeat) extra="" ;; *) extra=$PRED ;; esac
  local out="$WORK/pretrain/$m/seed$s"
  [ -f "$out/checkpoint-$last.pth" ] && return 0
  # shellcheck disable=SC2086
  /usr/bin/time -f "$m seed$s: %e s wall, %U s user" -a -o "$WORK/pretrain_times.txt" \
    $PY -m sarjepa pretrain --config "${m}_tiny" --data "$WORK/pool" --out "$out" \
    --resume auto --no-progress $SHARED $extra SEED "$s" > "$WORK/pretrain_$m-$s.log" 2>&1
}
export -f pretrain_one
export WORK PY SHARED PRED last
# JOBS runs at a time, one core each (a run's result does not depend on what runs beside it)
step 2 && printf '%s\n' $RUNS | xargs -P "$JOBS" -I{} bash -c 'pretrain_one {}'

# 3. few-shot grids on the final checkpoints, both pretraining seeds per method (labels NAME@1,
#    NAME@2): MSTAR SOC (10 classes) and, as its own dataset with its own few-shot splits, EOC-1
#    (4 classes, trained at 17 deg, tested at 30 deg)
args=(random=none)
for m in $METHODS; do
  cks=$(ls "$WORK"/pretrain/"$m"/seed*/checkpoint-"$last".pth 2>/dev/null | paste -sd, -)
  [ -n "$cks" ] && args+=("$m=$cks")
done
REFS="--reference random --reference sarjepa_pixel --reference mae"
grid() {  # DATASET PROTOCOLS SEEDS OUT [KEY VALUE ...]
  local ds=$1 protocols=$2 seeds=$3 out=$4
  shift 4
  # shellcheck disable=SC2086
  $PY -m sarjepa grid --methods "${args[@]}" --datasets "$ds" --shots 10 20 40 --seeds $seeds \
    --protocols $protocols --data "$WORK/data" --config vit_tiny_cpu --out "$out" \
    --jobs "$JOBS" $REFS $BACKBONE "$@"
}
if step 3; then
  grid MSTAR_SOC "logreg knn" "$SPLIT_SEEDS" "$WORK/grid"
  grid MSTAR_EOC1 "logreg knn" "$SPLIT_SEEDS" "$WORK/grid_eoc1"
fi

# 3b. the linear probe (MIM_linear on frozen features) with the paper's optimiser settings
#     (vit_b16's 40 epochs, 2 warm-up epochs) over the micro backbone
if step 3b; then
  for ds in MSTAR_SOC MSTAR_EOC1; do
    grid $ds linear "$SPLIT_SEEDS" "$WORK/grid_linear_$ds" OPTIM.MAX_EPOCH 40 OPTIM.WARMUP_EPOCH 2
  done
fi

# 3c. fine-tuning (MIM_finetune: the whole micro ViT and a linear head trained end to end) with
#     the paper's optimiser settings (vit_b16: AdamW lr 1e-3, wd 5e-4, batch 50, 40 epochs, 2
#     constant warm-up epochs, cosine), split seeds FT_SEEDS
if step 3c; then
  for ds in ${FT_DATASETS:-MSTAR_SOC MSTAR_EOC1}; do
    grid $ds finetune "$FT_SEEDS" "$WORK/grid_finetune_$ds" OPTIM.MAX_EPOCH 40 \
      OPTIM.WARMUP_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 50
  done
fi

# 4. learning curve: every stage's checkpoint of pretraining seed 0, SOC 10-shot logreg
if step 4; then
  args=()
  for m in $METHODS; do
    [ -f "$WORK/pretrain/$m/seed0/checkpoint-$last.pth" ] || continue
    for e in $(seq 0 $last); do
      args+=("${m}_n$(( (e + 1) * SAMPLES_PER_STAGE ))=$WORK/pretrain/$m/seed0/checkpoint-$e.pth")
    done
  done
  # shellcheck disable=SC2086
  $PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
    --seeds $SPLIT_SEEDS --protocols logreg --data "$WORK/data" \
    --config vit_tiny_cpu --out "$WORK/curve" --jobs "$JOBS" --force $BACKBONE
fi
