#!/usr/bin/env bash
# Builds the stable-ABI variant of the jump-form operators (results/native-build/stable-abi/ops_stable.cpp
# plus the same kernel sources as tmaf._C, baseline and AVX2) into build/stable-abi/tmaf_stable.so,
# with setup.py's flags, against only the stable C API of torch >= 2.10 (TORCH_TARGET_VERSION).
# Prints the path. Used by measure.py.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=build/stable-abi
mkdir -p "$out"
inc=$(python -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))")
lib=$(python -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
flags=(-std=c++20 -O3 -g0 -fPIC -ffp-contract=off -Wno-psabi -DTORCH_TARGET_VERSION=0x020a000000000000 -Isrc/tmaf/csrc)
objs=()
for src in results/native-build/stable-abi/ops_stable.cpp src/tmaf/csrc/kernels_default.cpp src/tmaf/csrc/kernels_avx2.cpp; do
  obj="$out/$(basename "$src" .cpp).o"
  if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ]; then
    # shellcheck disable=SC2086
    g++ "${flags[@]}" $inc -c "$src" -o "$obj" >&2
  fi
  objs+=("$obj")
done
g++ -shared -s -o "$out/tmaf_stable.so" "${objs[@]}" -L"$lib" -ltorch_cpu -lc10
echo "$out/tmaf_stable.so"
