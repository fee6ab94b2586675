#!/usr/bin/env bash
# The GPU profile of benchmarks/compare.py as ONE command on the device machine (one H100):
#   device run:  bash benchmarks/gpu_run.sh        carry: [".whl"]   (make .whl/ with gpu_wheels.sh)
# Installs the carried wheels into /tmp/site (the machine has torch, lightning, timm, torchmetrics
# but not smp, kornia, hydra, omegaconf, pydicom), runs the comparison (<= 8 min incl. data
# generation) and copies the results into $OUT (flat: at most 8 files come back).
# Extra arguments go to compare.py, e.g. `bash benchmarks/gpu_run.sh --steps 600`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/compare_out}
mkdir -p "$OUT"
rm -f docs/benchmarks/compare_gpu.* docs/img/compare_gpu_*  # (this machine's copy) no stale results
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 BONEPATCH_LOG_DIR=/tmp/bonepatch_logs
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1
python3 -c "import torch, lightning, timm, torchmetrics, segmentation_models_pytorch, kornia, hydra, pydicom, bonepatch; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__, 'timm', timm.__version__)" || exit 1
# Straight to the file (no pipe): a pipe's buffer is lost when the timeout kills the run.
timeout "${COMPARE_TIMEOUT:-540}" python3 benchmarks/compare.py --profile gpu --out-dir /tmp/compare_runs "$@" \
  > "$OUT/compare_gpu.log" 2>&1
rc=$?
tail -n 40 "$OUT/compare_gpu.log"
for f in docs/benchmarks/compare_gpu.json docs/benchmarks/compare_gpu.csv docs/img/compare_gpu_dice.png \
         docs/img/compare_gpu_overlays.png docs/benchmarks.md; do
  [ -f "$f" ] && cp "$f" "$OUT/"
done
[ -f "$OUT/compare_gpu.json" ] || cp /tmp/compare_runs/partial.json "$OUT/compare_gpu_partial.json" 2>/dev/null
echo "compare.py exit status $rc; files in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
