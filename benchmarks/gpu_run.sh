#!/usr/bin/env bash
# The whole head-to-head plus the scaling shapes on a CUDA device, meant to finish in under 5 minutes
# (one repeat per fold; Surprise's SVDpp on the host CPU takes most of the head-to-head).
# Usage: bash benchmarks/gpu_run.sh OUT_DIR   (run from the repository root, with the package installed)
set -euo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR}
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
export PYTHONUNBUFFERED=1
python -m benchmarks.head_to_head --device cuda --repeat 1 --out "$out/ml100k" 2>&1 | tee "$out/ml100k.log"
python -m benchmarks.scaling --device cuda --shapes ml-1m ml-10m ml-20m --algorithms TorchALS TorchALS-cholesky TorchSVD TorchSVDpp TorchNMF \
    --timeout 120 --out "$out/scaling" 2>&1 | tee "$out/scaling.log"
# ALS at the largest shape (480k x 17.8k, 100M ratings): s/sweep against the roofline
# (about 33 ms per sweep at 100 factors on an H200).
python -m benchmarks.scaling --device cuda --shapes netflix --algorithms TorchALS --als-factors 100 \
    --timeout 240 --out "$out/scaling-netflix" 2>&1 | tee "$out/scaling-netflix.log"
# Model selection on ML-100K: our stacked GridSearchCV on the GPU against Surprise's per-fit searches
# (the same classes on the GPU, one fit after another; Surprise's SVD on the host's cores).
python -m benchmarks.model_selection --device cuda --out "$out/model-selection" 2>&1 | tee "$out/model-selection.log"
