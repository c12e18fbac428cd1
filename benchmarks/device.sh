#!/usr/bin/env bash
# GPU measurements in one command, under 8 minutes on one NVIDIA GPU:
#   1. model throughput by batch size, fp32 and bf16 autocast, and the per-stage floor (benchmarks.floor);
#   2. one training epoch of the default preset on synthetic data (python -m training fit --epochs 1),
#      and one training step in float32 and bfloat16 (benchmarks.train_step);
#   3. the service end to end at 64 concurrent clients (benchmarks.serve_load), when FastAPI is importable,
#      in float32 and, where the device computes it natively, with its networks in bfloat16.
# Results are files in OUT_DIR (default: $OUT, else reports/device): nvidia-smi.txt, train_epoch.json,
# train_step.md/.json, floor.md/.json, serve_load.md/.json, bf16/serve_load.md/.json, device.log.
#
#   bash benchmarks/device.sh                      # on the GPU machine
#   bash benchmarks/device.sh --device cpu --quick /tmp/device-smoke   # smoke check of the Python parts
#
# The GPU image has torch but not FastAPI: carry wheels in .whl/ (see /work/.library/device/README.md);
# this script installs them into /tmp/site when the folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
QUICK=0
OUT_DIR="${OUT:-reports/device}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) OUT_DIR="$1"; shift ;;
  esac
done
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ "$PYTHON" = python3 ] && PYTHON=.venv/bin/python
if [ "$QUICK" = 1 ]; then
  N_TRAIN=12; BATCHES="1 4"; DURATION=3; WARMUP=1; CLIENTS=8; IMAGES=8; REPEATS=2; STEPS=1
else
  N_TRAIN=200; BATCHES="1 4 8 16 32 64 128"; DURATION=20; WARMUP=5; CLIENTS=64; IMAGES=64; REPEATS=5; STEPS=10
fi
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d /tmp/device-bench.XXXXXX)"
LOG="$OUT_DIR/device.log"
: > "$LOG"
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
  say "installing the carried wheels into /tmp/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

if command -v nvidia-smi > /dev/null; then nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true; fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
  torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"
if [ "$DEVICE" != cpu ] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "no CUDA device: run with --device cpu for a smoke check"; exit 2
fi

say "synthetic data: $N_TRAIN training images"
"$PYTHON" -m training synth --out "$WORK/data" --category demo --n-train "$N_TRAIN" \
  --n-test-good 10 --n-test-per-defect 2 >> "$LOG" 2>&1

say "one training epoch (preset default) on $DEVICE"
START=$(date +%s.%N)
"$PYTHON" -m training fit --data-root "$WORK/data" --category demo --device "$DEVICE" --epochs 1 \
  --out "$WORK/weights/demo.safetensors" --no-progress > "$WORK/fit.json" 2>> "$LOG"
END=$(date +%s.%N)
"$PYTHON" - "$WORK/fit.json" "$START" "$END" "$N_TRAIN" "$DEVICE" > "$OUT_DIR/train_epoch.json" <<'PY'
import json, sys
fit = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
start, end = float(sys.argv[2]), float(sys.argv[3])
print(json.dumps({"fit": fit, "wall_s_including_start_and_calibration": round(end - start, 1),
                  "train_images": int(sys.argv[4]), "device": sys.argv[5]}, indent=1))
PY
cat "$OUT_DIR/train_epoch.json" >> "$LOG"

say "one training step in float32 and bfloat16 (benchmarks.train_step)"
"$PYTHON" -m benchmarks.train_step --device "$DEVICE" --rounds "$REPEATS" --steps "$STEPS" \
  --out "$OUT_DIR/train_step.json" > "$OUT_DIR/train_step.md" 2>> "$LOG"
cat "$OUT_DIR/train_step.md" >> "$LOG"

say "floor and model throughput by batch size (fp32, bf16)"
"$PYTHON" -m benchmarks.floor --checkpoint "$WORK/weights/demo.safetensors" --device "$DEVICE" \
  --dtypes fp32 bf16 --batch-sizes $BATCHES --images "$IMAGES" --repeats "$REPEATS" --out "$OUT_DIR" 2>> "$LOG"

if "$PYTHON" -c "import fastapi, uvicorn, pydantic_settings, python_multipart, httpx" 2>> "$LOG"; then
  say "service end to end at $CLIENTS clients"
  "$PYTHON" -m benchmarks.serve_load --weights-dir "$WORK/weights" --device "$DEVICE" \
    --concurrency "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --images "$IMAGES" \
    --floor "$OUT_DIR/floor.json" --out "$OUT_DIR" 2>> "$LOG"
  if "$PYTHON" -c "import sys, torch; from models.precision import native_bfloat16; \
      sys.exit(not native_bfloat16(torch.device('$DEVICE')))"; then
    say "service end to end at $CLIENTS clients, networks in bfloat16 (INSPECT_PRECISION=bfloat16)"
    "$PYTHON" -m benchmarks.serve_load --target service-bf16 --weights-dir "$WORK/weights" --device "$DEVICE" \
      --concurrency "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --images "$IMAGES" \
      --out "$OUT_DIR/bf16" 2>> "$LOG"  # no --floor: floor.json's floor is float32's
  else
    say "skipped the bfloat16 service: $DEVICE does not compute bfloat16 natively"
  fi
else
  say "skipped the service: fastapi, uvicorn, pydantic-settings, python-multipart or httpx missing (carry wheels in .whl/)"
fi
rm -rf "$WORK"
say "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
