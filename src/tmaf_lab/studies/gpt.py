"""The character-level GPT on Shakespeare (recipe cpu-gpt, 3000 steps, one thread per run):
the MLP activation GELU (the transformer default) against ReLU, diagonal and tridiagonal TMAF
and their continuous forms (pwl = continuous_diagonal, continuous_tridiagonal), seeds 0-4, seed
by seed (every arm of seed 0 first), two streams. Runs: results/gpt/shakespeare-gpt/<arm>/seed<S>.

schedule: GELU and ReLU, seed 0, on the same recipe at twice the steps (6000; the warm-up
and cosine stretch with it): whether GELU's gap is one of speed or of the end point.
Runs: results/gpt/shakespeare-gpt-6000/<arm>/seed0.
"""

from dataclasses import replace

from tmaf_lab.study import Study, train_grid

ARMS = ("gelu", "relu", "pwl", "diagonal", "tridiagonal", "continuous_tridiagonal")

_runs = train_grid("{dataset}-gpt", ("shakespeare",), range(5), ARMS, ("--recipe", "cpu-gpt"))
_schedule = train_grid("{dataset}-gpt-6000", ("shakespeare",), (0,), ("gelu", "relu"),
                       ("--recipe", "cpu-gpt", "--steps", "6000"))

STUDY = Study(
    name="gpt", question="Does TMAF in place of GELU improve a character-level GPT's test loss?",
    out="results/gpt", readme="results/gpt/README.md",
    parts={"main": tuple(replace(r, stream="AB"[i % 2]) for i, r in enumerate(_runs)),
           "schedule": tuple(replace(r, stream="AB"[i % 2]) for i, r in enumerate(_schedule))},
    default_parts=("main",),
    reports=(),
)
