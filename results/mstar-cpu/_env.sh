# What run.sh, authors_run.sh and mae_upstream_run.sh share; sourced by each after it sets its
# own STEPS default. Environment: PY (interpreter), JOBS (processes at a time, one core each;
# default 2), SPLIT_SEEDS (default 0-4). One thread per process.
# shellcheck shell=bash disable=SC2034
PY=${PY:-python}
JOBS=${JOBS:-2}
SPLIT_SEEDS=${SPLIT_SEEDS:-0 1 2 3 4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
step() { [[ " $STEPS " == *" $1 "* ]]; }   # is step $1 among STEPS?
# the grid's backbone for the micro ViT every run pretrains
BACKBONE="MODEL.BACKBONE.EMBED_DIM 96 MODEL.BACKBONE.DEPTH 4 MODEL.BACKBONE.NUM_HEADS 4
  MODEL.BACKBONE.PATCH_SIZE 16 INPUT.SIZE (112,112) DATALOADER.TEST.BATCH_SIZE 128"

# The upstream drivers (authors_run.sh, mae_upstream_run.sh) share their three steps; each sets
# `last` (its final checkpoint's index) first.
# seed_runs LABEL SCRIPT UPSTREAM_DIR ARGS...: pretrain seeds 0 and 1 by
# `$PY SCRIPT UPSTREAM_DIR WORK/pool WORK/LABEL/seedS S ARGS...` (both at once when JOBS >= 2),
# skipping a seed whose checkpoint-$last.pth exists; times go to WORK/pretrain_times.txt, each
# seed's output to WORK/LABEL_S.log.
seed_runs() {
  local label=$1 a b
  shift
  if ((JOBS >= 2)); then
    _seed_run "$label" 0 "$@" &
    a=$!
    _seed_run "$label" 1 "$@" &
    b=$!
    wait "$a"
    wait "$b"
  else
    _seed_run "$label" 0 "$@"
    _seed_run "$label" 1 "$@"
  fi
}
_seed_run() {  # LABEL SEED SCRIPT UPSTREAM_DIR ARGS...
  local label=$1 seed=$2 script=$3 dir=$4
  shift 4
  local out="$WORK/$label/seed$seed"
  [ -f "$out/checkpoint-$last.pth" ] && return 0
  /usr/bin/time -f "$label seed$seed: %e s wall, %U s user" -a -o "$WORK/pretrain_times.txt" \
    $PY "$script" "$dir" "$WORK/pool" "$out" "$seed" "$@" > "$WORK/${label}_$seed.log" 2>&1
}
# seed_grids LABEL: run.sh's step-3 cells (SOC and EOC-1; logreg and kNN; 10/20/40 shots) of both
# seeds' last checkpoints, labelled LABEL@1 and LABEL@2, in WORK/grid_LABEL_<dataset>.
seed_grids() {
  local cks="$WORK/$1/seed0/checkpoint-$last.pth,$WORK/$1/seed1/checkpoint-$last.pth" ds
  for ds in MSTAR_SOC MSTAR_EOC1; do
    # shellcheck disable=SC2086
    $PY -m sarjepa grid --methods "$1=$cks" --datasets $ds --shots 10 20 40 \
      --seeds $SPLIT_SEEDS --protocols logreg knn --data "$WORK/data" --config vit_tiny_cpu \
      --out "$WORK/grid_$1_$ds" --jobs "$JOBS" --force $BACKBONE
  done
}
# seed_curve LABEL SAMPLES_PER_EPOCH: the learning curve of seed 0 (10-shot SOC logreg of every
# checkpoint, labelled LABEL_n<samples seen>) in WORK/curve_LABEL.
seed_curve() {
  local args=() e
  for e in $(seq 0 "$last"); do
    args+=("$1_n$(((e + 1) * $2))=$WORK/$1/seed0/checkpoint-$e.pth")
  done
  # shellcheck disable=SC2086
  $PY -m sarjepa grid --methods "${args[@]}" --datasets MSTAR_SOC --shots 10 \
    --seeds $SPLIT_SEEDS --protocols logreg --data "$WORK/data" --config vit_tiny_cpu \
    --out "$WORK/curve_$1" --jobs "$JOBS" --force $BACKBONE
}
