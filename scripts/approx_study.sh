#!/usr/bin/env bash
# Every result under results/approx/ (except pilot/, see results/approx/README.md) comes from
# this script. Run from the repository root:  bash scripts/approx_study.sh [STEP ...]
# (default: all steps, 1-9).
# Wall times of each command are appended to results/approx/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
T=results/approx/timings.txt
A=".venv/bin/python -m tmaf_lab approx"
run() {  # run NAME CMD...: time one command, keep its stdout tables
  local name=$1; shift
  local t0
  t0=$(date +%s)
  nice -n 5 "$@" > "results/approx/$name.stdout.md"
  echo "$name: $(( $(date +%s) - t0 )) s wall  ($*)" >> "$T"
}
# 1. the default study, exactly `tmaf approx` with no options (but a fixed --out)
step1() { run default $A --out results/approx/default; }
# 2. 2-D targets, default settings, seeds 0 and 1
step2() { run 2d $A --target sin2d --target expsin2d --seeds 0,1 --out results/approx/2d; }
# 3. frequency x width sweep, parameter-matched to ReLU at each width
step3() {
  for w in 16 32 64; do
    run "sweep_w$w" $A --target sin1 --target sin4 --target sin8 --target sin16 --target sin32 \
      --activations relu,diagonal,tridiagonal --width "$w" --seeds 0,1 --no-plots \
      --out "results/approx/sweep/w$w"
  done
  .venv/bin/python -m tmaf_lab.approx.sweep results/approx/sweep > /dev/null
}
# 4. same width for everyone (TMAF gets its extra level parameters on top)
step4() {
  run same_width $A --target sin8 --target sin16 --target sin32 --no-match-params --seeds 0,1 \
    --no-plots --out results/approx/same_width
}
# 5. does the gap survive a 5x longer budget?
step5() {
  run long $A --target highfreq --activations relu,diagonal --steps 5000 --seeds 0,1 \
    --out results/approx/long
}
# 6. is ReLU's failure on sin8 an artefact of the shared learning rate? (3e-3 is in sweep/w32)
step6() {
  for lr in 1e-3 1e-2 3e-2; do
    run "lr_$lr" $A --target sin8 --activations relu,diagonal --lr "$lr" --seeds 0,1 --no-plots \
      --out "results/approx/lr/lr$lr"
  done
}
# 7. smooth rivals (GELU, SiLU, tanh) on one smooth and one oscillating target
step7() {
  run rivals $A --target smooth --target sin8 --activations relu,gelu,silu,tanh,diagonal \
    --seeds 0,1 --no-plots --out results/approx/rivals
}
# 8. is ReLU handicapped by the zero-bias He init (all first-layer kinks at x = 0)?
#    PyTorch's default init instead; the He counterpart is rivals/ (same targets, seeds)
step8() {
  run init_torch $A --target sin8 --target smooth --activations relu,diagonal --seeds 0,1 \
    --no-plots --init torch --out results/approx/init_torch
}
# 9. the growing-frequency and localised-feature presets, default settings, seeds 0 and 1
step9() {
  run chirp_localized $A --target chirp --target localized --seeds 0,1 \
    --out results/approx/chirp_localized
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), steps: ${*:-all}" >> "$T"
for s in "${@:-1 2 3 4 5 6 7 8 9}"; do
  for t in $s; do "step$t"; done
done
