"""Tables of the GPT baselines study (``tmaf tables`` generators ``text_paired_refs`` and
``text_scale``), read from text runs ``FOLDER/<arm>/seed<S>/results.json``.

- ``text_paired_refs FOLDER:REF1,REF2,...``: per arm, the test loss (nats/char) of every seed,
  its mean, and the paired difference to each reference arm with its 95 % t interval over the
  common seeds (bold where it excludes 0; negative: lower loss, better); a reference with no
  finished run yet leaves its column empty (none at all is an error).
- ``text_scale FOLDER``: per arm, where its MLP activations operate (results.json
  ``mlp_scale``, :mod:`tmaf_lab.train.mlp_scale`): the standard deviation of the MLP
  pre-activations, and for TMAF arms the fraction of them outside the grid and the number of
  the grid's inner intervals holding at least 1 % of them, at step 0, step 300 and the last
  step, each the mean over the blocks and the finished seeds.
- ``text_finetune FOLDER:REF``: runs started from another run's final checkpoint
  (``tmaf train --start-from``): per arm, the curve-window validation loss of the source run
  and of the started model before its first step (results.json ``start``: what a conversion
  changed), the test loss per seed and its mean, and the paired difference to the arm REF
  (continued unchanged) with its 95 % t interval.
"""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.mdtable import markdown_table
from tmaf_lab.report.text_runs import loss_cell as _loss_cell
from tmaf_lab.report.text_runs import seeds_text as _seeds_text
from tmaf_lab.report.text_runs import text_results as _text_results

NAMES = {"relu2": "ReLU²", "gelu": "GELU", "relu": "ReLU"}


def _label(arm: str) -> str:
    return NAMES.get(arm, arm)


def text_paired_refs_table(folder: Path, references: list[str]) -> str:
    runs = _text_results(folder)
    if not any(r in runs for r in references):
        raise ValueError(f"table source {folder} has no finished run of the reference(s) "
                         f"{', '.join(references) or '(none given)'} to pair with")
    loss = {arm: {r["seed"]: float(r["test_loss"]) for r in rs} for arm, rs in runs.items()}
    rows = []
    for arm, values in loss.items():
        mean = sum(values.values()) / len(values)
        rows.append((arm, _seeds_text(set(values)), ", ".join(f"{values[s]:.4f}" for s in values),
                     f"{mean:.4f}", *("" if arm == ref else _loss_cell(values, loss.get(ref))
                                      for ref in references)))
    return markdown_table(["activation", "seeds", "test nats/char per seed", "mean",
                           *(f"− {_label(r)}" for r in references)], rows,
                          align="llll" + "l" * len(references))


def _at(records: list[dict], step: int | None) -> list[dict] | None:
    """The blocks of the record at ``step`` (None: the last record)."""
    if not records:
        return None
    if step is None:
        return records[-1]["blocks"]
    return next((r["blocks"] for r in records if r["step"] == step), None)


def _mean_cell(runs: list[dict], step: int | None, key: str, digits: int) -> str:
    values = []
    for res in runs:
        blocks = _at(res.get("mlp_scale", []), step)
        if blocks is None or any(key not in b for b in blocks):
            return ""
        values.append(sum(b[key] for b in blocks) / len(blocks))
    return f"{sum(values) / len(values):.{digits}f}" if values else ""


def text_scale_table(folder: Path) -> str:
    rows = []
    for arm, runs in _text_results(folder).items():
        if not all(r.get("mlp_scale") for r in runs):
            raise ValueError(f"table source {folder}/{arm}: a run has no mlp_scale in its "
                             "results.json (made before the scale log)")
        cells = []
        for key, digits in (("pre_std", 3), ("outside", 4), ("used", 1)):
            cells.append(" / ".join(_mean_cell(runs, s, key, digits) for s in (0, 300, None))
                         if "outside" in runs[0]["mlp_scale"][0]["blocks"][0] or key == "pre_std"
                         else "")
        rows.append((arm, _seeds_text({r["seed"] for r in runs}), *cells))
    return markdown_table(["activation", "seeds", "pre-activation std, step 0 / 300 / end",
                           "outside the grid", "inner intervals with >= 1 %"], rows,
                          align="lllll")


def text_finetune_table(folder: Path, reference: str) -> str:
    runs = _text_results(folder)
    if reference not in runs:
        raise ValueError(f"table source {folder} has no finished run of the reference "
                         f"{reference!r} to pair with")
    loss = {arm: {r["seed"]: float(r["test_loss"]) for r in rs} for arm, rs in runs.items()}
    rows = []
    for arm, rs in runs.items():
        if any("start" not in r for r in rs):
            raise ValueError(f"table source {folder}/{arm}: a run has no start in its "
                             "results.json (not started with --start-from)")
        jumps = [r["start"]["start_val_loss"] - r["start"]["source_val_loss"] for r in rs]
        values = loss[arm]
        rows.append((arm, _seeds_text(set(values)),
                     ", ".join(f"{r['start']['source_val_loss']:.4f}" for r in rs),
                     f"{max(jumps, key=abs):+.2e}",
                     ", ".join(f"{values[s]:.4f}" for s in values),
                     f"{sum(values.values()) / len(values):.4f}",
                     "" if arm == reference else _loss_cell(values, loss[reference])))
    return markdown_table(["activation", "seeds", "source val loss per seed",
                           "largest val change at the start", "test nats/char per seed", "mean",
                           f"− {_label(reference)} continued"], rows, align="lllllll")
