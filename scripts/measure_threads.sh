#!/usr/bin/env bash
# Wall time of one `tmaf train mnist` epoch (MLP, relu) with 1 and 2 torch threads, run alone
# and two at a time, to choose the --threads default. Usage: scripts/measure_threads.sh OUT_DIR
set -euo pipefail
out=${1:?usage: scripts/measure_threads.sh OUT_DIR}
mkdir -p "$out"
run() {  # run THREADS NAME
  /usr/bin/time -f "%e" -o "$out/$2.wall" tmaf train mnist --seeds 0 --threads "$1" \
    --out "$out/$2" > "$out/$2.log" 2>&1
}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in 1 2; do
  run "$t" "alone-t$t"
  echo "alone, --threads $t: $(cat "$out/alone-t$t.wall") s wall"
  run "$t" "pair-a-t$t" & run "$t" "pair-b-t$t" & wait
  echo "two side by side, --threads $t each: $(cat "$out/pair-a-t$t.wall") s and $(cat "$out/pair-b-t$t.wall") s wall"
done
