#!/usr/bin/env bash
# Issue 10: the learned-activation learning rate (TMAF levels, pwl and PReLU slopes:
# --tmaf-lr) tuned on a validation split, with the same budget for every learned activation,
# never on the test set. The converged-mlp recipe, 10000 training images held out
# (--val-split 10000), seed 0, --tmaf-lr in {3e-4, 1e-3 (the recipe's lr), 3e-3, 1e-2}:
#
#   scripts/tune_lr.sh A & scripts/tune_lr.sh B & wait     # A = MNIST, B = Fashion-MNIST
#   scripts/tune_lr.sh report                              # OUT/tuning.md, tuning.json
#   scripts/tune_lr.sh final A & scripts/tune_lr.sh final B & wait
#
# final: every activation whose best rate is not the recipe's (python -m tmaf_lab.train.tuning
# OUT --changed) is trained on the test set at that rate, seeds 0-4 (SEEDS=...), the recipe
# otherwise unchanged -> RUNS/<dataset>/<act>-tmaf-lr<LR>/seed<S>/ (default
# RUNS=results/converged/mlp), beside the untuned runs: `tmaf report` shows it as the arm
# "<act> (tmaf_lr=LR)" of the same study, paired with ReLU by seed. About 2.5 min a run.
#
# -> OUT/<dataset>/<activation>/lr<LR>/ (default OUT=results/converged/tuning). 16 runs per
# stream, about 2.5 min each at 1 thread (about 40 min). Resumable; PRINT=1 prints the
# commands, EXTRA="--dry-run" appends options (a test uses both), ACTS="pwl diagonal", LRS=...
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
OUT=${OUT:-results/converged/tuning}

run() { if [[ -n ${PRINT:-} ]]; then echo "$*"; else echo "[$(date -u +%FT%TZ)] $*"; "$@"; fi; }

stream() {  # $1 data set
  local ds=$1 act lr dir
  for act in ${ACTS:-prelu pwl diagonal tridiagonal}; do
    for lr in ${LRS:-3e-4 1e-3 3e-3 1e-2}; do
      dir=$OUT/$ds/$act/lr$lr
      if [[ -f $dir/results.json ]]; then echo "done: $dir"; continue; fi
      run nice -n 5 "$BIN/tmaf" train "$ds" --recipe converged-mlp --activation "$act" \
        --tmaf-lr "$lr" --val-split 10000 --seeds 0 --threads 1 --device cpu --out "$dir" \
        --resume ${EXTRA:-}
    done
  done
}

final() {  # $1 data set: test-set runs at each changed best rate
  local ds=$1 changed seed d model act lr dir
  changed=$("$BIN/python" -m tmaf_lab.train.tuning "$OUT" --changed)
  [[ -n $changed ]] || echo "nothing to train: every best rate is the recipe's" >&2
  for seed in $(echo "${SEEDS:-0,1,2,3,4}" | tr , ' '); do
    while read -r d model act lr <&3; do
      [[ $d == "$ds" && $model == mlp ]] || continue
      dir=${RUNS:-results/converged/mlp}/$ds/$act-tmaf-lr$lr/seed$seed
      if [[ -f $dir/results.json ]]; then echo "done: $dir"; continue; fi
      run nice -n 5 "$BIN/tmaf" train "$ds" --recipe converged-mlp --activation "$act" \
        --tmaf-lr "$lr" --seeds "$seed" --threads 1 --device cpu --out "$dir" --resume \
        ${EXTRA:-}
    done 3<<< "$changed"
  done
}

case "${1:-} ${2:-}" in
  "A ") stream mnist ;;
  "B ") stream fashion-mnist ;;
  "report ") run "$BIN/python" -m tmaf_lab.train.tuning "$OUT" ;;
  "final A") final mnist ;;
  "final B") final fashion-mnist ;;
  *) echo "usage: $0 A|B|report|final A|final B" >&2; exit 2 ;;
esac
