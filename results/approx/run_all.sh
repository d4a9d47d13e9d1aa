#!/usr/bin/env bash
# Every result under results/approx/ (except pilot/, see COMMANDS.md) comes from this script.
# Run from the repository root:  bash results/approx/run_all.sh
# Wall times of each command are appended to results/approx/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=results/approx/timings.txt
A=".venv/bin/python -m tmaf_lab approx"
run() {  # run NAME CMD...: time one command, keep its stdout tables
  local name=$1; shift
  local t0=$(date +%s)
  nice -n 5 "$@" > "results/approx/$name.stdout.md"
  echo "$name: $(( $(date +%s) - t0 )) s wall  ($*)" >> "$T"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$T"
# 1. the default study, exactly `tmaf approx` with no options (but a fixed --out)
run default $A --out results/approx/default
# 2. 2-D targets, default settings, 2 seeds
run 2d $A --target sin2d --target expsin2d --seeds 2 --out results/approx/2d
# 3. frequency x width sweep, parameter-matched to ReLU at each width
for w in 16 32 64; do
  run "sweep_w$w" $A --target sin1 --target sin4 --target sin8 --target sin16 --target sin32 \
    --activations relu,diagonal,tridiagonal --width "$w" --seeds 2 --no-plots \
    --out "results/approx/sweep/w$w"
done
.venv/bin/python -m tmaf_lab.approx.sweep results/approx/sweep > /dev/null
# 4. same width for everyone (TMAF gets its extra level parameters on top)
run same_width $A --target sin8 --target sin16 --target sin32 --no-match-params --seeds 2 \
  --no-plots --out results/approx/same_width
# 5. does the gap survive a 5x longer budget?
run long $A --target highfreq --activations relu,diagonal --steps 5000 --seeds 2 \
  --out results/approx/long
