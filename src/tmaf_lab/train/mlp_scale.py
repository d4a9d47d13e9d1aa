"""Where a GPT's MLP activations operate: the scale of their inputs and, for TMAF, the grid.

:func:`mlp_scale` runs the model once (no gradients, evaluation mode) on a fixed batch of
windows and records, for every block's MLP activation, the input it sees (the pre-activation
W_1 LN(x); for the gated MLP the [gate, value] pair):

- ``pre_std``: its standard deviation over every value of the batch;
- TMAF layers: ``outside``, the fraction of values below the first or above the last
  breakpoint of their channel's grid (where the layer is linear, as
  :func:`tmaf.outside_fraction`), and ``occupancy``, the fraction of values in each of the
  m + 1 intervals the m breakpoints cut the line into (first and last: outside), and
  ``used``, how many of the m - 1 inner intervals hold at least 1 % of the values;
- xIELU: its two scalars ``alpha_p``, ``alpha_n``.

The text trainer logs it at steps 0 and 300 and at the end of a run (results.json
``mlp_scale``) on the first :data:`WINDOWS` fixed validation windows of its curve.
"""

from __future__ import annotations

import torch
import torch.nn as nn

WINDOWS = 16
STEPS = (0, 300)  # and the last step
USED = 0.01


def _round(x: float) -> float:
    return float(f"{x:.5g}")


def grid_occupancy(x: torch.Tensor, breakpoints: torch.Tensor) -> list[float]:
    """Fractions of the finite values of ``x`` (..., C) in each of the m + 1 intervals of
    ``breakpoints`` ((m,) shared, or (C, m) per channel): interval 0 is x < b_0, interval k is
    b_{k-1} <= x < b_k, interval m is x >= b_{m-1}."""
    c = x.shape[-1]
    rows = x.reshape(-1, c).T.contiguous()  # (C, N)
    bp = breakpoints.to(rows.dtype)
    bp = bp.expand(c, bp.shape[-1]).contiguous() if bp.dim() == 1 else bp.reshape(c, -1)
    finite = torch.isfinite(rows)
    idx = torch.searchsorted(bp, rows.nan_to_num(), right=True)[finite]
    if idx.numel() == 0:
        raise ValueError("grid_occupancy: no finite input value")
    counts = torch.bincount(idx, minlength=bp.shape[-1] + 1).double()
    return (counts / counts.sum()).tolist()


def _block_record(act: nn.Module, x: torch.Tensor) -> dict:
    import tmaf
    from tmaf_lab.baselines import XIELU

    rec = {"pre_std": _round(float(x.float().std()))}
    if isinstance(act, tmaf.BandedTMAF):
        occ = grid_occupancy(x.movedim(act.channel_dim, -1), act.breakpoints)
        rec.update(outside=_round(occ[0] + occ[-1]), used=sum(o >= USED for o in occ[1:-1]),
                   occupancy=[_round(o) for o in occ])
    if isinstance(act, XIELU):
        rec.update(alpha_p=_round(float(act.alpha_p)), alpha_n=_round(float(act.alpha_n)))
    return rec


@torch.no_grad()
def mlp_scale(net: nn.Module, tokens: torch.Tensor) -> list[dict]:
    """One record per block (model order) of ``net`` (a :class:`tmaf_lab.gpt.GPT`) on the
    token windows ``tokens`` (B, T); the model's training mode is restored."""
    seen: dict[int, dict] = {}
    blocks = list(net.blocks)
    hooks = [blk.mlp.act.register_forward_pre_hook(
        lambda mod, args, i=i: seen.__setitem__(i, _block_record(mod, args[0].detach())))
        for i, blk in enumerate(blocks)]
    mode = net.training
    try:
        net.eval()
        net(tokens)
    finally:
        net.train(mode)
        for h in hooks:
            h.remove()
    if len(seen) != len(blocks):
        raise RuntimeError(f"mlp_scale: {len(blocks) - len(seen)} block activation(s) never ran")
    return [seen[i] for i in range(len(blocks))]
