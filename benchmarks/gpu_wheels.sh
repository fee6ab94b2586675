#!/usr/bin/env bash
# Fetch, into .whl/, the wheels that the GPU machine lacks (it has torch, lightning, timm,
# torchmetrics, torchvision, huggingface-hub, safetensors, numpy, scipy, pillow, pyyaml, rich,
# tqdm, packaging, pynvml: see /work/.library/device/KINDS.md), at the versions installed HERE.
# Run from the repository root:  bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
rm -f .whl/*.whl
PKGS=(segmentation-models-pytorch kornia kornia-rs hydra-core omegaconf pydicom)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64)
plat_args=()
for p in "${PLATFORMS[@]}"; do plat_args+=(--platform "$p"); done

version() { python3 -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }

for name in "${PKGS[@]}"; do
  v=$(version "$name")
  [ -n "$v" ] || { echo "$name is not installed here: install it first" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat_args[@]}" -d .whl "$name==$v"
done
# antlr4-python3-runtime (hydra/omegaconf's parser) is published as a source archive only:
# build its pure-python wheel here.
v=$(version antlr4-python3-runtime)
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl "antlr4-python3-runtime==$v" \
  || python3 -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$v"
ls -la .whl
du -sh .whl
