#!/usr/bin/env bash
# Wheels of our dependencies for a device machine that has torch / timm / triton but cannot reach
# a package index. Run here (a machine with the index), then carry the folder to the device run
# (the device tool's `carry`, 64 MiB in all) and install from it there:
#
#   bash benchmark/speed/device_wheels.sh                 # -> .device_wheels/ (git-ignored)
#   PY=3.12 bash benchmark/speed/device_wheels.sh         # for the device's Python version
#   # on the device:
#   python -m pip install -q --no-index --find-links .device_wheels -r .device_wheels/want.txt
#
# PKGS (default below) lists what to fetch; torch, torchvision, timm and triton are left out
# (the device image has them). The script prints the folder's size and fails when it exceeds
# 60 MiB (leave room for the working tree). Without pandas / matplotlib / scikit-learn / scipy
# (the heavy ones, ~80 MiB together) the engines still run: `sarjepa bench` needs none of them,
# the grid needs pandas and matplotlib for its tables and plot and scikit-learn for logreg cells.
set -euo pipefail
DIR="${DIR:-.device_wheels}"
PY="${PY:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
PKGS="${PKGS:-yacs PyYAML tqdm submitit cloudpickle typing_extensions}"
mkdir -p "$DIR"
# shellcheck disable=SC2086
python3 -m pip download -q --dest "$DIR" --only-binary=:all: --python-version "$PY" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --no-deps $PKGS
printf '%s\n' $PKGS >"$DIR/want.txt"
size_kb=$(du -sk "$DIR" | cut -f1)
echo "device_wheels: $(ls "$DIR"/*.whl | wc -l) wheels, $((size_kb / 1024)) MiB in $DIR for Python $PY"
if [ "$size_kb" -gt $((60 * 1024)) ]; then
    echo "device_wheels: $DIR is over 60 MiB; drop packages from PKGS" >&2
    exit 1
fi
