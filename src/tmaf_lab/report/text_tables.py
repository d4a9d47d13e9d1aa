"""Tables of text (GPT) runs ``FOLDER/<arm>/seed<S>`` (``tmaf tables`` generators
``text_runs``, ``text_curve`` and ``text_paired``): losses per arm, the validation curve, and
paired differences of test losses with 95 % t intervals. The runs are read by
:mod:`tmaf_lab.report.text_runs`.
"""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report.stats import CONTINUOUS_TWIN
from tmaf_lab.report.text_runs import loss_cell as _loss_cell
from tmaf_lab.report.text_runs import seeds_text as _seeds_text
from tmaf_lab.report.text_runs import text_results as _text_results
from tmaf_lab.runs import find_runs, read_metrics


def text_run_table(folder: Path) -> str:
    """Per arm (``folder/<arm>/seed<S>/results.json`` of text runs): the seeds, validation and
    test loss (nats/char, mean over seeds), test bits/char, and training seconds per run."""
    from tmaf_lab.seedstats import mean_std

    rows = []
    for arm, rs in _text_results(folder).items():
        mean = {k: mean_std([r[k] for r in rs])[0] for k in ("val_loss", "test_loss", "test_bpc")}
        rows.append((arm, ",".join(str(r["seed"]) for r in rs), rs[0]["steps"], rs[0]["params"],
                     f"{mean['val_loss']:.4f}", f"{mean['test_loss']:.4f}", f"{mean['test_bpc']:.3f}",
                     ", ".join(f"{r['train_seconds']:.0f}" for r in rs)))
    return markdown_table(["activation", "seeds", "steps", "parameters", "val nats/char",
                           "test nats/char", "test bits/char", "train s per run"], rows,
                          align="llrrrrrr")


def text_curve_table(folder: Path, every: int = 300) -> str:
    """Validation loss (nats/char, the fixed curve windows) every ``every`` steps, one column
    per arm of ``folder`` (the mean over its finished runs ``<arm>/seed<S>``, each run's
    metrics.jsonl)."""
    from tmaf_lab.report.stats import order_key

    curves: dict[str, dict[int, dict[int, float]]] = {}  # arm -> step -> seed -> loss
    for run in find_runs(folder, "*/seed*"):  # finished runs only
        arm, seed = run.parent.name, int(run.name[4:])
        for r in read_metrics(run):
            if r["step"] % every == 0:
                curves.setdefault(arm, {}).setdefault(r["step"], {})[seed] = r["val_loss"]
    if not curves:
        raise ValueError(f"table source {folder} has no text run curve (<arm>/seed<S>/metrics.jsonl)")
    arms = sorted(curves, key=order_key)
    seeds = {a: sorted({s for by in curves[a].values() for s in by}) for a in arms}
    steps = sorted({s for a in arms for s in curves[a]})
    rows = [(step, *(f"{sum(v.values()) / len(v):.4f}"
                     if len(v := curves[a].get(step, {})) == len(seeds[a]) else ""
                     for a in arms)) for step in steps]
    return markdown_table(["step", *(f"{a}, seeds {_seeds_text(set(seeds[a]))}" for a in arms)],
                          rows)


def text_paired_table(folder: Path, reference: str = "gelu") -> str:
    """Per arm of ``folder``: the test loss (nats/char) of every seed, the paired difference to
    the ``reference`` arm, to ReLU and, for TMAF, to its continuous twin, with 95 % t intervals
    over the common seeds (negative: lower loss, better)."""
    runs = _text_results(folder)
    if reference not in runs:
        raise ValueError(f"table source {folder} has no finished {reference} run to pair with")
    loss = {arm: {r["seed"]: float(r["test_loss"]) for r in rs} for arm, rs in runs.items()}
    rows = []
    for arm, values in loss.items():
        rows.append((arm, _seeds_text(set(values)), ", ".join(f"{values[s]:.4f}" for s in values),
                     "" if arm == reference else _loss_cell(values, loss[reference]),
                     "" if arm in ("relu", reference) else _loss_cell(values, loss.get("relu")),
                     _loss_cell(values, loss.get(CONTINUOUS_TWIN.get(arm, "")))))
    return markdown_table(["activation", "seeds", "test nats/char per seed",
                           f"− {reference.upper() if reference == 'gelu' else reference}",
                           "− ReLU", "− continuous twin"], rows, align="llllll")
