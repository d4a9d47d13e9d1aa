"""Literal reference implementation of banded TMAF (docs/method.md, sections 1-4).

Slow and obviously correct: Python loops over output channels i and band offsets d, an explicit
interval lookup per input channel j = i + d with ``torch.bucketize(..., right=False)`` (intervals
closed on the right), plain indexing of the level table, and a backward that writes out the
gradient formulas of section 4 term by term, with the non-finite conventions stated there:

* alpha(NaN) is NaN (NaN lies in no interval): it reaches the output, the input gradient at its
  position and every level gradient of every term that reads it;
* a term whose level is exactly 0 is exactly +0 at any non-NaN input (+-inf included) and adds
  nothing to its level gradient.

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
        ctx.save_for_backward(x, breakpoints, levels)
        ctx.channel_dim = channel_dim
        C, b = x.shape[channel_dim], levels.shape[1] // 2
        dt = _arith_dtype(x, levels, breakpoints)
        xs = x.movedim(channel_dim, 0).to(dt)  # (C, ...)
        bp, lv = _per_channel(breakpoints, C, dt), levels.to(dt)
        alpha = _alphas(xs, bp, lv, b)
        outs = []
        for i in range(C):
            acc = torch.zeros_like(xs[i])
            for d in range(-b, b + 1):
                if 0 <= i + d < C:
                    acc = acc + _term(alpha[i, d + b], xs[i + d])
            outs.append(acc)
        return torch.stack(outs).movedim(0, channel_dim).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, breakpoints, levels = ctx.saved_tensors
        cd = ctx.channel_dim
        C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
        dt = _arith_dtype(x, levels, breakpoints)
        xs, gs = x.movedim(cd, 0).to(dt), g.movedim(cd, 0).to(dt)
        bp, lv = _per_channel(breakpoints, C, dt), levels.to(dt)
        alpha = _alphas(xs, bp, lv, b)
        gx = torch.zeros_like(xs)
        gl = torch.zeros(C, 2 * b + 1, m1, dtype=dt, device=xs.device)
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
        Tensor shaped and typed like ``x``; differentiable in ``x`` and ``levels`` (once).
    """
    return _BandedReference.apply(x, breakpoints.detach(), levels, channel_dim)
