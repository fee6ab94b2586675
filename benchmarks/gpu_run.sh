#!/usr/bin/env bash
# The GPU benchmark as ONE command on a device machine (one H200 / H100, 16 cores), <= 8 minutes:
#   here:        bash benchmarks/gpu_wheels.sh            (the wheels the device lacks -> .whl/)
#   device run:  bash benchmarks/gpu_run.sh               carry: [".whl"]
#   back here:   python benchmarks/gpu_bench.py --from-json <files_at>/gpu_bench_gpu.json
#                (writes docs/benchmarks/gpu_bench_gpu.json and the docs/benchmarks.md section)
# Runs benchmarks/gpu_bench.py (joint vs single_stage: training and inference views/s, GPU memory,
# test Dice; batch 64, 1024x256, bf16, channels_last), then, if time is left, the per-stage
# profile of one joint step (benchmarks/profile_step.py --device cuda). Results land flat in $OUT.
# Extra arguments go to gpu_bench.py, e.g. `bash benchmarks/gpu_run.sh --steps 200`.
# Smoke test on a CPU (no wheels needed):  GPU_RUN_DEVICE=cpu bash benchmarks/gpu_run.sh --tiny
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_run_out}
DEVICE=${GPU_RUN_DEVICE:-cuda}
mkdir -p "$OUT"
START=$(date +%s)
if [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 BONEPATCH_LOG_DIR=/tmp/bonepatch_logs
$PY -c "import torch, lightning, timm, torchmetrics, segmentation_models_pytorch, kornia, hydra, bonepatch; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__, 'timm', timm.__version__)" \
  > "$OUT/versions.txt" 2>&1 || { cat "$OUT/versions.txt"; exit 1; }
# Straight to files (no pipe): a pipe's buffer is lost when the timeout kills the run.
timeout "${BENCH_TIMEOUT:-400}" $PY benchmarks/gpu_bench.py --device "$DEVICE" --docs /tmp/gpu_run_docs \
  --json "$OUT/gpu_bench.json" "$@" > "$OUT/gpu_bench.log" 2>&1
rc=$?
tail -n 25 "$OUT/gpu_bench.log"
LEFT=$(( ${TOTAL_S:-470} - ($(date +%s) - START) ))
if [ "$rc" = 0 ] && [ "$LEFT" -gt 60 ]; then  # the per-stage profile, in the time that is left
  if [ "$DEVICE" = cuda ]; then PROF=(--device cuda --batch 64 --precision bf16-mixed --channels-last --steps 5 --warmup 3)
  else PROF=(--device cpu --size 256 64 --batch 2 --steps 1 --warmup 1); fi
  timeout $(( LEFT - 10 )) $PY benchmarks/profile_step.py "${PROF[@]}" --json "$OUT/profile_joint.json" \
    > "$OUT/profile_joint.log" 2>&1
  echo "profile_step.py exit status $?"; tail -n 25 "$OUT/profile_joint.log"
fi
echo "gpu_bench.py exit status $rc after $(( $(date +%s) - START )) s; files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
