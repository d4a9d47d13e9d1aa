"""Literal reference implementation of banded TMAF (METHOD.md sections 1-3).

Slow and obviously correct: a Python loop over output channels i and band offsets d, an explicit
interval lookup per input channel j = i + d with ``torch.bucketize(..., right=False)`` (intervals
closed on the right), and plain indexing of the level table. Autograd provides the backward.
It is the ground truth that the fast path is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(x: Tensor, levels: Tensor, breakpoints: Tensor) -> torch.dtype:
    """Arithmetic runs in the promoted dtype of input, levels and breakpoints, never below float32.

    Comparing in the widest dtype keeps the interval of every input exact: float64 breakpoints
    are not rounded to float32 before a float32 input is compared with them.
    """
    dt = torch.promote_types(torch.promote_types(x.dtype, levels.dtype), breakpoints.dtype)
    return torch.promote_types(dt, torch.float32)


def banded_tmaf_reference(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """sigma(x)_i = sum_{|d| <= b, 0 <= i+d < C} alpha_{i,d}(x_{i+d}) * x_{i+d}.

    Args:
        x: (..., C, ...) input, channel axis ``channel_dim`` (already normalised to 0..ndim-1).
        breakpoints: (m,) shared or (C, m) per channel, strictly increasing.
        levels: (C, 2b+1, m+1); index d+b holds offset d.
    Returns:
        Tensor shaped and typed like ``x``.
    """
    C = x.shape[channel_dim]
    b = levels.shape[1] // 2
    dt = compute_dtype(x, levels, breakpoints)
    xs = x.movedim(channel_dim, 0).to(dt)  # (C, ...)
    bp = breakpoints.to(dt)
    bp = bp.expand(C, bp.shape[-1]) if bp.dim() == 1 else bp
    lv = levels.to(dt)
    # k(x_j): index of the interval holding x_j, using the breakpoints of channel j.
    idx = [torch.bucketize(xs[j].contiguous(), bp[j].contiguous(), right=False) for j in range(C)]
    outs = []
    for i in range(C):
        acc = torch.zeros_like(xs[i])
        for d in range(-b, b + 1):
            j = i + d
            if 0 <= j < C:
                acc = acc + lv[i, d + b][idx[j]] * xs[j]
        outs.append(acc)
    return torch.stack(outs).movedim(0, channel_dim).to(x.dtype)
