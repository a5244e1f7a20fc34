#!/usr/bin/env bash
# The prepared GPU run of benchmarks/morphomnist/ (setting gpu, 6 minutes of run time on one
# H100/H200) on a device machine that has PyTorch but neither pydantic nor Pyro: wheels in .whl/ (as
# for benchmarks/mnist/device.sh, plus scipy, scikit-image and its dependencies: imageio, tifffile,
# lazy_loader), MNIST in shared/data/mnist.
# The test split is the published file (shared/data/morphomnist-deepscm); the 60k training images
# are rendered by the faithful renderer (~0.2 s an image on one core: ~3.3 core-hours), best
# beforehand and carried in shared/data/morphomnist (render-v2/train-*.npz chunks, resumable):
#   python -m benchmarks.morphomnist.render_split --out shared/data/morphomnist/render-v2 --split train --workers 2
# else step 2 renders them here (~14 minutes on 15 processes), outside the timed run.
# Usage there: bash benchmarks/morphomnist/device.sh "$OUT"
set -euo pipefail
out=${1:?usage: benchmarks/morphomnist/device.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CAUSALDIFF_PROGRESS=0 CAUSALDIFF_MNIST_DIR=shared/data/mnist \
  CAUSALDIFF_MORPHO_DIR=shared/data/morphomnist-deepscm
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
# 1. the gpu setting's whole pipeline at its real network sizes with tiny counts (budgets, the time
#    limit, the sweep, the shared abduction): a CUDA-only bug costs a minute, not the run
python3 -m benchmarks.morphomnist --setting gpu --smoke --device cuda --cache-dir /tmp/smoke-cache \
  >/tmp/smoke.log 2>&1 || { tail -40 /tmp/smoke.log; exit 1; }
echo "smoke run passed on the GPU"
# 2. the splits (read from the carried cache, checked; rendered if absent)
/usr/bin/time -f "splits ready in %e s" python3 -c "from benchmarks.morphomnist.dataset import MorphoMNIST as M; \
  d = M(cache_dir='shared/data/morphomnist', workers=15); d.generated('train'); d.generated('test')"
# 3. the run: the denoiser trains for what the 360 s limit leaves; within_time_limit says if it held
python3 -m benchmarks.morphomnist --setting gpu --device cuda --out "$out" --cache-dir shared/data/morphomnist 2>&1 \
  | tee "$out/morphomnist_benchmark.log"
