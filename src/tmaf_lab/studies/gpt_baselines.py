"""The character-level GPT against the baselines transformer practitioners use (recipe
cpu-gpt-unit: cpu-gpt with the MLP pre-activations at about unit scale and weight decay on the
matrices only; 3000 steps, one thread per run).

main: ReLU² (the reference), GELU, ReLU, LeakyReLU(0.5)², SwiGLU at the plain MLP's parameter
count (hidden width 341 at width 128), xIELU (two trainable scalars per layer), diagonal TMAF
and the continuous diagonal and tridiagonal forms trained through their knot values
(pwl_knots, continuous_tridiagonal_knots); seeds 0-4, seed by seed (every arm of seed 0
first), one stream. Runs: results/gpt-baselines/shakespeare-gpt-unit/<arm>/seed<S>.

long: ReLU² and the three arms with the lowest mean test loss of the finished main part, at
twice the steps (6000; warm-up and cosine stretch with it), seeds 0-2. The three are read
from the main part's results.json files once every main run has finished, unless
:data:`LONG_ARMS` pins them (set it to the chosen arms when the part starts, so its plan does
not move). Runs: results/gpt-baselines/shakespeare-gpt-unit-6000/<arm>/seed<S>.

match: the TMAF form :data:`MATCH_FORM` started from ReLU² by the function-matching start
(``FORM@relu2``: init="match", match="relu2"), seeds 0-4 under the main part's protocol,
beside its arms. Planned only where the core has init="match". The form is pinned to
continuous_tridiagonal_knots before the main part finished, so that this part and the
finetune part run beside it: it is the one TMAF form resolved above ReLU in the GELU-init GPT
study (results/gpt) and the best form of the Fashion-MNIST CNN. With MATCH_FORM = None the
form is the TMAF arm of the finished main part with the lowest mean test loss.

finetune: the main part's ReLU² models (seeds 0-2, their final checkpoint.pt) continued for
1000 steps (the recipe's warm-up and cosine over them, peak lr 3e-4), once as they are
(``relu2``) and once converted to the match part's form with the ReLU²-matching start
(``FORM@relu2``), paired by seed; results.json ``start`` holds the validation loss just before
and after the conversion. Runs: results/gpt-baselines/shakespeare-gpt-unit-finetune/<arm>/seed<S>.
"""

from __future__ import annotations

import json
from pathlib import Path

from tmaf_lab.study import Run, Study, train_grid

RECIPE = ("--recipe", "cpu-gpt-unit")
REFERENCE = "relu2"
ARMS = ("relu2", "gelu", "relu", "leaky_relu2", "swiglu", "xielu", "diagonal", "pwl_knots",
        "continuous_tridiagonal_knots")
SEEDS = range(5)
MAIN = "{dataset}-gpt-unit"
LONG = "{dataset}-gpt-unit-6000"
LONG_SEEDS = range(3)
#: the three best arms of the main part, pinned once chosen (None: read from the results)
LONG_ARMS: tuple[str, ...] | None = None
TMAF_ARMS = ("diagonal", "pwl_knots", "continuous_tridiagonal_knots")
MATCH_FUNCTION = REFERENCE
#: the TMAF form of the match and finetune parts (None: the best of TMAF_ARMS in the main part)
MATCH_FORM: str | None = "continuous_tridiagonal_knots"

_MAIN = train_grid(MAIN, ("shakespeare",), SEEDS, ARMS, RECIPE)


def best_arms(out: Path, count: int = 3, among: tuple[str, ...] | None = None
              ) -> tuple[str, ...]:
    """The ``count`` arms other than the reference (of ``among``, default all) with the
    lowest mean test loss over the main part's runs below ``out``; ValueError while a main
    run is unfinished."""
    losses: dict[str, list[float]] = {}
    missing = []
    for run in _MAIN:
        path = out / run.folder / "results.json"
        if not path.is_file():
            missing.append(run.folder)
            continue
        losses.setdefault(run.arm, []).append(float(json.loads(path.read_text())["test_loss"]))
    if missing:
        raise ValueError(f"part long is chosen by the main part's results: {len(missing)} of "
                         f"{len(_MAIN)} main runs are unfinished (first: {missing[0]}); finish "
                         "them or pin LONG_ARMS in tmaf_lab/studies/gpt_baselines.py")
    means = {arm: sum(v) / len(v) for arm, v in losses.items()
             if arm != REFERENCE and (among is None or arm in among)}
    return tuple(sorted(means, key=means.get)[:count])


def _long(out: Path) -> list[Run]:
    arms = (REFERENCE, *(LONG_ARMS if LONG_ARMS is not None else best_arms(out)))
    return list(train_grid(LONG, ("shakespeare",), LONG_SEEDS, arms,
                           (*RECIPE, "--steps", "6000")))


def _match(out: Path) -> list[Run]:
    import tmaf

    if "match" not in tmaf.INITS:
        raise ValueError("part match needs the function-matching start (init='match'), which "
                         "this tmaf does not have")
    form = MATCH_FORM if MATCH_FORM is not None else best_arms(out, 1, TMAF_ARMS)[0]
    arm = f"{form}@{MATCH_FUNCTION}"
    return list(train_grid(MAIN, ("shakespeare",), SEEDS, (arm,), RECIPE))


FINETUNE = "{dataset}-gpt-unit-finetune"
FINETUNE_OPTIONS = ("--steps", "1000", "--lr", "3e-4")
FINETUNE_SEEDS = range(3)


def _finetune(out: Path) -> list[Run]:
    form = _match(out)[0].arm  # FORM@relu2 (raises where init="match" is missing)
    runs = []
    for seed in FINETUNE_SEEDS:
        source = out / MAIN.format(dataset="shakespeare") / REFERENCE / f"seed{seed}"
        runs += train_grid(FINETUNE, ("shakespeare",), (seed,), (REFERENCE, form),
                           (*RECIPE, *FINETUNE_OPTIONS, "--start-from", str(source)))
    return runs


STUDY = Study(
    name="gpt-baselines",
    question="Does TMAF beat ReLU², SwiGLU and xIELU in a character-level GPT at unit scale?",
    out="results/gpt-baselines", readme="results/gpt-baselines/README.md",
    parts={"main": _MAIN, "long": _long, "match": _match, "finetune": _finetune},
    default_parts=("main",),
)
