#!/usr/bin/env bash
# GPU check in one command, sized for at most 8 minutes on one GPU: the core tests on CUDA
# (every fast path against the reference, on the device), then the CUDA benchmark (quick
# preset). On CUDA the `auto` backend is `compiled` (the native operators are CPU kernels).
# Writes runs/device-check/ (logs) and results/bench/cuda/ (benchmark CSVs and summary).
#
#   bash scripts/device_check.sh            # from the repository root, after the README set-up
set -uo pipefail
cd "$(dirname "$0")/.."
out=runs/device-check
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch, tmaf
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
print("tmaf native:", tmaf.native_status())
PY
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "no CUDA device: nothing to check" >&2; exit 2; }
status=0
# 1. core tests on the GPU (about 3 minutes: torch.compile of each new shape dominates)
TMAF_TEST_DEVICE=cuda timeout 240 python -m pytest -q -x tests/core 2>&1 | tee "$out/tests-cuda.txt" || status=1
# 2. the CUDA benchmark, quick preset (about 3 minutes)
timeout 240 tmaf bench --device cuda --quick --out results/bench/cuda 2>&1 | tee "$out/bench-cuda.txt" || status=1
echo "device check finished with status $status (logs in $out, benchmark in results/bench/cuda)"
exit $status
