#!/usr/bin/env bash
# The prepared GPU run of benchmarks/morphomnist.py (setting gpu) on a device machine that has
# PyTorch but neither pydantic nor Pyro: wheels in .whl/ (as for device_mnist.sh, plus scipy,
# scikit-image and its dependencies: imageio, tifffile, lazy_loader), MNIST in shared/data/mnist.
# Rendering all 70k images takes ~10 CPU-minutes per 16 cores: render them beforehand and carry
# the cache (compressed .npz, ~25 MB) in shared/data/morphomnist:
#   CAUSALDIFF_MNIST_DIR=shared/data/mnist python -c "from causaldiff.datasets import MorphoMNIST as M; \
#     d = M(cache_dir='shared/data/morphomnist'); d.generated('train'); d.generated('test')"
# Usage there: bash benchmarks/device_morphomnist.sh "$OUT"
set -euo pipefail
out=${1:?usage: device_morphomnist.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CAUSALDIFF_PROGRESS=0 CAUSALDIFF_MNIST_DIR=shared/data/mnist
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
# the whole pipeline on the GPU with the quick setting first: a CUDA-only bug costs seconds, not the run
python3 benchmarks/morphomnist.py --setting quick --device cuda --out /tmp/smoke --cache-dir /tmp/smoke-cache \
  >/tmp/smoke.log 2>&1 || { tail -40 /tmp/smoke.log; exit 1; }
echo "smoke run passed on the GPU"
python3 benchmarks/morphomnist.py --setting gpu --device cuda --out "$out" --cache-dir shared/data/morphomnist 2>&1 \
  | tee "$out/morphomnist_gpu.log"
