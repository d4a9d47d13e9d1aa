"""A vectorised float64 restatement of banded TMAF (docs/method.md sections 1-4) with explicit
gradients: the *oracle* that checks the benchmarked fast paths at benchmark sizes, where the
literal reference (:mod:`tmaf._reference`, loops) takes seconds. One comparison per breakpoint
for the interval index, one table lookup per band offset. It shares no code with the fast
paths; tests/test_benchmarks.py compares it with the literal reference. Finite inputs only.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rows_by_channel(t: Tensor, channel_dim: int) -> Tensor:
    """(..., C, ...) -> (R, C) float64, channels last (a copy)."""
    moved = t.double().movedim(channel_dim, -1)
    return moved.reshape(-1, moved.shape[-1]).contiguous()


def _interval_index_rows(xs: Tensor, breakpoints: Tensor) -> Tensor:
    """k(x_j) = #{s : s < x_j} with channel j's breakpoints; xs (R, C) -> (R, C) int64."""
    C = xs.shape[-1]
    bp = breakpoints.double().reshape(-1, breakpoints.shape[-1]).expand(C, -1)  # (C, m)
    m = bp.shape[1]
    if m > 255:
        return (xs.unsqueeze(-1) > bp).sum(-1)
    idx = torch.zeros(xs.shape, dtype=torch.uint8)  # counting in bytes: no bool -> int64 copies
    for s in range(m):
        idx.add_((xs > bp[:, s]).view(torch.uint8))
    return idx.long()


def _terms(xs: Tensor, breakpoints: Tensor, levels: Tensor):
    """Per band offset d: (d, output channels i0.., input channels j0.., alpha (R, n), flat idx)."""
    C, b, m1 = xs.shape[-1], levels.shape[1] // 2, levels.shape[2]
    idx = _interval_index_rows(xs, breakpoints)
    lv = levels.detach().double()
    for d in range(-b, b + 1):
        i0, j0 = max(0, -d), max(0, d)  # output channel i reads input channel j = i + d
        n = C - abs(d)
        if n <= 0:
            continue
        flat = idx[:, j0:j0 + n] + m1 * torch.arange(n)  # into lv[i0:i0+n, d+b] (n, m1)
        alpha = lv[i0:i0 + n, d + b].reshape(-1)[flat]
        yield d, i0, j0, n, alpha, flat


def oracle_outputs_and_grads(x: Tensor, g: Tensor, breakpoints: Tensor, levels: Tensor,
                             channel_dim: int = 1) -> list[Tensor]:
    """[output, input grad, levels grad] in float64 for upstream gradient ``g``.

    ``levels`` may be (C, m+1) (diagonal) or (C, 2b+1, m+1); the level gradient has its shape.
    """
    lv_shape = levels.shape
    full = levels.detach().reshape(lv_shape[0], -1, lv_shape[-1])
    C, W, m1 = full.shape
    xs, gs = _rows_by_channel(x.detach(), channel_dim), _rows_by_channel(g, channel_dim)
    out, gx = torch.zeros_like(xs), torch.zeros_like(xs)
    glv = torch.zeros(C, W, m1, dtype=torch.float64)
    for d, i0, j0, n, alpha, flat in _terms(xs, breakpoints, full):
        xj, gi = xs[:, j0:j0 + n], gs[:, i0:i0 + n]
        out[:, i0:i0 + n] += alpha * xj
        gx[:, j0:j0 + n] += alpha * gi
        sums = torch.zeros(n * m1, dtype=torch.float64).index_add_(0, flat.reshape(-1),
                                                                      (gi * xj).reshape(-1))
        glv[i0:i0 + n, d + W // 2] = sums.view(n, m1)
    moved = x.movedim(channel_dim, -1).shape

    def back(t: Tensor) -> Tensor:
        return t.reshape(moved).movedim(-1, channel_dim)

    return [back(out), back(gx), glv.reshape(lv_shape)]


def _anchors(bp: Tensor) -> Tensor:
    """A point of each interval k = 0..m: its right end s_k, and s_{m-1} for the last one."""
    return torch.cat([bp, bp[-1:]])


def _signed_lengths(t: Tensor, bp: Tensor) -> Tensor:
    """len_k(t) = clamp(t, I_k) - clamp(0, I_k) for scalar points t (P,) -> (P, m+1)."""
    inf = torch.tensor([float("inf")], dtype=torch.float64)
    lo, hi = torch.cat([-inf, bp]), torch.cat([bp, inf])
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.minimum(torch.maximum(t[:, None], lo), hi) - torch.minimum(torch.maximum(zero, lo), hi)


def continuous_oracle_outputs_and_grads(x: Tensor, g: Tensor, breakpoints: Tensor, levels: Tensor,
                                        channel_dim: int = 1) -> list[Tensor]:
    """The continuous form (docs/method.md section 6) in float64: [output, input grad, levels
    grad]. Restated from the integral: on interval k the term is a_k t + c_k with
    c_k = F(e_k) - a_k e_k at a point e_k of the interval (F(e) = sum_j a_j len_j(e)), so
    dc_k/da_j = len_j(e_k) - [j = k] e_k and the level gradient is the sum of g t per interval
    plus the intercept part, the sum of g per interval through dc/da. Finite inputs only."""
    lv_shape = levels.shape
    full = levels.detach().reshape(lv_shape[0], -1, lv_shape[-1]).double()
    C, W, m1 = full.shape
    b = W // 2
    bps = breakpoints.double().reshape(-1, breakpoints.shape[-1]).expand(C, -1)
    # dc/da per input channel j: (C, m1 intervals k, m1 slopes j')
    dcda = torch.stack([_signed_lengths(_anchors(bps[j]), bps[j]) - torch.diag(_anchors(bps[j]))
                        for j in range(C)])
    intercepts = torch.zeros(C, W, m1, dtype=torch.float64)
    for i in range(C):
        for d in range(-b, b + 1):
            if 0 <= i + d < C:
                intercepts[i, d + b] = dcda[i + d] @ full[i, d + b]
    xs, gs = _rows_by_channel(x.detach(), channel_dim), _rows_by_channel(g, channel_dim)
    out, gx = torch.zeros_like(xs), torch.zeros_like(xs)
    glv = torch.zeros(C, W, m1, dtype=torch.float64)
    for d, i0, j0, n, alpha, flat in _terms(xs, breakpoints, full):
        xj, gi = xs[:, j0:j0 + n], gs[:, i0:i0 + n]
        c = intercepts[i0:i0 + n, d + b].reshape(-1)[flat]
        out[:, i0:i0 + n] += alpha * xj + c
        gx[:, j0:j0 + n] += alpha * gi
        idx = flat.reshape(-1)
        direct = torch.zeros(n * m1, dtype=torch.float64).index_add_(0, idx, (gi * xj).reshape(-1))
        gsum = torch.zeros(n * m1, dtype=torch.float64).index_add_(0, idx, gi.reshape(-1))
        via_c = torch.einsum("nk,nkj->nj", gsum.view(n, m1), dcda[j0:j0 + n])
        glv[i0:i0 + n, d + b] = direct.view(n, m1) + via_c
    moved = x.movedim(channel_dim, -1).shape

    def back(t: Tensor) -> Tensor:
        return t.reshape(moved).movedim(-1, channel_dim)

    return [back(out), back(gx), glv.reshape(lv_shape)]
