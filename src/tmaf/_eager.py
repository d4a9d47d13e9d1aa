"""The ``eager`` backend of banded TMAF: levels looked up by interval index, in plain PyTorch
operations (docs/method.md, sections 4 and 6; the shared band arithmetic: :mod:`tmaf._banded`).

alpha_{i,d}(x_j) is one ``bucketize`` of x against the breakpoints (a comparison per breakpoint
for per-channel grids) and one ``take`` from the flat (channel, interval) level table. The level
gradient is one ``scatter_add`` over the same flat index on CPU, where it runs sequentially
(deterministic), and one masked sum per interval on other devices (no atomics).

Arithmetic runs in float32 at least (float64 if input or levels are float64): under autocast a
float16/bfloat16 input gives a float16/bfloat16 output and gradient, while the level gradient is
accumulated in float32. The continuous form adds, per term, the intercept table ``ic``
(C, 2b+1, m+1) of :func:`tmaf._continuous.intercepts`, looked up by the same index; its backward
also returns the intercept gradient (the sum of g per interval).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._banded import (
    add_band_term,
    band,
    bshape,
    input_grads,
    interval_sums,
    level_grad_terms,
    nan_alpha,
    nan_rows,
    pad_band,
    save_for_backward,
    term,
)
from ._grid import compute_dtype


def interval_key(x: Tensor, bp: Tensor, cd: int, m1: int) -> Tensor:
    """Flat index c * m1 + k(x) into a (C, m1) level table (c = the element's channel).

    ``bp`` is (1, m) shared or (n, m) per channel (n = x.shape[cd]).
    """
    if bp.shape[0] == 1:
        idx = torch.bucketize(x.contiguous(), bp[0].contiguous(), right=False)
    else:
        idx = torch.zeros_like(x, dtype=torch.int64)
        for k in range(bp.shape[1]):
            idx += x > bp[:, k].view(bshape(x, cd, bp.shape[0]))
    n = x.shape[cd]
    return idx + (torch.arange(n, device=x.device) * m1).view(bshape(x, cd, n))


def segment_sums(p: Tensor, kj: Tensor, n: int, m1: int, xj: Tensor, bj: Tensor, cd: int) -> Tensor:
    """Level-gradient sums (n, m1) of p by interval: one scatter_add on CPU, masked sums elsewhere."""
    if p.device.type == "cpu":  # CPU scatter_add runs in index order: deterministic
        flat = p.new_zeros(n * m1).scatter_add_(0, kj.reshape(-1), p.reshape(-1))
        return flat.view(n, m1)
    return interval_sums(p, xj, bj.t().contiguous(), cd)


def _setup(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int):
    """x and levels in the compute dtype, breakpoints as (1 or C, m), and x's flat interval key."""
    dt = compute_dtype(x, levels, breakpoints)
    xc, lv = x.to(dt), levels.to(dt)
    bp = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1])
    return dt, xc, lv, bp, interval_key(xc, bp, cd, levels.shape[2])


def banded_fwd(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
               intercepts: Tensor | None = None) -> Tensor:
    """Forward. x (..., C, ...), breakpoints (m,)/(C, m), levels (C, 2b+1, m+1); ``intercepts``
    (shaped like the levels): the continuous form's affine terms. Returns a tensor like x."""
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt, xc, lv, _, key = _setup(x, breakpoints, levels, cd)
    ic = None if intercepts is None else intercepts.to(dt)
    out = None
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj = xc.narrow(cd, j0, n)
        # table row i = j - d for input channel j: shift the flat key by j0 rows
        kj = key.narrow(cd, j0, n) - j0 * m1
        y = term(nan_alpha(lv[i0:i0 + n, d + b].reshape(-1).take(kj), xj), xj)
        if ic is not None:
            y = y + ic[i0:i0 + n, d + b].reshape(-1).take(kj)
        out = add_band_term(out, y, xc, cd, i0, n, b)
    return out.to(x.dtype)


def banded_bwd(g: Tensor, x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
               affine: bool = False) -> tuple[Tensor, ...]:
    """Gradients (input, levels) given the upstream gradient ``g`` (shaped like x); with
    ``affine`` (the continuous form) also the intercepts' (sum of g per interval)."""
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt, xc, lv, bp, key = _setup(x, breakpoints, levels, cd)
    gc = g.to(dt)
    gx, gl, gic = None, [], []
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj, gi = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n)
        kj = key.narrow(cd, j0, n) - j0 * m1  # flat index into the (n, m1) table below
        a = nan_alpha(lv[i0:i0 + n, d + b].reshape(-1).take(kj), xj)
        bj = bp if bp.shape[0] == 1 else bp[j0:j0 + n]
        sums = nan_rows(segment_sums(level_grad_terms(gi, xj, a), kj, n, m1, xj, bj, cd), xj, cd)
        gx = add_band_term(gx, a * gi, xc, cd, j0, n, b)
        gl.append(pad_band(sums, C, i0, n))
        if affine:
            gic.append(pad_band(nan_rows(segment_sums(gi, kj, n, m1, xj, bj, cd), xj, cd), C, i0, n))
    out = gx.to(x.dtype), torch.stack(gl, dim=1).to(levels.dtype)
    return (*out, torch.stack(gic, dim=1).to(levels.dtype)) if affine else out


class EagerTMAFFunction(torch.autograd.Function):
    """Autograd glue only: saves (x, breakpoints, levels) and calls the helpers above."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int, ic=None):
        save_for_backward(ctx, x, breakpoints, levels, channel_dim, ic)
        return banded_fwd(x, breakpoints, levels, channel_dim, ic)

    @staticmethod
    def backward(ctx, g):  # plain tensor operations under create_graph: differentiable again
        x, breakpoints, levels = ctx.saved_tensors
        return input_grads(ctx, banded_bwd(g.contiguous(), x, breakpoints, levels, ctx.channel_dim,
                                           ctx.affine))


def banded(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
           intercepts: Tensor | None = None) -> Tensor:
    """Banded TMAF on validated input (breakpoints detached); ``intercepts``: the continuous form."""
    return EagerTMAFFunction.apply(x, breakpoints, levels, cd, intercepts)
