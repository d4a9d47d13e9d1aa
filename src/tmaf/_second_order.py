"""Second derivatives of banded TMAF on the native operators (double backward, docs/method.md
section 4): the autograd formula of the backward operators ``tmaf::banded_bwd`` and
``tmaf::banded_cont_bwd``, so that ``create_graph=True`` (gradient penalties, Hessian-vector
products) differentiates through them.

The backward (gx, gl) of either form, for upstream gradient g, input x and levels a, is

    gx_j       = sum_d a_{j-d,d,k(x_j)} g_{j-d}                            (both forms)
    gl[i,d,k]  = sum over positions of g_i v_k(x_{i+d}),   v_k(t) = t [k(t) = k] (jump) or
                 len_k(t) (continuous, the signed length of interval k inside [0, t]):

linear in g and in a, piecewise constant in x (gx) and linear in x on each interval (gl, whose
x-derivative is g_i [k(x_{i+d}) = k] in both forms). Given upstream gradients (ugx, ugl) of
(gx, gl), the vector-Jacobian product is therefore three forward-like passes:

    d g_i  = sum_d a_{i,d,k(x_{i+d})} ugx_{i+d}  +  sigma(x; levels = ugl)_i  (input_jvp + forward)
    d x_j  = sum_d ugl[j-d,d,k(x_j)] g_{j-d}     (the backward's input gradient with levels ugl)
    d a    = sum over positions of g_i ugx_{i+d} [k(x_{i+d}) = k]          (level_sums)

None for the breakpoints (zero almost everywhere). Each pass is differentiable again (the
operators through their autograd formulas, the two helpers through plain tensor operations), so
higher derivatives follow. The same conventions as the first derivatives hold for NaN (alpha(NaN)
is NaN, every level-gradient row of a term that reads it is NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._banded import add_band_term, band, nan_alpha, nan_rows, pad_band
from ._eager import interval_key, segment_sums
from ._grid import compute_dtype


def _keyed(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, *others: Tensor):
    """x and ``others`` in the compute dtype, the flat interval key of x (see
    :func:`tmaf._eager.interval_key`), the breakpoints as (1 or C, m) and the levels in that dtype."""
    dt = compute_dtype(x, levels, breakpoints)
    for t in others:
        dt = torch.promote_types(dt, t.dtype)
    bp = breakpoints.detach().to(dt).reshape(-1, breakpoints.shape[-1])
    xc = x.detach().to(dt)  # the intervals only: no gradient flows through x here
    key = interval_key(xc, bp, cd, levels.shape[2])
    return xc, [t.to(dt) for t in others], key, bp, levels.to(dt)


def input_jvp(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, v: Tensor) -> Tensor:
    """(J v)_i = sum_d alpha_{i,d}(x_{i+d}) v_{i+d}: the forward's derivative in x (levels read at
    x) applied to v; shaped like x, in the compute dtype. Differentiable in levels and v."""
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    xc, (vc,), key, _, lv = _keyed(x, breakpoints, levels, cd, v)
    out = None
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj, vj = xc.narrow(cd, j0, n), vc.narrow(cd, j0, n)
        kj = key.narrow(cd, j0, n) - j0 * m1
        a = nan_alpha(lv[i0:i0 + n, d + b].reshape(-1).take(kj), xj)
        out = add_band_term(out, a * vj, vc, cd, i0, n, b)
    return out


def level_sums(g: Tensor, x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, v: Tensor) -> Tensor:
    """s[i, d+b, k] = sum over positions of g_i v_{i+d} [k(x_{i+d}) = k], shaped and typed like
    the levels; NaN rows where x_{i+d} has a NaN. Differentiable in g and v."""
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    xc, (gc, vc), key, bp, _ = _keyed(x, breakpoints, levels, cd, g, v)
    rows = []
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj, gi, vj = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n), vc.narrow(cd, j0, n)
        kj = key.narrow(cd, j0, n) - j0 * m1
        bj = bp if bp.shape[0] == 1 else bp[j0:j0 + n]
        sums = nan_rows(segment_sums(gi * vj, kj, n, m1, xj, bj, cd), xj, cd)
        rows.append(pad_band(sums, C, i0, n))
    return torch.stack(rows, dim=1).to(levels.dtype)


def _setup_context(ctx, inputs, output) -> None:
    g, x, breakpoints, levels, channel_dim = inputs
    ctx.save_for_backward(g, x, breakpoints, levels)
    ctx.channel_dim = channel_dim


def _backward_formula(forward_op):
    """The vector-Jacobian product of a backward operator whose form's forward is ``forward_op``."""

    def backward(ctx, ugx: Tensor | None, ugl: Tensor | None):
        g, x, breakpoints, levels = ctx.saved_tensors
        cd = ctx.channel_dim % x.dim()
        need_g, need_x, _, need_levels, _ = ctx.needs_input_grad
        dg = dx = dlv = None
        if need_g:
            parts = [] if ugx is None else [input_jvp(x, breakpoints, levels, cd, ugx)]
            if ugl is not None:
                parts.append(forward_op(x, breakpoints, ugl, cd))
            dg = sum(p.to(g.dtype) for p in parts) if parts else None
        if need_x and ugl is not None:  # the input gradient of either form's backward
            dx = torch.ops.tmaf.banded_bwd(g, x, breakpoints, ugl, cd)[0]
        if need_levels and ugx is not None:
            dlv = level_sums(g, x, breakpoints, levels, cd, ugx)
        return dg, dx, None, dlv, None

    return backward


def register() -> None:
    """Registers the autograd formulas of both backward operators (once, at import of _native)."""
    for form in ("banded", "banded_cont"):
        forward_op = getattr(torch.ops.tmaf, f"{form}_fwd").default
        torch.library.register_autograd(f"tmaf::{form}_bwd", _backward_formula(forward_op),
                                        setup_context=_setup_context)
