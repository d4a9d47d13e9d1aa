"""Literal reference implementation of banded TMAF (docs/method.md, sections 1-4) and of its
continuous form (section 6).

Slow and obviously correct: Python loops over output channels i and band offsets d, an explicit
interval lookup per input channel j = i + d with ``torch.bucketize(..., right=False)`` (intervals
closed on the right), plain indexing of the level table, and a backward that writes out the
gradient formulas of section 4 term by term, with the non-finite conventions stated there:

* alpha(NaN) is NaN (NaN lies in no interval): it reaches the output, the input gradient at its
  position and every level gradient of every term that reads it;
* a term whose level is exactly 0 is exactly +0 at any non-NaN input (+-inf included) and adds
  nothing to its level gradient.

The continuous form is written as the integral it is, F(t) = sum_k a_k len_k(t) with
len_k(t) = clamp(t, I_k) - clamp(0, I_k) the signed length of I_k inside [0, t], and its
backward from dF/dt = a_{k(t)} and dF/da_k = len_k(t) (section 6), with no intercept table.

It is the ground truth that every fast path (eager, compiled, native) is tested against.

It shares no code with the fast paths (its interval lookup and dtype rule are its own).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _arith_dtype(x: Tensor, levels: Tensor, breakpoints: Tensor) -> torch.dtype:
    """The promoted dtype of input, levels and breakpoints, never below float32 (section 4)."""
    dt = torch.promote_types(torch.promote_types(x.dtype, levels.dtype), breakpoints.dtype)
    return torch.promote_types(dt, torch.float32)


def _k(x: Tensor, breakpoints: Tensor) -> Tensor:
    """k(x) = #{j : s_j < x} (section 1), intervals closed on the right."""
    return torch.bucketize(x.contiguous(), breakpoints.to(x.dtype).contiguous(), right=False)


def _per_channel(breakpoints: Tensor, C: int, dt: torch.dtype) -> Tensor:
    bp = breakpoints.to(dt)
    return bp.expand(C, bp.shape[-1]) if bp.dim() == 1 else bp


def _term(level: Tensor, x: Tensor) -> Tensor:
    """level * x, +0 where the level is exactly 0 and x is not NaN (NaN levels stay NaN)."""
    return torch.where(level == 0, torch.zeros_like(x), level * x)


class _BandedReference(torch.autograd.Function):
    """Forward and backward written out literally (section 4), loops over i, d and j."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int):
        b, xs, bp, lv = _forward_setup(ctx, x, breakpoints, levels, channel_dim)
        alpha = _alphas(xs, bp, lv, b)
        out = _band_sum(xs, b, lambda i, d, j: _term(alpha[i, d + b], xs[j]))
        return out.movedim(0, channel_dim).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, levels, cd, C, b, m1, dt, xs, gs, bp, lv, alpha, gx, gl = _backward_setup(ctx, g)
        for i in range(C):
            for d in range(-b, b + 1):
                j = i + d
                if not 0 <= j < C:
                    continue
                a = alpha[i, d + b]
                # d sigma_i / d y_j = alpha_{i,d}(y_j)
                gx[j] = gx[j] + a * gs[i]
                # d sigma_i / d t_{i,d,k} = y_j [k(y_j) = k]; 0 where the level is 0 and y_j infinite
                p = torch.where((a == 0) & xs[j].isinf(), torch.zeros_like(xs[j]), gs[i] * xs[j])
                k = _k(xs[j], bp[j]).clamp(max=m1 - 1)
                sums = torch.zeros(m1, dtype=dt, device=xs.device)
                gl[i, d + b] = sums.index_add_(0, k.reshape(-1), p.reshape(-1))
                if bool(xs[j].isnan().any()):
                    gl[i, d + b] = float("nan")
        gx = gx.movedim(0, cd).to(x.dtype)
        return gx, None, gl.to(levels.dtype), None


def _forward_setup(ctx, x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int):
    """Saves what the backward needs; returns b, x channels-first in the arithmetic dtype, and
    per-channel breakpoints and levels in that dtype."""
    ctx.save_for_backward(x, breakpoints, levels)
    ctx.channel_dim = channel_dim
    C, b = x.shape[channel_dim], levels.shape[1] // 2
    dt = _arith_dtype(x, levels, breakpoints)
    return b, x.movedim(channel_dim, 0).to(dt), _per_channel(breakpoints, C, dt), levels.to(dt)


def _band_sum(xs: Tensor, b: int, term) -> Tensor:
    """out[i] = sum over |d| <= b with 0 <= j = i+d < C of term(i, d, j); xs channels-first."""
    C, outs = xs.shape[0], []
    for i in range(C):
        acc = torch.zeros_like(xs[i])
        for d in range(-b, b + 1):
            if 0 <= i + d < C:
                acc = acc + term(i, d, i + d)
        outs.append(acc)
    return torch.stack(outs) if outs else torch.zeros_like(xs)  # C = 0: an empty output


def _backward_setup(ctx, g: Tensor):
    """What both backwards start from: the saved tensors channels-first in the arithmetic dtype,
    per-channel breakpoints, alpha of every term, and zero input and level gradients."""
    x, breakpoints, levels = ctx.saved_tensors
    cd = ctx.channel_dim
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt = _arith_dtype(x, levels, breakpoints)
    xs, gs = x.movedim(cd, 0).to(dt), g.movedim(cd, 0).to(dt)
    bp, lv = _per_channel(breakpoints, C, dt), levels.to(dt)
    gl = torch.zeros(C, 2 * b + 1, m1, dtype=dt, device=xs.device)
    return x, levels, cd, C, b, m1, dt, xs, gs, bp, lv, _alphas(xs, bp, lv, b), torch.zeros_like(xs), gl


def _alphas(xs: Tensor, bp: Tensor, lv: Tensor, b: int) -> Tensor:
    """alpha[i, d+b] = alpha_{i,d}(x_{i+d}) for every i, d (zeros out of the band); NaN at NaN."""
    C = xs.shape[0]
    idx = [_k(xs[j], bp[j]).clamp(max=lv.shape[2] - 1) for j in range(C)]
    alpha = torch.zeros((C, 2 * b + 1, *xs.shape[1:]), dtype=xs.dtype, device=xs.device)
    for i in range(C):
        for d in range(-b, b + 1):
            j = i + d
            if 0 <= j < C:
                a = lv[i, d + b][idx[j]]
                alpha[i, d + b] = torch.where(xs[j].isnan(), xs[j], a)
    return alpha


def banded_tmaf_reference(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """sigma(x)_i = sum_{|d| <= b, 0 <= i+d < C} alpha_{i,d}(x_{i+d}) * x_{i+d}.

    Args:
        x: (..., C, ...) input, channel axis ``channel_dim`` (already normalised to 0..ndim-1).
        breakpoints: (m,) shared or (C, m) per channel, strictly increasing.
        levels: (C, 2b+1, m+1); index d+b holds offset d.
    Returns:
        Tensor shaped and typed like ``x``; differentiable in ``x`` and ``levels``, twice
        and more (the literal backward is itself made of differentiable tensor operations).
    """
    return _BandedReference.apply(x, breakpoints.detach(), levels, channel_dim)


def _lengths(t: Tensor, bp: Tensor, a: Tensor) -> Tensor:
    """len_k(t) = clamp(t, I_k) - clamp(0, I_k) for k = 0..m, stacked last (section 6): the
    signed length of interval k inside [0, t]. On the unbounded intervals at t = +-inf, where the
    slope a_k is 0, the infinite part is dropped (the zero-level rule: 0 * inf is 0), leaving
    -clamp(0, I_k). Its derivative in t is [k(t) = k] (what the second derivatives use): only
    the interval holding t passes t's gradient, so a t on a breakpoint counts once, on its left."""
    edges = [float("-inf"), *bp.tolist(), float("inf")]
    kt = _k(t, bp)
    out = []
    for k in range(len(edges) - 1):
        lo, hi = edges[k], edges[k + 1]
        upper = torch.where(kt == k, t, t.clamp(lo, hi).detach())  # NaN stays NaN: F(NaN) is NaN
        upper = torch.where((a[k] == 0) & upper.isinf(), torch.zeros_like(t), upper)
        out.append(upper - min(max(0.0, lo), hi))
    return torch.stack(out, dim=-1)


class _ContinuousReference(torch.autograd.Function):
    """The continuous form written out (section 6): F_{i,d}(y_{i+d}) = sum_k a_{i,d,k} len_k,
    loops over i, d, j; NaN in, NaN out."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int):
        b, xs, bp, lv = _forward_setup(ctx, x, breakpoints, levels, channel_dim)
        out = _band_sum(xs, b, lambda i, d, j: (_lengths(xs[j], bp[j], lv[i, d + b])
                                                * lv[i, d + b]).sum(-1))
        return out.movedim(0, channel_dim).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, levels, cd, C, b, m1, dt, xs, gs, bp, lv, alpha, gx, gl = _backward_setup(ctx, g)
        for i in range(C):
            for d in range(-b, b + 1):
                j = i + d
                if not 0 <= j < C:
                    continue
                # dF/dt = a_{k(t)}: the jump form's alpha (NaN at NaN)
                gx[j] = gx[j] + alpha[i, d + b] * gs[i]
                # dF/da_k = len_k(t)
                lens = _lengths(xs[j], bp[j], lv[i, d + b])
                gl[i, d + b] = (gs[i].unsqueeze(-1) * lens).reshape(-1, m1).sum(0)
                if bool(xs[j].isnan().any()):
                    gl[i, d + b] = float("nan")
        return gx.movedim(0, cd).to(x.dtype), None, gl.to(levels.dtype), None


def banded_continuous_reference(x: Tensor, breakpoints: Tensor, levels: Tensor,
                                channel_dim: int) -> Tensor:
    """sigma(x)_i = sum_{|d| <= b, 0 <= i+d < C} F_{i,d}(x_{i+d}), F_{i,d}(t) = integral_0^t
    levels[i, d+b, k(u)] du (the continuous form, section 6). Same arguments as
    :func:`banded_tmaf_reference`."""
    return _ContinuousReference.apply(x, breakpoints.detach(), levels, channel_dim)
