"""CIFAR-10 at a competent accuracy on the CPU (recipe cpu-cifar: airbench94's techniques at
width 32, 15 epochs, one thread per run).

pilot: ReLU, seed 0, the recipe (the main part's relu/seed0, one run serving both) and the
recipe with one technique taken out (the effect of test-time augmentation and of the weight
average are read from every run's final evaluation, results.json ``final``). main: relu
(gated: mean >= 91.0 %), gelu (airbench's own activation), pwl (= continuous_diagonal),
diagonal and tridiagonal TMAF, seeds 0-2, seed by seed, two streams. more: prelu and
continuous_tridiagonal, seeds 0-2, and every main arm's seeds 3-4. calibrated: diagonal TMAF
with its grids calibrated on 8 batches before the first step, seeds 0-2. Runs:
results/cifar/cifar10-airbench/<arm>/seed<S>.
"""

from dataclasses import replace

from tmaf_lab.study import CPU_RUN, Run, Study, train_grid

RECIPE = ("--recipe", "cpu-cifar")
ARMS = ("relu", "gelu", "pwl", "diagonal", "tridiagonal")
MORE_ARMS = ("prelu", "continuous_tridiagonal")
# (folder, options taken out of or changed in the recipe)
ABLATIONS = (("plain-airbench", ("--model", "airbench", "--whiten-bias-epochs", "0")),
         ("no-bn-bias-lr", ("--bn-bias-lr-scale", "1")),
         ("pad4-crop", ("--augment", "on")))


def _streams(runs) -> tuple[Run, ...]:
    return tuple(replace(r, stream="AB"[i % 2]) for i, r in enumerate(runs))


_GRID = "{dataset}-airbench"
_MAIN = _streams(train_grid(_GRID, ("cifar10",), range(3), ARMS, RECIPE, gate=True))


def _pilot() -> tuple[Run, ...]:
    recipe = next(r for r in _MAIN if r.arm == "relu" and r.seed == 0)
    return (recipe, *(Run("train", f"pilot/{name}/relu/seed0",
                          ("cifar10", *RECIPE, *options, "--seeds", "0", *CPU_RUN),
                          stream="BA"[i % 2], arm="relu", seed=0, resume=True, dataset="cifar10")
                      for i, (name, options) in enumerate(ABLATIONS)))


STUDY = Study(
    name="cifar", question="Does TMAF beat ReLU and GELU on CIFAR-10 at a competent accuracy?",
    out="results/cifar", readme="results/cifar/README.md",
    parts={
        "pilot": _pilot(),
        "main": _MAIN,
        "more": _streams(train_grid(_GRID, ("cifar10",), range(3), MORE_ARMS, RECIPE)
                         + train_grid(_GRID, ("cifar10",), (3, 4), ARMS, RECIPE, gate=True)),
        "calibrated": _streams(train_grid(_GRID, ("cifar10",), range(3),
                                          (("diagonal-calibrated", "diagonal",
                                            ("--calibrate", "8")),), RECIPE)),
    },
    default_parts=("pilot", "main"),
    reports=(("report", "{out}/cifar10-airbench", "--out", "{out}/cifar10-airbench/report",
              "--title", "CIFAR-10, recipe cpu-cifar"),),
)
