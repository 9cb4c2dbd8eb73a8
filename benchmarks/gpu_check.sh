#!/usr/bin/env bash
# The GPU figures in one go, for a lent GPU machine (whose python3 has torch
# and our other dependencies, but no network and no ../shared): the throughput benchmark on
# cuda in float32 and bf16, then the main job on full MNIST on cuda, under a time limit.
#
#   here:   mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/   (.gpu-data is ignored)
#   there:  bash benchmarks/gpu_check.sh [OUT_DIR]      (carry .gpu-data; OUT_DIR default $OUT)
#
# Prints and keeps in OUT_DIR (six files): the GPU, throughput JSON (fp32, bf16, resnet18 at
# 32 and 96 px in bf16 with channels_last), the run's log
# and metrics.json. PRETEXT_DEVICE=cpu, RUN_SECONDS and RUN_OPTIONS try it out anywhere.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-out}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
device="${PRETEXT_DEVICE:-cuda}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())" | tee -a "$out/gpu.txt"
timeout 240 python3 benchmarks/throughput.py --device "$device" --seconds 3 \
    > "$out/throughput_fp32.json" && cat "$out/throughput_fp32.json"
timeout 240 python3 benchmarks/throughput.py --device "$device" --bf16 --seconds 3 \
    > "$out/throughput_bf16.json" && cat "$out/throughput_bf16.json"
timeout 240 python3 benchmarks/throughput.py --device "$device" --bf16 --channels-last --seconds 3 \
    --configs resnet18:512:32,resnet18:256:96 > "$out/throughput_resnet18.json" \
    && cat "$out/throughput_resnet18.json"
run="${RUN_DIR:-/tmp/pretext-gpu-run}"  # outside OUT_DIR: only a few files come back from there
rm -rf "$run"
timeout "${RUN_SECONDS:-420}" python3 -m pretext run --device "$device" --data-dir .gpu-data \
    --out "$run" ${RUN_OPTIONS:-} 2>&1 | grep -v "it/s]" | tee "$out/run.log"
cp "$run/metrics.json" "$out/metrics.json" 2>/dev/null
ls -la "$out"
