#!/usr/bin/env bash
# Gather here, at no device time, what benchmarks/gpu_run.sh needs on a lent GPU machine, which can fetch
# nothing: its image has PyTorch, NumPy, SciPy and joblib but not scikit-surprise, nor MovieLens-100K.
#
# Usage, from the repository root with the package installed (the README's first command):
#     bash benchmarks/gpu_kit.sh
# then, with the device tool (both folders are git-ignored, so they travel only when carried):
#     run(command="GPU_RUN_TARBALL=$OUT/gpu-run.tgz bash benchmarks/gpu_run.sh /tmp/gpu-run",
#         carry=[".whl", ".gpu-data"], timeout_s=540)
#
# DEVICE_PYTHON is the device's Python (3.12 in the workplace's notes, /work/.library/device/KINDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${DEVICE_PYTHON:-3.12}
rm -rf .whl .gpu-data
mkdir -p .whl
# scikit-surprise publishes manylinux wheels; --no-deps because the image has its NumPy, SciPy and joblib.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl scikit-surprise==1.1.5
SURPRISE_DATA_FOLDER="$PWD/.gpu-data" python3 -c \
    "from surprise_torch.datasets import load_builtin; print(len(load_builtin('ml-100k').raw_ratings), 'ratings')"
du -sh .whl .gpu-data
