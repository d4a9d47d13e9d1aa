"""CIFAR-10 at airbench94's size on one GPU, and the CUDA benchmark, in about 8 minutes.

train: recipe ``gpu-cifar`` (cpu-cifar at width 64, 10 epochs, bf16 autocast) for relu, gelu,
pwl, diagonal and tridiagonal, seeds 0-9, seed by seed (every arm of seed 0 first), on the
device that is there (``--device auto``) at torch's thread count, nondeterministic kernels
allowed. Run it with ``--minutes 8`` so that no round of seeds starts that would end after the
budget (every arm ends with the same seeds); rerunning continues it. bench: ``tmaf bench
--quick --parts act,train`` (on a GPU: the compiled backend, one shape, m = 9). Runs:
results/gpu/train/cifar10-airbench/<arm>/seed<S>, results/gpu/bench. ``tmaf study gpu
--dry-run`` runs it on the CPU at toy sizes (width 8, 2 steps per run, synthetic images when
CIFAR-10 is not installed) in under a minute.
"""

from tmaf_lab.study import Run, Study, train_grid

ARMS = ("relu", "gelu", "pwl", "diagonal", "tridiagonal")

STUDY = Study(
    name="gpu", question="Does TMAF beat ReLU and GELU on CIFAR-10 at airbench94's size on one "
    "GPU?", out="results/gpu",
    parts={
        "train": train_grid("train/{dataset}-airbench", ("cifar10",), range(10), ARMS,
                            ("--recipe", "gpu-cifar", "--nondeterministic"), common=()),
        "bench": (Run("bench", "bench", ("--quick", "--parts", "act,train"), stream="bench",
                      markers=("summary.md",)),),
    },
    dry_train=("--width", "8", "--batch-size", "32", "--eval-batch-size", "256"),
    reports=(("report", "{out}/train", "--out", "{out}/report",
              "--title", "GPU study: CIFAR-10 airbench"),),
)
