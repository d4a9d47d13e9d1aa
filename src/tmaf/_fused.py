"""Fast path of banded TMAF: plain forward/backward helpers, their torch.compile'd fusions,
and the ``torch.autograd.Function`` that ties them to autograd (docs/method.md, section 4).

Forward:   out_i  = sum_d alpha_{i,d}(x_{i+d}) x_{i+d}
Backward:  gx_j   = sum_d alpha_{j-d,d}(x_j) g_{j-d}
           gt[i,d,k] = sum over all non-channel positions of g_i x_{i+d} [k(x_{i+d}) = k]

Only the input (and the small parameter tensors) are saved for backward.

Two formulations of alpha share the code: ``fused=False`` (eager) looks levels up by interval
index (one ``bucketize`` + one ``take``) and sums the level gradient with one ``scatter_add``
over the flat (channel, interval) index on CPU, where it runs sequentially (deterministic), and
with one masked sum per interval on other devices (no atomics); ``fused=True`` selects levels by
a chain of comparisons, ``alpha = where(x > s_m, t_m, ... where(x > s_1, t_1, t_0))``, reading
level and breakpoint tables laid out (interval, channel) so the selects vectorise along a
contiguous channel axis, and sums the level gradient per interval from the same comparisons
(``s_k < x <= s_{k+1}``, no index tensor), over the dims after the channel axis first and the
leading dims second, so torch.compile fuses the backward into one pointwise + reduction pass.
Arithmetic runs in float32 at least (float64 if input or levels are float64): under autocast a
float16/bfloat16 input gives a float16/bfloat16 output and gradient, while the level gradient is
accumulated in float32. The backward is written in differentiable tensor operations, so under
``create_graph=True`` autograd differentiates it (double backward: the compiled path then runs the
same formulation uncompiled); its derivatives are those of docs/method.md section 4.

The continuous form (docs/method.md, section 6) runs the same helpers with an intercept table
``ic`` (C, 2b+1, m+1) (:func:`tmaf._continuous.intercepts`): each term is alpha(x) x + c(x), and
the backward also returns the intercept gradient gc[i,d,k] = sum of g_i over x_{i+d} in
interval k, which autograd carries back into the levels through the intercept table.

Non-finite inputs follow docs/method.md: alpha(NaN) = NaN (so NaN reaches the output, the input
gradient and every level gradient of the terms that read it); a term whose level is exactly 0 is
+0 at any non-NaN input, +-inf included, and adds nothing to its level gradient.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

from ._grid import compute_dtype


def _bshape(x: Tensor, cd: int, n: int) -> list[int]:
    shape = [1] * x.dim()
    shape[cd] = n
    return shape


def _band(C: int, d: int) -> tuple[int, int, int]:
    """Output channels i in [i0, i0+n) read input channels j = i + d in [i0+d, i0+d+n)."""
    i0 = max(0, -d)
    return i0, i0 + d, min(C, C - d) - i0


def _key(x: Tensor, bp: Tensor, cd: int, m1: int) -> Tensor:
    """Eager: flat index c * m1 + k(x) into a (C, m1) level table (c = the element's channel).

    ``bp`` is (1, m) shared or (n, m) per channel (n = x.shape[cd]).
    """
    if bp.shape[0] == 1:
        idx = torch.bucketize(x.contiguous(), bp[0].contiguous(), right=False)
    else:
        idx = torch.zeros_like(x, dtype=torch.int64)
        for k in range(bp.shape[1]):
            idx += x > bp[:, k].view(_bshape(x, cd, bp.shape[0]))
    n = x.shape[cd]
    return idx + (torch.arange(n, device=x.device) * m1).view(_bshape(x, cd, n))


def _nan_alpha(a: Tensor, x: Tensor) -> Tensor:
    """alpha(NaN) = NaN: NaN lies in no interval."""
    return torch.where(x.isnan(), x, a)


def _term(a: Tensor, x: Tensor) -> Tensor:
    """alpha * x, +0 where alpha is exactly 0 (also at +-inf); NaN alpha stays NaN."""
    return torch.where(a == 0, torch.zeros((), dtype=x.dtype, device=x.device), a * x)


def _level_grad_terms(g: Tensor, x: Tensor, a: Tensor) -> Tensor:
    """g * x, the summand of the level gradient; 0 where the level is 0 and x is infinite."""
    return torch.where((a == 0) & x.isinf(), torch.zeros((), dtype=x.dtype, device=x.device), g * x)


def _nan_rows(sums: Tensor, x: Tensor, cd: int) -> Tensor:
    """(n, m+1) level-gradient sums: NaN in every interval of a channel whose input has a NaN."""
    dims = tuple(d for d in range(x.dim()) if d != cd)
    has_nan = x.isnan().any(dim=dims) if dims else x.isnan()
    return torch.where(has_nan[:, None], torch.full((), float("nan"), dtype=sums.dtype, device=sums.device),
                       sums)


def _alpha_fused(x: Tensor, bpT: Tensor, lvT: Tensor, cd: int) -> Tensor:
    """alpha(x) by comparisons and selects. bpT (m, 1 or n), lvT (m+1, n): contiguous rows."""
    n = lvT.shape[1]
    a = lvT[0].view(_bshape(x, cd, n)).expand_as(x)
    for k in range(lvT.shape[0] - 1):
        s_k = bpT[k].view(_bshape(x, cd, bpT.shape[1]))
        a = torch.where(x > s_k, lvT[k + 1].view(_bshape(x, cd, n)), a)
    return a


def _interval_sums(p: Tensor, x: Tensor, bpT: Tensor, cd: int) -> Tensor:
    """(n, m+1): sum of p over non-channel positions where x lies in interval k.

    Interval k is s_k < x <= s_{k+1} (closed on the right); the sums run over the dims after
    the channel axis first, then the leading dims (a contiguous inner reduction that fuses with
    the pointwise input gradient).
    """
    inner, outer = tuple(range(cd + 1, x.dim())), tuple(range(cd))
    zero = p.new_zeros(())
    sums, left = [], None  # left: x > s_k (x is right of breakpoint k)
    for k in range(bpT.shape[0] + 1):
        right = x > bpT[k].view(_bshape(x, cd, bpT.shape[1])) if k < bpT.shape[0] else None
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


def _interval_major(x: Tensor, breakpoints: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
    """Tables for the fused kernels, in the compute dtype: breakpoints (m, 1 or C) and levels
    (2b+1, m+1, C), contiguous, so a kernel reads one interval's values for consecutive
    channels from consecutive addresses (vectorised selects when channels are innermost).
    Built outside the compiled kernels: inside, inductor would fold the transposes away."""
    dt = compute_dtype(x, levels, breakpoints)
    bpT = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1]).t().contiguous()
    return bpT, levels.to(dt).permute(1, 2, 0).contiguous()


def _add_band_term(acc: Tensor | None, term: Tensor, like: Tensor, cd: int, start: int, n: int,
                   b: int) -> Tensor:
    """acc[..., start:start+n, ...] += term along ``cd``; for b = 0 the term is the whole result."""
    if b == 0:
        return term
    acc = torch.zeros_like(like) if acc is None else acc
    acc.narrow(cd, start, n).add_(term)
    return acc


def _pad_band(sums: Tensor, C: int, i0: int, n: int) -> Tensor:
    """(n, m+1) level-gradient sums -> (C, m+1): channels outside the band (d != 0) get zero."""
    return torch.nn.functional.pad(sums, (0, 0, i0, C - i0 - n))


def fused_fwd(x: Tensor, bpT: Tensor, lvT: Tensor, cd: int, icT: Tensor | None = None) -> Tensor:
    """Forward by comparisons (see module docstring); tables from :func:`_interval_major`;
    ``icT`` (2b+1, m+1, C): the intercepts of the continuous form."""
    C, b = x.shape[cd], lvT.shape[0] // 2
    xc = x.to(lvT.dtype)
    out = None
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj = xc.narrow(cd, j0, n)
        bj = bpT if bpT.shape[1] == 1 else bpT[:, j0:j0 + n]
        y = _term(_nan_alpha(_alpha_fused(xj, bj, lvT[d + b, :, i0:i0 + n], cd), xj), xj)
        if icT is not None:
            y = y + _alpha_fused(xj, bj, icT[d + b, :, i0:i0 + n], cd)
        out = _add_band_term(out, y, xc, cd, i0, n, b)
    return out.to(x.dtype)


def fused_bwd(g: Tensor, x: Tensor, bpT: Tensor, lvT: Tensor, cd: int,
              affine: bool = False) -> tuple[Tensor, ...]:
    """Gradients (input, levels (C, 2b+1, m+1) in the compute dtype, and with ``affine`` the
    intercepts') by comparisons."""
    C, b = x.shape[cd], lvT.shape[0] // 2
    xc, gc = x.to(lvT.dtype), g.to(lvT.dtype)
    gx, gl, gic = None, [], []
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj, gi = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n)
        bj = bpT if bpT.shape[1] == 1 else bpT[:, j0:j0 + n]
        a = _nan_alpha(_alpha_fused(xj, bj, lvT[d + b, :, i0:i0 + n], cd), xj)
        sums = _nan_rows(_interval_sums(_level_grad_terms(gi, xj, a), xj, bj, cd), xj, cd)
        gx = _add_band_term(gx, a * gi, xc, cd, j0, n, b)
        gl.append(_pad_band(sums, C, i0, n))
        if affine:
            gic.append(_pad_band(_nan_rows(_interval_sums(gi, xj, bj, cd), xj, cd), C, i0, n))
    out = gx.to(x.dtype), torch.stack(gl, dim=1)
    return (*out, torch.stack(gic, dim=1)) if affine else out


def banded_tmaf_fwd(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, fused: bool,
                    kernel=None, intercepts: Tensor | None = None) -> Tensor:
    """Forward of banded TMAF. x (..., C, ...), breakpoints (m,)/(C, m), levels (C, 2b+1, m+1);
    ``intercepts`` (shaped like the levels): the continuous form's affine terms.

    ``kernel``: a compiled :func:`fused_fwd` (``fused`` only).
    """
    if fused:
        bpT, lvT = _interval_major(x, breakpoints, levels)
        icT = None if intercepts is None else intercepts.to(lvT.dtype).permute(1, 2, 0).contiguous()
        return (kernel or fused_fwd)(x, bpT, lvT, cd, icT)
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt = compute_dtype(x, levels, breakpoints)
    xc, lv = x.to(dt), levels.to(dt)
    ic = None if intercepts is None else intercepts.to(dt)
    bp = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1])
    key = _key(xc, bp, cd, m1)
    out = None
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj = xc.narrow(cd, j0, n)
        # table row i = j - d for input channel j: shift the flat key by j0 rows
        kj = key.narrow(cd, j0, n) - j0 * m1
        y = _term(_nan_alpha(lv[i0:i0 + n, d + b].reshape(-1).take(kj), xj), xj)
        if ic is not None:
            y = y + ic[i0:i0 + n, d + b].reshape(-1).take(kj)
        out = _add_band_term(out, y, xc, cd, i0, n, b)
    return out.to(x.dtype)


def banded_tmaf_bwd(g: Tensor, x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
                    fused: bool, kernel=None, affine: bool = False) -> tuple[Tensor, ...]:
    """Gradients (input, levels) of banded TMAF given the upstream gradient ``g`` (shaped like x);
    with ``affine`` (the continuous form) also the intercepts' (sum of g per interval).

    ``kernel``: a compiled :func:`fused_bwd` (``fused`` only).
    """
    if fused:
        grads = (kernel or fused_bwd)(g, x, *_interval_major(x, breakpoints, levels), cd, affine)
        return grads[0], *(t.to(levels.dtype) for t in grads[1:])
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt = compute_dtype(x, levels, breakpoints)
    xc, gc, lv = x.to(dt), g.to(dt), levels.to(dt)
    bp = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1])
    key = _key(xc, bp, cd, m1)
    gx, gl, gic = None, [], []
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj, gi = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n)
        kj = key.narrow(cd, j0, n) - j0 * m1  # flat index into the (n, m1) table below
        a = _nan_alpha(lv[i0:i0 + n, d + b].reshape(-1).take(kj), xj)
        bj = bp if bp.shape[0] == 1 else bp[j0:j0 + n]
        sums = _nan_rows(_segment_sums(_level_grad_terms(gi, xj, a), kj, n, m1, xj, bj, cd), xj, cd)
        gx = _add_band_term(gx, a * gi, xc, cd, j0, n, b)
        gl.append(_pad_band(sums, C, i0, n))
        if affine:
            gsum = _nan_rows(_segment_sums(gi, kj, n, m1, xj, bj, cd), xj, cd)
            gic.append(_pad_band(gsum, C, i0, n))
    out = gx.to(x.dtype), torch.stack(gl, dim=1).to(levels.dtype)
    return (*out, torch.stack(gic, dim=1).to(levels.dtype)) if affine else out


def _segment_sums(p: Tensor, kj: Tensor, n: int, m1: int, xj: Tensor, bj: Tensor,
                  cd: int) -> Tensor:
    """Eager level-gradient sums (n, m1): one scatter_add on CPU, masked sums elsewhere."""
    if p.device.type == "cpu":  # CPU scatter_add runs in index order: deterministic
        flat = p.new_zeros(n * m1).scatter_add_(0, kj.reshape(-1), p.reshape(-1))
        return flat.view(n, m1)
    return _interval_sums(p, xj, bj.t().contiguous(), cd)


# --- torch.compile'd fusions, created on first use; eager fallback if compiling fails. --------

_compiled: dict[str, object] = {}
_compile_failed: list[str] = []


def _compile_disabled() -> bool:
    return bool(_compile_failed) or os.environ.get("TMAF_DISABLE_COMPILE", "") not in ("", "0")


def _get_compiled(name: str):
    if name not in _compiled:
        fn = fused_fwd if name == "fwd" else fused_bwd
        _compiled[name] = torch.compile(fn, dynamic=None)
    return _compiled[name]


def _call(name: str, compiled: bool, *args, **form):
    """``form``: ``intercepts=`` (forward) or ``affine=True`` (backward) for the continuous form."""
    eager = banded_tmaf_fwd if name == "fwd" else banded_tmaf_bwd
    # Under create_graph (grad mode on in the backward) the formulation runs uncompiled, so that
    # autograd records it and a second backward differentiates it.
    if not compiled or _compile_disabled() or torch.compiler.is_compiling() or torch.is_grad_enabled():
        # Inside an outer torch.compile, the fused formulation is traced into the caller's graph.
        return eager(*args, compiled or torch.compiler.is_compiling(), **form)
    try:
        return eager(*args, True, kernel=_get_compiled(name), **form)
    except Exception as e:  # no C++ compiler / triton, unsupported platform, ...
        _compile_failed.append(repr(e))
        warnings.warn(f"tmaf: torch.compile of the fused TMAF kernel failed ({e!r:.200}); "
                      "falling back to the eager fast path", RuntimeWarning, stacklevel=3)
        return eager(*args, False, **form)


class BandedTMAFFunction(torch.autograd.Function):
    """Autograd glue only: saves (x, breakpoints, levels) and calls the helpers above. ``ic``
    (the continuous form's intercepts, an input so that autograd carries their gradient back
    to the levels that made them) selects the affine terms; None is the jump form."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int, compiled: bool, ic=None):
        ctx.save_for_backward(x, breakpoints, levels)
        ctx.channel_dim, ctx.compiled, ctx.affine = channel_dim, compiled, ic is not None
        form = {"intercepts": ic} if ic is not None else {}
        return _call("fwd", compiled, x, breakpoints, levels, channel_dim, **form)

    @staticmethod
    def backward(ctx, g):  # plain tensor operations under create_graph: differentiable again
        x, breakpoints, levels = ctx.saved_tensors
        form = {"affine": True} if ctx.affine else {}
        grads = _call("bwd", ctx.compiled, g.contiguous(), x, breakpoints, levels,
                      ctx.channel_dim, **form)
        gic = grads[2] if ctx.affine and ctx.needs_input_grad[5] else None
        return (grads[0] if ctx.needs_input_grad[0] else None, None,
                grads[1] if ctx.needs_input_grad[2] else None, None, None, gic)
