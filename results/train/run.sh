#!/usr/bin/env bash
# The runs committed under results/train/ (2 shared CPU cores, one thread per run, two
# streams in parallel). Usage: results/train/run.sh A|B   (each stream logs to its own file)
set -euo pipefail
cd "$(dirname "$0")/../.."
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

stream_b() {  # CNN (width 16), first 20k training images, 1 epoch, 2 seeds
  for ds in mnist fashion-mnist; do
    for act in relu diagonal tridiagonal; do
      $T $ds --model cnn --width 16 --subset 20000 --activation $act --epochs 1 \
        --seeds 0,1 "${COMMON[@]}" --out $R/$ds-cnn/$act --resume
    done
  done
}

case "${1:-}" in
  A) stream_a ;;
  B) stream_b ;;
  *) echo "usage: $0 A|B" >&2; exit 2 ;;
esac
