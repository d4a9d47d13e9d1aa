"""Literal reference implementation of banded TMAF (docs/method.md, sections 1-4) and of its
continuous form (section 6): the definition, written as a plain forward that autograd
differentiates (first, second and higher derivatives alike).

Slow and obviously correct: Python loops over output channels i and band offsets d, and per
term the interval index of its input y = x_{i+d} by comparisons, k(y) = #{q : s_q < y}
(intervals closed on the right), with the breakpoints s of channel i + d:

* jump form: alpha(y) y with alpha(y) = t[k(y)], a lookup in the term's levels t;
* continuous form: F(y) = sum_k t_k len_k(y), len_k(y) = clamp(y, I_k) - clamp(0, I_k) the
  signed length of interval I_k inside [0, y] (the integral of the levels, section 6).

Autograd then gives d/dy = alpha(y) and d/dt_k = y [k(y) = k] (jump), dF/da_k = len_k(y)
(continuous). Three rules of section 4 are written out where a plain product would differ:

* a tie: len_k passes y's gradient only on the interval holding y (``torch.clamp`` passes it
  on both intervals that meet at a breakpoint), so a y on a breakpoint counts once, on its left,
  as the jump form's lookup does;
* the zero-level rule: a term whose level (slope) is exactly 0 drops an infinite input (so it
  is +0, not 0 * inf = NaN) and adds nothing to its level gradient;
* NaN lies in no interval: a NaN input gives alpha(NaN) NaN with alpha(NaN) = sum_k t_k NaN, so
  that it reaches the output, the input gradient at its position and every level gradient of
  every term that reads it (a lookup at some index would reach one level only).

It is the ground truth that every fast path (eager, compiled, native) is tested against, on
outputs and every gradient. It shares no code with the fast paths (its interval lookup and
dtype rule are its own).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _arith_dtype(x: Tensor, levels: Tensor, breakpoints: Tensor) -> torch.dtype:
    """The promoted dtype of input, levels and breakpoints, never below float32 (section 4)."""
    dt = torch.promote_types(torch.promote_types(x.dtype, levels.dtype), breakpoints.dtype)
    return torch.promote_types(dt, torch.float32)


def _interval(y: Tensor, s: Tensor) -> Tensor:
    """k(y) = #{q : s_q < y} (section 1): a y on a breakpoint lies in the interval on its left."""
    return (y.unsqueeze(-1) > s).sum(-1)


def _at_nan(t: Tensor, y: Tensor) -> Tensor:
    """alpha(NaN) NaN with alpha(NaN) = sum_k t_k NaN where y is NaN; 0, with zero gradients,
    everywhere else."""
    nan = torch.where(y.isnan(), y, 0)
    return (t * nan.unsqueeze(-1)).sum(-1) * nan


def _jump_term(t: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """alpha(y) y, alpha(y) = t[k(y)]: levels t (m+1,), input y (...), breakpoints s (m,)."""
    alpha = t[_interval(y, s)]
    y_seen = torch.where((alpha == 0) & y.isinf(), 0, y)  # the zero-level rule
    return torch.where(y.isnan(), _at_nan(t, y), alpha * y_seen)


def _lengths(y: Tensor, s: Tensor, a: Tensor) -> Tensor:
    """len_k(y) = clamp(y, I_k) - clamp(0, I_k) for k = 0..m, stacked last (section 6)."""
    inf = s.new_full((1,), float("inf"))
    lo, hi = torch.cat([-inf, s]), torch.cat([s, inf])  # I_k = (lo_k, hi_k]
    yk = y.unsqueeze(-1)
    holds = _interval(y, s).unsqueeze(-1) == torch.arange(len(lo), device=y.device)
    upper = torch.where(holds, yk, yk.clamp(lo, hi).detach())  # ties: y's gradient once
    upper = torch.where((a == 0) & upper.isinf(), 0, upper)  # the zero-level rule
    return upper - torch.zeros_like(yk).clamp(lo, hi)


def _continuous_term(a: Tensor, y: Tensor, s: Tensor) -> Tensor:
    """F(y) = integral_0^y a_{k(u)} du = sum_k a_k len_k(y): slopes a (m+1,), input y (...)."""
    return torch.where(y.isnan(), _at_nan(a, y), (a * _lengths(y, s, a)).sum(-1))


def _banded(term, x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """out_i = sum over |d| <= b with 0 <= j = i+d < C of term(levels[i, d+b], x_j, s_j),
    in the arithmetic dtype, returned in x's dtype."""
    C, b = x.shape[channel_dim], levels.shape[1] // 2
    dt = _arith_dtype(x, levels, breakpoints)
    xs, lv = x.movedim(channel_dim, 0).to(dt), levels.to(dt)
    bp = breakpoints.detach().to(dt)
    bp = bp.expand(C, bp.shape[-1]) if bp.dim() == 1 else bp
    if C == 0:  # no channels: an empty output, differentiable in x and the levels
        return (xs * lv.sum()).movedim(0, channel_dim).to(x.dtype)
    outs = []
    for i in range(C):
        acc = torch.zeros_like(xs[i])  # +0: a sum of terms that are all -0.0 is +0
        for d in range(-b, b + 1):
            j = i + d
            if 0 <= j < C:
                acc = acc + term(lv[i, d + b], xs[j], bp[j])
        outs.append(acc)
    return torch.stack(outs).movedim(0, channel_dim).to(x.dtype)


def banded_tmaf_reference(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """sigma(x)_i = sum_{|d| <= b, 0 <= i+d < C} alpha_{i,d}(x_{i+d}) * x_{i+d}.

    Args:
        x: (..., C, ...) input, channel axis ``channel_dim`` (already normalised to 0..ndim-1).
        breakpoints: (m,) shared or (C, m) per channel, strictly increasing; no gradient.
        levels: (C, 2b+1, m+1); index d+b holds offset d.
    Returns:
        Tensor shaped and typed like ``x``; differentiable (by autograd) in ``x`` and ``levels``,
        twice and more.
    """
    return _banded(_jump_term, x, breakpoints, levels, channel_dim)


def banded_continuous_reference(x: Tensor, breakpoints: Tensor, levels: Tensor,
                                channel_dim: int) -> Tensor:
    """sigma(x)_i = sum_{|d| <= b, 0 <= i+d < C} F_{i,d}(x_{i+d}), F_{i,d}(t) = integral_0^t
    levels[i, d+b, k(u)] du (the continuous form, section 6). Same arguments as
    :func:`banded_tmaf_reference`."""
    return _banded(_continuous_term, x, breakpoints, levels, channel_dim)
