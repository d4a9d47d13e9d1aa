"""The learned-activation learning rate (TMAF levels, pwl and PReLU slopes) tuned on a
validation split with the same budget for every learned activation, never on the test set.

search: the converged-mlp recipe, 10000 training images held out (--val-split 10000),
seed 0, rates 3e-4, 1e-3 (the recipe's lr), 3e-3, 1e-2 -> tuning/<dataset>/<act>/lr<LR>;
streams A (MNIST), B (Fashion-MNIST). final: every activation whose best rate is not the
recipe's, trained on the test set at that rate, seeds 0-4, beside the untuned runs of the
converged study (mlp/<dataset>/<act>-act-lr<LR>/seed<S>; runs made before the option was
named --act-lr live in <act>-tmaf-lr<LR>/ and count as done).
"""

from pathlib import Path

from tmaf_lab.study import CPU_RUN, Run, Study

ARMS = ("prelu", "pwl", "diagonal", "tridiagonal")
RATES = ("3e-4", "1e-3", "3e-3", "1e-2")
STREAM = {"mnist": "A", "fashion-mnist": "B"}


def _search() -> tuple[Run, ...]:
    return tuple(Run("train", f"tuning/{ds}/{act}/lr{lr}", (
        ds, "--recipe", "converged-mlp", "--activation", act, "--act-lr", lr,
        "--val-split", "10000", "--seeds", "0", *CPU_RUN),
        stream=STREAM[ds], arm=act, seed=0, resume=True, dataset=ds)
        for ds in STREAM for act in ARMS for lr in RATES)


def _final(out: Path) -> list[Run]:
    """Test-set runs at each changed best rate (read from the search runs below out/tuning)."""
    from tmaf_lab.train.tuning import best_rates, read_runs

    if not (out / "tuning").is_dir():
        return []
    changed = [b for b in best_rates(read_runs(out / "tuning"))
               if b["best_tmaf_lr"] != b["base_lr"] and b["model"] == "mlp"]
    runs = []
    for seed in range(5):
        for b in changed:
            ds, act, lr = b["dataset"], b["activation"], b["best_tmaf_lr"]
            arm = f"{act}-act-lr{lr}"
            if (out / f"mlp/{ds}/{act}-tmaf-lr{lr}").is_dir():
                arm = f"{act}-tmaf-lr{lr}"
            runs.append(Run("train", f"mlp/{ds}/{arm}/seed{seed}", (
                ds, "--recipe", "converged-mlp", "--activation", act, "--act-lr", str(lr),
                "--seeds", str(seed), *CPU_RUN),
                stream=STREAM[ds], arm=arm, seed=seed, resume=True, dataset=ds))
    return runs


STUDY = Study(
    name="tuning", question="Which learned-activation learning rate is best on a "
    "validation split?", out="results/converged", readme="results/converged/README.md",
    parts={"search": _search(), "final": _final},
    default_parts=("search",),
    reports=(("tuning", "{out}/tuning"),),
)
