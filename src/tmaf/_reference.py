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

The second half is a vectorised float64 restatement of the same formulas (the *oracle*), fast
enough to check fast paths at benchmark sizes (the loops above take seconds there): one
comparison per breakpoint for the interval index, one table lookup per band offset, explicit
gradients. It shares no code with the fast paths; the tests compare it with the loop version.
Finite inputs only.
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


def interval_index(x: Tensor, breakpoints: Tensor) -> Tensor:
    """k(x) = #{s_k < x}: the interval of each value of ``x`` for one (m,) grid (section 1).

    Intervals are closed on the right, so a value exactly on s_k lies in interval k. NaN gets
    an arbitrary index here; callers that see NaN handle it themselves.
    """
    dt = torch.promote_types(x.dtype, breakpoints.dtype)
    return torch.bucketize(x.to(dt).contiguous(), breakpoints.to(dt).contiguous(), right=False)


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
        dt = compute_dtype(x, levels, breakpoints)
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
        dt = compute_dtype(x, levels, breakpoints)
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
                k = interval_index(xs[j], bp[j]).clamp(max=m1 - 1)
                sums = torch.zeros(m1, dtype=dt, device=xs.device)
                gl[i, d + b] = sums.index_add_(0, k.reshape(-1), p.reshape(-1))
                if bool(xs[j].isnan().any()):
                    gl[i, d + b] = float("nan")
        gx = gx.movedim(0, cd).to(x.dtype)
        return gx, None, gl.to(levels.dtype), None


def _alphas(xs: Tensor, bp: Tensor, lv: Tensor, b: int) -> Tensor:
    """alpha[i, d+b] = alpha_{i,d}(x_{i+d}) for every i, d (zeros out of the band); NaN at NaN."""
    C = xs.shape[0]
    idx = [interval_index(xs[j], bp[j]).clamp(max=lv.shape[2] - 1) for j in range(C)]
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


# --- vectorised float64 oracle (finite inputs) ----------------------------------------------

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


def banded_oracle(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1) -> Tensor:
    """sigma(x)_i = sum_{|d|<=b, 0<=i+d<C} levels[i, d+b, k(x_{i+d})] * x_{i+d}, in float64.

    Args:
        x: (..., C, ...) input; breakpoints (m,) or (C, m); levels (C, 2b+1, m+1).
    Returns:
        float64 tensor shaped like ``x`` (no autograd: see :func:`oracle_outputs_and_grads`).
    """
    xs = _rows_by_channel(x.detach(), channel_dim)
    out = torch.zeros_like(xs)
    for _, i0, j0, n, alpha, _ in _terms(xs, breakpoints, levels):
        out[:, i0:i0 + n] += alpha * xs[:, j0:j0 + n]
    moved = x.movedim(channel_dim, -1).shape
    return out.reshape(moved).movedim(-1, channel_dim)


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
