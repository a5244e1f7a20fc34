#!/usr/bin/env bash
# The prepared GPU run of benchmarks/mnist/ on a device machine that has PyTorch but
# neither pydantic nor Pyro: wheels in .whl/, MNIST in shared/data/mnist (see benchmarks/README.md).
# Usage there: bash benchmarks/mnist/device.sh "$OUT"
set -euo pipefail
out=${1:?usage: benchmarks/mnist/device.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CAUSALDIFF_PROGRESS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
# the whole pipeline on the GPU with tiny counts first: a CUDA-only bug costs seconds, not the run
python3 -m benchmarks.mnist --setting gpu --smoke --data shared/data/mnist --out /tmp/smoke >/tmp/smoke.log 2>&1 \
  || { tail -40 /tmp/smoke.log; exit 1; }
echo "smoke run passed on the GPU"
python3 -m benchmarks.mnist --setting gpu --data shared/data/mnist --out "$out" 2>&1 \
  | tee "$out/mnist_diffscm_gpu.log"
