#!/usr/bin/env bash
# One GPU run of `sarjepa bench` (about 3-5 minutes on an H100/H200, capped at 5): ViT-B/16
# iRPE fine-tune step (b50), eval (b50, b256), SAR-JEPA pretrain step (b75), GF targets (b75),
# every method's pretraining step, and every attention implementation side by side, ours vs the
# authors' way on the same card. Writes $OUT/bench.json (rewritten after each measurement, so a
# cut run keeps what it measured) and $OUT/bench.txt.
# Extra arguments go to `sarjepa bench` (e.g. --only attention --compile; --attn aligned).
# GRID=1 adds `sarjepa bench --only grid` (JOBS cells at once, default 4) into grid_bench.json,
# capped at 4 minutes; its JSON is rewritten after each stage (linear grids, fine-tune cells,
# --jobs), so a cut run keeps what it measured. Both caps together (BENCH_TIMEOUT 300 +
# GRID_TIMEOUT 240 s) stay under the device tool's 600 s per call.
# One device call (15 minutes of device time per session, start-up included):
#   here:   bash benchmark/speed/device_wheels.sh
#   device: OUT=$OUT GRID=1 bash benchmark/speed/device_bench.sh    (carry: .device_wheels)
set -uo pipefail
OUT="${OUT:-.}"
python -m pip install -e . --no-deps --no-build-isolation -q >/dev/null 2>&1 || echo "pip install failed; using python -m"
if command -v sarjepa >/dev/null; then BENCH=(sarjepa bench); else BENCH=(python -m sarjepa bench); fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
# yacs (a dependency) builds the pretrain step from pretrain/configs/sarjepa_vit_b16.yaml; an image
# without it (the install above is --no-deps) reports that row as skipped: carry the wheels of
# benchmark/speed/device_wheels.sh (.device_wheels/), installed here when present.
if [ -f .device_wheels/want.txt ]; then
    python -m pip install -q --no-index --find-links .device_wheels -r .device_wheels/want.txt \
        || echo "warning: installing .device_wheels failed"
fi
python -c "import yacs" 2>/dev/null || echo "warning: yacs is not importable here; the pretrain row will be skipped"
timeout "${BENCH_TIMEOUT:-300}" "${BENCH[@]}" --device cuda --warmup 5 --iters 30 \
    --json "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.txt"
# GRID=1: then the grid throughput and the 900-cell projection (`--only grid`, synth full)
if [ "${GRID:-0}" = 1 ]; then
    timeout "${GRID_TIMEOUT:-240}" "${BENCH[@]}" --only grid --device cuda --grid-jobs "${JOBS:-4}" \
        --json "$OUT/grid_bench.json" 2>&1 | tee "$OUT/grid_bench.txt"
fi
