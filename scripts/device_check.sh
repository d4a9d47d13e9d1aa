#!/usr/bin/env bash
# GPU check in one command, sized for at most 12 minutes on one GPU: the compiled backend under
# varying sequence lengths (the graph-count test and the first-call measurement), the core tests
# on CUDA (every fast path against the reference, on the device), then the CUDA benchmark (quick
# preset). On CUDA the `auto` backend is `compiled` (the native operators are CPU kernels).
# Writes runs/device-check/ (logs), results/bench/compile-varying-lengths-cuda/ (first calls and
# graph counts per sequence length) and results/bench/cuda/ (benchmark CSVs and summary).
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
# 1. varying sequence lengths on the compiled backend: the graph count stays bounded (test), and
#    the first-call seconds per length, static and dynamic compile side by side (about 3 minutes)
TMAF_TEST_DEVICE=cuda timeout 120 python -m pytest -q -x tests/core/test_compile_shapes.py 2>&1 \
    | tee "$out/compile-shapes-cuda.txt" || status=1
timeout 180 tmaf bench compile-lengths --out results/bench/compile-varying-lengths-cuda --device cuda \
    --steady-shape 8x256x1024 \
    2>&1 | tee "$out/compile-varying-lengths-cuda.txt" || status=1
# 2. core tests on the GPU (about 3 minutes: torch.compile of each new shape dominates)
TMAF_TEST_DEVICE=cuda timeout 240 python -m pytest -q -x tests/core 2>&1 | tee "$out/tests-cuda.txt" || status=1
# 3. the CUDA benchmark, quick preset (about 3 minutes)
timeout 240 tmaf bench --device cuda --quick --out results/bench/cuda 2>&1 | tee "$out/bench-cuda.txt" || status=1
echo "device check finished with status $status (logs in $out, benchmark in results/bench/cuda)"
exit $status
