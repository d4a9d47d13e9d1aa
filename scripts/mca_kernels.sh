#!/usr/bin/env bash
# Static throughput of the AVX-512 kernels' inner loops (cycles per 16 floats), for machines
# without AVX-512 and as a check beside measured times: builds kernels_avx512.cpp to assembly
# with the llvm-mca markers on (-DTMAF_MCA), keeps the marked loop bodies of the m = 9
# instantiations, and runs llvm-mca on each.
# Usage: scripts/mca_kernels.sh [CPU ...]   (default: znver4 where this llvm-mca knows it, and
# skylake-avx512). Needs g++ and llvm-mca (Debian: apt install llvm).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cpus=("$@")
if [ ${#cpus[@]} -eq 0 ]; then
  cpus=(skylake-avx512)
  if llvm-mca -mcpu=help 2>&1 | grep -qw znver4; then cpus=(znver4 skylake-avx512); fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g++ -std=c++17 -O3 -DTMAF_MCA -S -fno-asynchronous-unwind-tables -o "$work/all.s" \
  "$here/src/tmaf/csrc/kernels_avx512.cpp"
# keep the regions inside the m = 9 float instantiations (template arguments starting with MT = 9,
# mangled ILi9E, or with float, 9: IfLi9E), and of each region name its first BEGIN .. END pair
# (the compiler may duplicate a loop body, and its markers with it); drop the others
awk '/^_Z[^ ]*:$/ { keep = ($0 ~ /(ILi9E|IfLi9E)/) }
     /LLVM-MCA-BEGIN/ { if (!keep || ($NF in began)) next; began[$NF] = 1; open[$NF] = 1 }
     /LLVM-MCA-END/ { if (!keep || !($NF in open)) next; delete open[$NF] }
     { print }' "$work/all.s" > "$work/m9.s"
for cpu in "${cpus[@]}"; do
  echo "== llvm-mca -mcpu=$cpu, m = 9: cycles per iteration (16 floats)"
  llvm-mca -mcpu="$cpu" -iterations=100 -resource-pressure=false -instruction-info=false \
    "$work/m9.s" 2>/dev/null \
    | awk '/Code Region - /{name=$NF} /^Instructions:/{n=$2} /^Block RThroughput:/{print "  " name ": " n/100 " instructions, block throughput " $3 " cycles"}'
done
