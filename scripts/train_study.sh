#!/usr/bin/env bash
# The runs committed under results/train/ (2 CPU cores, one thread per run, two streams in
# parallel). Usage, from the repository root: scripts/train_study.sh A|B (or C|D: stream B in
# two halves)
set -euo pipefail
cd "$(dirname "$0")/.."
T="nice -n 5 .venv/bin/tmaf train"
COMMON=(--threads 1 --device cpu)
R=results/train

stream_a() {  # MLP, full data, 1 epoch, 3 seeds; then CIFAR-10 fastnet on a 10k subset
  for ds in mnist fashion-mnist; do
    for act in relu diagonal tridiagonal; do
      $T $ds --model mlp --activation $act --epochs 1 --seeds 0,1,2 "${COMMON[@]}" \
        --out $R/$ds-mlp/$act --resume
    done
  done
  for act in relu diagonal; do
    $T cifar10 --model fastnet --width 16 --subset 10000 --activation $act --epochs 3 \
      --seeds 0,1 "${COMMON[@]}" --out $R/cifar10-fastnet/$act --resume
  done
}

cnn() {  # CNN (width 16), first 20k training images, 1 epoch, 3 seeds
  for act in relu diagonal tridiagonal; do
    $T "$1" --model cnn --width 16 --subset 20000 --activation $act --epochs 1 \
      --seeds 0,1,2 "${COMMON[@]}" --out $R/$1-cnn/$act --resume
  done
}

stream_b() {
  cnn mnist
  cnn fashion-mnist
}

case "${1:-}" in
  A) stream_a ;;
  B) stream_b ;;
  C) cnn mnist ;;          # stream B split in two, to run in parallel
  D) cnn fashion-mnist ;;
  *) echo "usage: $0 A|B|C|D" >&2; exit 2 ;;
esac
