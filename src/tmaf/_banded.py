"""What the two pure-PyTorch fast paths of banded TMAF share (docs/method.md, sections 4 and 6):
the band's geometry, the non-finite conventions of a term, the level-gradient sums per interval,
and the autograd bookkeeping of their ``torch.autograd.Function``s.

Forward:   out_i  = sum_d alpha_{i,d}(x_{i+d}) x_{i+d}   (+ c_{i,d}(x_{i+d}), continuous form)
Backward:  gx_j   = sum_d alpha_{j-d,d}(x_j) g_{j-d}
           gt[i,d,k] = sum over all non-channel positions of g_i x_{i+d} [k(x_{i+d}) = k]
           gc[i,d,k] = sum over all non-channel positions of g_i [k(x_{i+d}) = k]  (intercepts)

The two formulations of alpha live in their own modules: :mod:`tmaf._eager` (interval index and
lookup, the ``eager`` backend) and :mod:`tmaf._compiled` (comparisons and selects, compiled by
torch.compile, the ``compiled`` backend). Both save only the input and the small parameter
tensors for backward, and both backwards are written in differentiable tensor operations, so
under ``create_graph=True`` autograd differentiates them (double backward).

Non-finite inputs follow docs/method.md: alpha(NaN) = NaN (so NaN reaches the output, the input
gradient and every level gradient of the terms that read it); a term whose level is exactly 0 is
+0 at any non-NaN input, +-inf included, and adds nothing to its level gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor


def bshape(x: Tensor, cd: int, n: int) -> list[int]:
    """The shape that broadcasts an (n,) per-channel vector along axis ``cd`` of ``x``."""
    shape = [1] * x.dim()
    shape[cd] = n
    return shape


def band(C: int, d: int) -> tuple[int, int, int]:
    """Output channels i in [i0, i0+n) read input channels j = i + d in [i0+d, i0+d+n)."""
    i0 = max(0, -d)
    return i0, i0 + d, min(C, C - d) - i0


def nan_alpha(a: Tensor, x: Tensor) -> Tensor:
    """alpha(NaN) = NaN: NaN lies in no interval."""
    return torch.where(x.isnan(), x, a)


def term(a: Tensor, x: Tensor) -> Tensor:
    """alpha * x, +0 where alpha is exactly 0 (also at +-inf); NaN alpha stays NaN."""
    return torch.where(a == 0, torch.zeros((), dtype=x.dtype, device=x.device), a * x)


def level_grad_terms(g: Tensor, x: Tensor, a: Tensor) -> Tensor:
    """g * x, the summand of the level gradient; 0 where the level is 0 and x is infinite."""
    return torch.where((a == 0) & x.isinf(), torch.zeros((), dtype=x.dtype, device=x.device), g * x)


def nan_rows(sums: Tensor, x: Tensor, cd: int) -> Tensor:
    """(n, m+1) level-gradient sums: NaN in every interval of a channel whose input has a NaN."""
    dims = tuple(d for d in range(x.dim()) if d != cd)
    has_nan = x.isnan().any(dim=dims) if dims else x.isnan()
    return torch.where(has_nan[:, None], torch.full((), float("nan"), dtype=sums.dtype, device=sums.device),
                       sums)


def interval_sums(p: Tensor, x: Tensor, bpT: Tensor, cd: int) -> Tensor:
    """(n, m+1): sum of p over non-channel positions where x lies in interval k; ``bpT`` (m, 1
    or n), the breakpoints interval-major.

    Interval k is s_k < x <= s_{k+1} (closed on the right), found by comparisons (no index
    tensor); the sums run over the dims after the channel axis first, then the leading dims (a
    contiguous inner reduction that fuses with the pointwise input gradient).
    """
    inner, outer = tuple(range(cd + 1, x.dim())), tuple(range(cd))
    zero = p.new_zeros(())
    sums, left = [], None  # left: x > s_k (x is right of breakpoint k)
    for k in range(bpT.shape[0] + 1):
        right = x > bpT[k].view(bshape(x, cd, bpT.shape[1])) if k < bpT.shape[0] else None
        if left is None:
            inside = ~right
        elif right is None:
            inside = left
        else:
            inside = left & ~right
        s = torch.where(inside, p, zero)
        s = s.sum(inner) if inner else s
        sums.append(s.sum(outer) if outer else s)
        left = right
    return torch.stack(sums, dim=-1)


def add_band_term(acc: Tensor | None, t: Tensor, like: Tensor, cd: int, start: int, n: int,
                  b: int) -> Tensor:
    """acc[..., start:start+n, ...] += t along ``cd``; for b = 0 the term is the whole result."""
    if b == 0:
        return t
    acc = torch.zeros_like(like) if acc is None else acc
    acc.narrow(cd, start, n).add_(t)
    return acc


def pad_band(sums: Tensor, C: int, i0: int, n: int) -> Tensor:
    """(n, m+1) level-gradient sums -> (C, m+1): channels outside the band (d != 0) get zero."""
    return torch.nn.functional.pad(sums, (0, 0, i0, C - i0 - n))


# --- the autograd bookkeeping both fast paths' Functions share ---------------------------------


def save_for_backward(ctx, x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int,
                      ic: Tensor | None) -> None:
    """Saves (x, breakpoints, levels); ``ic`` (the continuous form's intercepts) is an input only
    so that autograd carries its gradient back to the levels that made it."""
    ctx.save_for_backward(x, breakpoints, levels)
    ctx.channel_dim, ctx.affine = channel_dim, ic is not None


def input_grads(ctx, grads: tuple[Tensor, ...]) -> tuple[Tensor | None, ...]:
    """The gradients of (x, breakpoints, levels, channel_dim, ic) from a backward's (gx, gl[, gc])."""
    gic = grads[2] if ctx.affine and ctx.needs_input_grad[4] else None
    return (grads[0] if ctx.needs_input_grad[0] else None, None,
            grads[1] if ctx.needs_input_grad[2] else None, None, gic)
