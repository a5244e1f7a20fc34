#!/usr/bin/env bash
# The prepared GPU run of benchmarks/throughput.py (at most 3 minutes) on a device machine that
# has PyTorch but neither pydantic nor Pyro: wheels in .whl/ (as device_mnist.sh).
# Usage there: bash benchmarks/device_throughput.sh "$OUT"
set -euo pipefail
out=${1:?usage: device_throughput.sh OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CAUSALDIFF_PROGRESS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# the captured bf16 guided loop under torch.cuda.set_sync_debug_mode("error"), and the rest of the fast path
timeout 40 python3 -m pytest -q -p no:cacheprovider tests/diffusion/test_fast_path.py 2>&1 | tail -3 || true
timeout 140 python3 benchmarks/throughput.py --setting gpu --out "$out" 2>&1 | tee "$out/throughput_gpu.log"
