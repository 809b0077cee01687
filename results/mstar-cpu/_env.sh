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
