#!/usr/bin/env bash
# The whole head-to-head plus the scaling shapes on a CUDA device, meant to finish in under 5 minutes
# (one repeat per fold; Surprise's SVDpp on the host CPU takes most of the head-to-head).
#
# Usage: bash benchmarks/gpu_run.sh OUT_DIR   (from the repository root, with the package installed)
# On a lent device machine, which fetches nothing, carry what benchmarks/gpu_kit.sh gathered, and have the
# results packed after every step into one file (the device tool returns at most 8 files):
#     GPU_RUN_TARBALL=$OUT/gpu-run.tgz bash benchmarks/gpu_run.sh /tmp/gpu-run
# Each step's output goes to OUT_DIR/NAME.log beside its results; a step that fails is reported and the
# next one runs (the script then exits 1).
set -euo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR}
mkdir -p "$out"
tarball=${GPU_RUN_TARBALL:-}
# scikit-surprise from the carried wheel, this checkout's package from its source, MovieLens-100K from the
# carried data folder. python3 throughout: the device image's Python with PyTorch has no plain 'python'.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .gpu-data ]; then
    export SURPRISE_DATA_FOLDER="$PWD/.gpu-data"
fi
export PYTHONUNBUFFERED=1
failed=0

pack() {
    if [ -n "$tarball" ]; then
        mkdir -p "$(dirname "$tarball")"
        tar -czf "$tarball" -C "$(dirname "$out")" "$(basename "$out")"
    fi
}

step() {  # step NAME COMMAND...
    echo "== $1"
    local name=$1
    shift
    "$@" 2>&1 | tee "$out/$name.log" || { echo "== $name failed"; failed=1; }
    pack
}

step environment python3 -c "import sys, torch, surprise, surprise_torch; print(sys.version.split()[0], \
'torch', torch.__version__, 'surprise', surprise.__version__, 'surprise_torch', surprise_torch.__version__); \
sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch'); "
if [ "$failed" = 1 ]; then
    exit 1
fi
step ml100k python3 -m benchmarks.head_to_head --device cuda --repeat 1 --out "$out/ml100k"
step scaling python3 -m benchmarks.scaling --device cuda --shapes ml-1m ml-10m ml-20m \
    --algorithms TorchALS TorchALS-cholesky TorchSVD TorchSVDpp TorchNMF --timeout 120 --out "$out/scaling"
# ALS at the largest shape (480k x 17.8k, 100M ratings): s/sweep against the roofline
# (about 33 ms per sweep at 100 factors on an H200).
step scaling-netflix python3 -m benchmarks.scaling --device cuda --shapes netflix --algorithms TorchALS \
    --als-factors 100 --timeout 240 --out "$out/scaling-netflix"
# Model selection on ML-100K: our stacked GridSearchCV on the GPU against Surprise's per-fit searches
# (the same classes on the GPU, one fit after another; Surprise's SVD on the host's cores).
step model-selection python3 -m benchmarks.model_selection --device cuda --out "$out/model-selection"
exit "$failed"
