"""A vectorised float64 restatement of the TMAF reference, for checking at benchmark sizes.

``tmaf``'s own reference (a Python loop over channels, autograd through per-channel indexing)
takes 5-50 s for one forward+backward at the benchmark shapes, too slow to check ~50 fast
candidates within the benchmark budget.  This oracle computes the same formula (docs/method.md
sections 1-4) with one comparison pass and one ``gather`` per band offset, in float64, and gets
its gradients from autograd (``gather``'s backward is a ``scatter_add``).  It shares no code with
the fast path; ``tests/test_benchmarks.py`` checks it against ``tmaf``'s reference, and the
benchmark checks it again on a sub-batch of every benchmarked configuration.
"""

from __future__ import annotations

import torch
from torch import Tensor


def banded_oracle(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1) -> Tensor:
    """sigma(x)_i = sum_{|d|<=b, 0<=i+d<C} levels[i, d+b, k(x_{i+d})] * x_{i+d}, in float64.

    Args:
        x: (..., C, ...) input; breakpoints (m,) or (C, m); levels (C, 2b+1, m+1).
    Returns:
        float64 tensor shaped like ``x`` (differentiable in ``x`` and ``levels``).
    """
    xs = x.double().movedim(channel_dim, -1)  # (..., C)
    C, b, m1 = xs.shape[-1], levels.shape[1] // 2, levels.shape[2]
    bp = breakpoints.double().reshape(-1, breakpoints.shape[-1]).expand(C, -1)  # (C, m)
    idx = (xs.detach().unsqueeze(-1) > bp).sum(-1)  # k(x_j) = #{s : s < x_j}, channel j's s
    lv = levels.double()
    out = torch.zeros_like(xs)
    for d in range(-b, b + 1):
        i0, j0 = max(0, -d), max(0, d)  # output channels i0.., input channels j0 = i0 + d ..
        n = C - abs(d)
        if n <= 0:
            continue
        table = lv[i0:i0 + n, d + b].expand(*xs.shape[:-1], n, m1)
        alpha = table.gather(-1, idx[..., j0:j0 + n, None]).squeeze(-1)
        out = out + torch.nn.functional.pad(alpha * xs[..., j0:j0 + n], (i0, C - i0 - n))
    return out.movedim(-1, channel_dim)


def oracle_outputs_and_grads(x: Tensor, g: Tensor, breakpoints: Tensor, levels: Tensor,
                             channel_dim: int = 1) -> list[Tensor]:
    """[output, input grad, levels grad] in float64; ``levels`` may be (C, m+1) (diagonal)."""
    x64 = x.detach().double().requires_grad_(True)
    lv64 = levels.detach().double().requires_grad_(True)
    full = lv64.view(lv64.shape[0], -1, lv64.shape[-1])
    out = banded_oracle(x64, breakpoints, full, channel_dim)
    out.backward(g.double())
    return [out.detach(), x64.grad, lv64.grad]
