#!/usr/bin/env bash
# Checks the binary wheel as a user without a compiler gets it: builds it (scripts/build_wheel.sh),
# installs torch 2.13.0 and the wheel into a fresh venv, and, from a temporary folder (no source
# tree on sys.path) with only that venv's bin/ on PATH (no compiler), runs a forward and backward
# on the native path and compares them with the reference backend. .ci/run calls it last; its
# last line is "wheel: 1 passed, 0 failed ..." or "wheel: 0 passed, 1 failed".
#   scripts/check_wheel.sh [WHEEL]      (WHEEL: check that wheel instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"; [ "${passed:-0}" = 1 ] || echo "wheel: 0 passed, 1 failed"' EXIT
if [ $# -ge 1 ]; then  # a wheel built before: check it without rebuilding
  wheel=$(realpath "$1")
else
  built=$(scripts/build_wheel.sh | tail -1)
  echo "$built"
  wheel=$(realpath "$(echo "$built" | awk '{print $2}')")
fi
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0
PATH="$work/venv/bin" "$work/venv/bin/pip" install -q --no-index "$wheel"  # offline: torch is there
cd "$work"
env -u PYTHONPATH PATH="$work/venv/bin" "$work/venv/bin/python" - <<'PY'
import os
import shutil
import sys

import torch

import tmaf

assert not [c for c in ("c++", "g++", "gcc", "cc", "clang") if shutil.which(c)], "a compiler is on PATH"
assert os.path.realpath(tmaf.__file__).startswith(os.path.realpath(sys.prefix)), tmaf.__file__
assert tmaf.native_available(), tmaf.native_status()
torch.manual_seed(0)
act = tmaf.DiagonalTMAF(16)
with torch.no_grad():
    act.levels.normal_()
x = torch.randn(256, 16, requires_grad=True)
assert tmaf.resolve_backend(x) == "native", tmaf.resolve_backend(x)
results = {}
for backend in ("native", "reference"):
    tmaf.set_backend(backend)
    x.grad, act.levels.grad = None, None
    y = act(x)
    (y * torch.linspace(-1, 1, 16)).sum().backward()
    results[backend] = (y.detach(), x.grad, act.levels.grad)
for name, a, b in zip(("output", "input grad", "level grad"), *results.values()):
    torch.testing.assert_close(a, b, msg=lambda m, name=name: f"{name}: {m}")
print(f"wheel: tmaf {tmaf.__file__}: {tmaf.native_status()}")
PY
passed=1
echo "wheel: 1 passed, 0 failed in $((SECONDS - start)) s ($(basename "$wheel") in a fresh venv with torch 2.13.0, no compiler: native forward and backward match the reference)"
