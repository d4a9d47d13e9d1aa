"""Continue a finished text run's model under a new run: ``tmaf train shakespeare ...
--start-from RUN_DIR`` (the fine-tuning comparison of results/gpt-baselines).

The new run's model starts with the weights of RUN_DIR's final checkpoint (checkpoint.pt,
written at the run's last step): every parameter and buffer outside the MLP activations is
copied, and must exist in the checkpoint with the same shape; the MLP activations' own
parameters are copied only where the new run has the same activation as RUN_DIR, and keep
their start otherwise (so ``--activation FORM@relu2`` converts a ReLU² model with the
function-matching start). The optimiser, schedule and step count start afresh; batches are
drawn by (seed, step) as in any run.

results.json ``start`` records where the run started: the source run, its activation, its
last curve point's validation loss on the fixed curve windows (``source_val_loss``: just before
the conversion) and this model's loss on the same windows before its first step
(``start_val_loss``: just after).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from ..runs import RunFileError, is_finished, read_metrics
from . import checkpoint as ckpt
from .trainer import RunError

#: the config fields that must agree between the source run and the new one
SHAPE_FIELDS = ("model", "dataset", "width", "depth", "heads", "context")
ACT_KEY = ".mlp.act."


def load_start(net: nn.Module, cfg, source: Path) -> dict:
    """Copy RUN_DIR's final weights into ``net`` (rules in the module docstring); returns the
    ``start`` record without ``start_val_loss``. RunError for a missing or unfinished source,
    another model shape, or a parameter missing or of another shape."""
    if not is_finished(source):
        raise RunError(f"--start-from {source}: expected a finished run (results.json), "
                       "found none")
    try:
        state = ckpt.load(source)
    except ValueError as e:
        raise RunError(f"--start-from {source}: {e}") from e
    if state is None:
        raise RunError(f"--start-from {source}: its checkpoint.pt is missing (the final "
                       "weights are kept there; rerun the source run to rebuild it)")
    saved = state["config"]
    diff = [f"{k}: {saved.get(k)!r} there, {getattr(cfg, k)!r} here" for k in SHAPE_FIELDS
            if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise RunError(f"--start-from {source}: another model: " + "; ".join(diff))
    same_act = saved.get("activation") == cfg.activation
    weights, own = state["model"], net.state_dict()
    keep = {k: v for k, v in own.items() if ACT_KEY in k and not same_act}
    wrong = [k for k, v in own.items() if k not in keep
             and (k not in weights or weights[k].shape != v.shape)]
    if wrong:
        raise RunError(f"--start-from {source}: {len(wrong)} parameter(s) missing or of "
                       f"another shape there (first: {wrong[0]})")
    net.load_state_dict({**{k: weights[k] for k in own if k not in keep}, **keep})
    try:
        last = read_metrics(source)[-1]
    except (RunFileError, IndexError):
        raise RunError(f"--start-from {source}: expected its metrics.jsonl with the last "
                       "validation loss, found none or a corrupt one") from None
    return {"source": str(source), "source_activation": saved.get("activation"),
            "source_steps": last["step"], "source_val_loss": last["val_loss"]}
