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
# `if`, not `&&`: a function called in an && list runs without set -e
if step 2; then
  seed_runs authors results/mstar-cpu/authors_pretrain.py "$AUTHORS" "$ITERS" "$STAGES"
fi
if step 3; then seed_grids authors; fi  # labels authors@1, @2
if step 4; then seed_curve authors $((ITERS * 32)); fi
