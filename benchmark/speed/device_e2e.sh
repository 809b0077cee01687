#!/usr/bin/env bash
# Every engine end to end on one device (issue: "every engine on the GPU"), as one prepared run:
#   1. synthetic data            sarjepa synth (SCALE, default full on CUDA)
#   2. pretraining + resume      sarjepa_vit_b16 for STEPS iterations per epoch x 2 epochs, the
#                                last checkpoint removed, then resumed with --resume auto
#   3. both trainers             sarjepa train MIM_finetune and MIM_linear on that checkpoint
#   4. a grid, several cells per device    sarjepa grid --jobs JOBS (probes + linear)
#   5. DDP                       torchrun --nproc_per_node 2 on the one device (on one GPU the
#                                two processes share it over gloo; DDP=0|1, default 1 on CUDA)
#   6. the demo (DEMO=cpu|gpu)   sarjepa demo --preset DEMO --device DEVICE into $OUT/demo
#                                (off by default: the gpu preset alone takes about 15 minutes)
# ATTN (default: $SARJEPA_ATTN, else sdpa) picks the attention implementation of every step.
# Each step's wall time goes to $OUT/e2e_times.txt and its log to $OUT/<step>.log; a failed step
# is reported and the others still run. Exit status: the number of failed steps.
#
#   OUT=/path/to/out bash benchmark/speed/device_e2e.sh                 # CUDA, paper scale
#   OUT=/tmp/e2e DEVICE=cpu SCALE=tiny ARCH=tiny SIZE=64 STEPS=2 BATCH=8 JOBS=1 DDP=1 \
#       bash benchmark/speed/device_e2e.sh                            # CPU smoke run
#
# The device image may lack pure-Python dependencies (yacs, submitit, ...): carry the folder that
# benchmark/speed/device_wheels.sh writes (.device_wheels/); this script installs from it when it
# is there, then lists the project's imports still missing.
set -uo pipefail
OUT="${OUT:-.}"
DEVICE="${DEVICE:-cuda}"
SCALE="${SCALE:-full}"
ARCH="${ARCH:-base}"
SIZE="${SIZE:-224}"
STEPS="${STEPS:-100}"
JOBS="${JOBS:-4}"
BATCH="${BATCH:-75}"
DEMO="${DEMO:-}"
export SARJEPA_ATTN="${ATTN:-${SARJEPA_ATTN:-sdpa}}"
mkdir -p "$OUT"
if [ -f .device_wheels/want.txt ]; then
    python -m pip install -q --no-index --find-links .device_wheels -r .device_wheels/want.txt \
        || echo "warning: installing .device_wheels failed"
fi
python - <<'PY' | tee "$OUT/missing_imports.txt"
import importlib.util as u
mods = ["yacs", "yaml", "tqdm", "submitit", "pandas", "matplotlib", "sklearn", "scipy", "PIL"]
missing = [m for m in mods if u.find_spec(m) is None]
print("missing imports:", " ".join(missing) or "none")
PY
if command -v sarjepa >/dev/null; then S=(sarjepa); else S=(python -m sarjepa); fi
FAILED=0
step() {  # step NAME COMMAND...: run, time, log
    local name="$1"; shift
    local t0=$SECONDS
    if "$@" >"$OUT/$name.log" 2>&1; then
        echo "$name ok $((SECONDS - t0)) s" | tee -a "$OUT/e2e_times.txt"
    else
        echo "$name FAILED ($?) $((SECONDS - t0)) s: $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/e2e_times.txt"
        FAILED=$((FAILED + 1))
    fi
}
: >"$OUT/e2e_times.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/e2e_times.txt"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/e2e_times.txt"

DATA="$OUT/data"
step synth "${S[@]}" synth --out "$DATA" --scale "$SCALE" --seed 0

WIN=7; NWIN=4
if [ "$SIZE" -lt 224 ]; then WIN=$((SIZE / 32)); NWIN=2; fi
PRE=(pretrain --config sarjepa_vit_b16 --data "$DATA/pretrain")
OPTS=(MODEL.ARCH "vit_${ARCH}_patch16" INPUT.SIZE "$SIZE" MASK.WINDOW_SIZE "$WIN"
      MASK.NUM_WINDOW "$NWIN" TRAIN.WARMUP_EPOCHS 1 TRAIN.MAX_ITERS "$STEPS" TRAIN.SAVE_FREQ 1
      TRAIN.BATCH_SIZE "$BATCH" TRAIN.EFFECTIVE_BATCH 0 TRAIN.ACCUM_ITER 1 TRAIN.PROGRESS False
      DEVICE "$DEVICE")
# 2 epochs; then the last checkpoint is removed (as if killed during epoch 1) and a fresh process
# resumes from checkpoint-0 (bitwise resume is tested on CPU; here it must run on the device)
step pretrain "${S[@]}" "${PRE[@]}" --output "$OUT/pretrain" "${OPTS[@]}" TRAIN.EPOCHS 2
rm -f "$OUT/pretrain/checkpoint-1.pth" "$OUT/pretrain/checkpoint-1.json"
step pretrain_resume "${S[@]}" "${PRE[@]}" --output "$OUT/pretrain" --resume auto "${OPTS[@]}" \
    TRAIN.EPOCHS 2
CKPT=$(ls "$OUT"/pretrain/checkpoint-*.pth 2>/dev/null | sort -V | tail -n 1)

BB=(MODEL.BACKBONE.NAME "vit_${ARCH}_patch16" INPUT.SIZE "($SIZE, $SIZE)" MODEL.INIT_WEIGHTS "$CKPT"
    DATASET.NUM_SHOTS 10 RUN.DEVICE "$DEVICE" OPTIM.MAX_EPOCH 5)
for T in MIM_finetune MIM_linear; do
    step "train_$T" "${S[@]}" train --root "$DATA" --seed 0 --trainer "$T" \
        --dataset-config-file MSTAR_SOC --config-file "$T/vit_b16" --output-dir "$OUT/train_$T" "${BB[@]}"
done

step grid "${S[@]}" grid --out "$OUT/grid" --methods random=none sarjepa="$CKPT" \
    --datasets MSTAR_SOC --root "$DATA" --shots 10 20 --seeds 0 1 2 --protocols linear logreg knn \
    --jobs "$JOBS" --device "$DEVICE" --reference random \
    MODEL.BACKBONE.NAME "vit_${ARCH}_patch16" INPUT.SIZE "($SIZE, $SIZE)" OPTIM.MAX_EPOCH 10

if [ "${DDP:-$([ "$DEVICE" = cuda ] && echo 1 || echo 0)}" = 1 ]; then
    step ddp2 torchrun --nproc_per_node 2 -m sarjepa "${PRE[@]}" --output "$OUT/pretrain_ddp" \
        "${OPTS[@]}" TRAIN.EPOCHS 1
fi
if [ -n "$DEMO" ]; then
    step "demo_$DEMO" "${S[@]}" demo --preset "$DEMO" --device "$DEVICE" --jobs "$JOBS" \
        --out "$OUT/demo"
fi
echo "attention: $SARJEPA_ATTN" | tee -a "$OUT/e2e_times.txt"
echo "failed steps: $FAILED" | tee -a "$OUT/e2e_times.txt"
exit "$FAILED"
