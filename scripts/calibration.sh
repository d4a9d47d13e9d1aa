#!/usr/bin/env bash
# Issue 12: fixed grids against calibrated grids (tmaf.calibrate before the first step), for
# diagonal and tridiagonal TMAF, on the protocol of the converged studies (scripts/converged.sh),
# 5 seeds, paired by seed. One thread per run; two streams side by side on 2 cores:
#
#   scripts/calibration.sh approx A & scripts/calibration.sh approx B & wait   # A fixed, B calibrated
#   scripts/calibration.sh approx C              # C recalibrated: calibrated, then every 1000 steps
#   scripts/calibration.sh mlp A & scripts/calibration.sh mlp B & wait         # A MNIST, B Fashion
#   scripts/calibration.sh report               # OUT/report/: report.md, stats.json
#
# approx: targets smooth (sin(pi x)), highfreq (sin(16 pi x)) and chirp; ReLU width 32 with
#      parameter counts matched; 10000 Adam steps, cosine over the run; seeds 0-4; diagonal and
#      tridiagonal; the same command with and without --calibrate (and with --calibrate
#      --recalibrate-every 1000: the grids follow training) ->
#      OUT/approx/{fixed,calibrated,recalibrated}/<target>/
# mlp: the converged-mlp recipe (784-512-512-10, 15 epochs) with --calibrate 32 (32 training
#      batches of 128 = 4096 images) -> OUT/mlp/<dataset>/<act>/seed<S>/. The fixed-grid runs
#      are those of the converged study (results/converged/mlp, same recipe and seeds; BASE=...).
#
# Resumable: rerun the same command; finished runs are kept. SEEDS=0,1 (mlp), TARGETS="smooth"
# (approx), OUT=... (default results/calibration), PRINT=1 prints the commands, EXTRA="--dry-run"
# appends options to every tmaf command (a test runs the script that way).
#
# Wall time (2 cores, 1 thread per run, native backend): approx about 20 min per stream
# (C a little more: 9 calibrations per run);
# mlp 5 seeds x 2 activations x about 4.5 min = about 45 min per stream.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
OUT=${OUT:-results/calibration}
BASE=${BASE:-results/converged/mlp}

run() { if [[ -n ${PRINT:-} ]]; then echo "$*"; else echo "[$(date -u +%FT%TZ)] $*"; "$@"; fi; }

approx_stream() {  # $1 fixed|calibrated|recalibrated
  local mode=$1 flag= target dir
  [[ $mode == calibrated ]] && flag=--calibrate
  [[ $mode == recalibrated ]] && flag="--calibrate --recalibrate-every 1000"
  for target in ${TARGETS:-smooth highfreq chirp}; do
    dir=$OUT/approx/$mode/$target
    if [[ -f $dir/results.json ]]; then echo "done: $dir"; continue; fi
    run nice -n 5 "$BIN/tmaf" approx --target "$target" --width 32 --steps 10000 \
      --activations diagonal,tridiagonal --seeds 0,1,2,3,4 --history-points 50 --threads 1 \
      $flag --out "$dir" ${EXTRA:-}
  done
}

mlp_stream() {  # $1 data set
  local ds=$1 seed act dir
  for seed in $(echo "${SEEDS:-0,1,2,3,4}" | tr , ' '); do
    for act in diagonal tridiagonal; do
      dir=$OUT/mlp/$ds/$act/seed$seed
      if [[ -f $dir/results.json ]]; then echo "done: $dir"; continue; fi
      run nice -n 5 "$BIN/tmaf" train "$ds" --recipe converged-mlp --activation "$act" \
        --calibrate 32 --seeds "$seed" --threads 1 --device cpu --out "$dir" --resume ${EXTRA:-}
    done
  done
}

case "${1:-} ${2:-}" in
  "approx A") approx_stream fixed ;;
  "approx B") approx_stream calibrated ;;
  "approx C") approx_stream recalibrated ;;
  "mlp A") mlp_stream mnist ;;
  "mlp B") mlp_stream fashion-mnist ;;
  "report "*)
    [[ -d $OUT/approx/fixed && -d $OUT/approx/calibrated ]] && \
      run "$BIN/python" -m tmaf_lab.report.pair "$OUT/approx/fixed" "$OUT/approx/calibrated" \
        --out "$OUT/report/approx" --title "Calibrated vs fixed grids: function fitting"
    [[ -d $OUT/approx/fixed && -d $OUT/approx/recalibrated ]] && \
      run "$BIN/python" -m tmaf_lab.report.pair "$OUT/approx/fixed" "$OUT/approx/recalibrated" \
        --out "$OUT/report/approx-recalibrated" \
        --title "Recalibrated (every 1000 steps) vs fixed grids: function fitting"
    [[ -d $OUT/mlp ]] && \
      run "$BIN/python" -m tmaf_lab.report.pair "$BASE" "$OUT/mlp" --activations \
        diagonal,tridiagonal --out "$OUT/report/mlp" --title "Calibrated vs fixed grids: MLP"
    true ;;
  *) echo "usage: $0 approx A|B|C, $0 mlp A|B, or $0 report" >&2; exit 2 ;;
esac
