"""MNIST, Fashion-MNIST (MLP 1 epoch on the full data, CNN width 16 on the first 20000
images) and CIFAR-10 (fastnet width 16 on a 10000-image subset, 3 epochs) at small CPU
budgets: relu, diagonal, tridiagonal. Stream A: the MLPs then CIFAR-10; B: the CNNs.
"""

from tmaf_lab.study import CPU_RUN, Run, Study

TMAF3 = ("relu", "diagonal", "tridiagonal")


def _grid(ds, model, arms, seeds, options, stream):
    folder = f"{ds}-{model}"
    return tuple(Run("train", f"{folder}/{act}", (
        ds, "--model", model, *options, "--activation", act, "--seeds",
        ",".join(map(str, seeds)), *CPU_RUN), stream=stream, arm=act, resume=True, dataset=ds,
        markers=tuple(f"seed{s}/results.json" for s in seeds)) for act in arms)


STUDY = Study(
    name="train", question="How do TMAF activations train image classifiers at small CPU "
    "budgets?", out="results/train", readme="results/train/README.md",
    parts={
        "mlp": sum((_grid(ds, "mlp", TMAF3, (0, 1, 2), ("--epochs", "1"), "A")
                    for ds in ("mnist", "fashion-mnist")), ()),
        "cifar10": _grid("cifar10", "fastnet", ("relu", "diagonal"), (0, 1),
                         ("--width", "16", "--subset", "10000", "--epochs", "3"), "A"),
        "cnn": sum((_grid(ds, "cnn", TMAF3, (0, 1, 2), ("--width", "16", "--subset", "20000",
                                                         "--epochs", "1"), ds)
                    for ds in ("mnist", "fashion-mnist")), ()),
    },
    reports=(("report", "{out}", "--out", "{out}/report"),),
)
