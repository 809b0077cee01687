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
# `if`, not `&&`: a function called in an && list runs without set -e
if step 2; then
  seed_runs mae_upstream results/mstar-cpu/mae_upstream_pretrain.py "$MAE" "$EPOCHS"
fi
if step 3; then seed_grids mae_upstream; fi  # labels mae_upstream@1, @2
# samples per epoch: full passes over the 13,520-chip pool, drop_last
if step 4; then seed_curve mae_upstream $((13520 / 32 * 32)); fi
