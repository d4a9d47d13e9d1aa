"""The approx and image studies at paper scale, on the device that is there (a GPU: hours).

approx: the default targets and the two 2-D targets, 20000 steps at width 64, seeds 0-4.
train: MNIST and Fashion-MNIST with the MLP and the CNN for 20 epochs, seeds 0-4, and CIFAR-10
with ResNet-18 (SGD lr 0.1, weight decay 5e-4, batch 128, cosine, 200 epochs), seeds 0-2; relu,
prelu, diagonal and tridiagonal throughout. Runs: results/full/approx/<name>,
results/full/train/<dataset>-<model>/<arm>/seed<S>.
"""

from tmaf_lab.study import Study, approx_run, train_grid

ARMS = ("relu", "prelu", "diagonal", "tridiagonal")
SEEDS = "0,1,2,3,4"
LONG = ("--steps", "20000", "--width", "64", "--activations", ",".join(ARMS), "--seeds", SEEDS)


def _images(dataset: str, model: str, epochs: int, seeds, options=()):
    return train_grid(f"train/{{dataset}}-{model}", (dataset,), seeds, ARMS,
                      ("--model", model, "--epochs", str(epochs), *options), common=())


STUDY = Study(
    name="full", question="Do the approx and image results hold at paper scale?",
    out="results/full",
    parts={
        "approx": (approx_run("approx/default", LONG, markers=("summary.csv",)),
                   approx_run("approx/2d", ("--target", "sin2d", "--target", "expsin2d", *LONG),
                              markers=("summary.csv",))),
        "train": sum((_images(ds, m, 20, range(5)) for ds in ("mnist", "fashion-mnist")
                      for m in ("mlp", "cnn")), ())
        + _images("cifar10", "resnet18", 200, range(3),
                  ("--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "5e-4",
                   "--batch-size", "128", "--schedule", "cosine")),
    },
    reports=(("report", "{out}", "--out", "{out}/report"),),
)
