"""Fast path of banded TMAF: plain forward/backward helpers, their torch.compile'd fusions,
and the ``torch.autograd.Function`` that ties them to autograd (METHOD.md section 4).

Forward:   out_i  = sum_d alpha_{i,d}(x_{i+d}) x_{i+d}
Backward:  gx_j   = sum_d alpha_{j-d,d}(x_j) g_{j-d}
           gt[i,d,k] = sum over all non-channel positions of g_i x_{i+d} [k(x_{i+d}) = k]

Only the input (and the small parameter tensors) are saved for backward. The level gradient is a
per-(channel, offset, interval) masked sum: a deterministic reduction, no atomics, no scatter.

Two formulations of alpha share the code: ``fused=False`` (eager) looks levels up by interval
index (one ``bucketize`` + one ``take``); ``fused=True`` selects levels by a chain of comparisons,
``alpha = where(x > s_m, t_m, ... where(x > s_1, t_1, t_0))``, which torch.compile fuses into one
pointwise kernel (forward) and one pointwise + reduction pass (backward).
Arithmetic runs in float32 at least (float64 if input or levels are float64): under autocast a
float16/bfloat16 input gives a float16/bfloat16 output and gradient, while the level gradient is
accumulated in float32. Double backward is not supported (the backward is once-differentiable).
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._reference import compute_dtype


def _bshape(x: Tensor, cd: int, n: int) -> list[int]:
    shape = [1] * x.dim()
    shape[cd] = n
    return shape


def _band(C: int, d: int) -> tuple[int, int, int]:
    """Output channels i in [i0, i0+n) read input channels j = i + d in [i0+d, i0+d+n)."""
    i0 = max(0, -d)
    return i0, i0 + d, min(C, C - d) - i0


def _index(x: Tensor, bp: Tensor, cd: int, fused: bool) -> Tensor:
    """k(x) = #{j : s_j < x} per element, with the breakpoints of each element's channel.

    ``bp`` is (1, m) shared or (n, m) per channel (n = x.shape[cd]).
    """
    if bp.shape[0] == 1 and not fused:
        return torch.bucketize(x.contiguous(), bp[0].contiguous(), right=False)
    idx = torch.zeros_like(x, dtype=torch.int64 if not fused else torch.int32)
    for k in range(bp.shape[1]):
        idx = idx + (x > bp[:, k].view(_bshape(x, cd, bp.shape[0])))
    return idx


def _alpha(x: Tensor, idx: Tensor | None, bp: Tensor, lv: Tensor, cd: int, fused: bool) -> Tensor:
    """alpha(x) for one band offset: lv (n, m+1) levels of the output channels, x (.., n, ..)."""
    n, m1 = lv.shape
    if fused:  # comparisons and selects only: fuses into one kernel
        a = lv[:, 0].view(_bshape(x, cd, n)).expand_as(x)
        for k in range(m1 - 1):
            s_k = bp[:, k].view(_bshape(x, cd, bp.shape[0]))
            a = torch.where(x > s_k, lv[:, k + 1].view(_bshape(x, cd, n)), a)
        return a
    offsets = torch.arange(n, device=x.device).view(_bshape(x, cd, n)) * m1
    return lv.reshape(-1).take(idx + offsets)


def banded_tmaf_fwd(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, fused: bool) -> Tensor:
    """Forward of banded TMAF. x (..., C, ...), breakpoints (m,)/(C, m), levels (C, 2b+1, m+1)."""
    C, b = x.shape[cd], levels.shape[1] // 2
    dt = compute_dtype(x, levels)
    xc, lv = x.to(dt), levels.to(dt)
    bp = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1])
    idx = None if fused else _index(xc, bp, cd, fused)
    if b == 0:
        return (_alpha(xc, idx, bp, lv[:, 0], cd, fused) * xc).to(x.dtype)
    out = torch.zeros_like(xc)
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj = xc.narrow(cd, j0, n)
        bj = bp if bp.shape[0] == 1 else bp[j0:j0 + n]
        ij = None if idx is None else idx.narrow(cd, j0, n)
        a = _alpha(xj, ij, bj, lv[i0:i0 + n, d + b], cd, fused)
        out.narrow(cd, i0, n).add_(a * xj)
    return out.to(x.dtype)


def _level_sums(p: Tensor, idx: Tensor, cd: int, m1: int, red: list[int], fused: bool) -> Tensor:
    """sums[c, k] = sum of p over the positions of channel c whose interval index is k: (n, m+1)."""
    n = p.shape[cd]
    if not fused and p.device.type == "cpu":
        # One pass: CPU index_add_ into a 1-D tensor runs serially, so it is deterministic.
        key = idx + torch.arange(n, device=p.device).view(_bshape(p, cd, n)) * m1
        return p.new_zeros(n * m1).index_add_(0, key.reshape(-1), p.reshape(-1)).view(n, m1)
    # Masked sums: a deterministic reduction on every device, fused into one pass when compiled.
    zero = p.new_zeros(())
    return torch.stack([torch.where(idx == k, p, zero).sum(red) for k in range(m1)], dim=-1)


def banded_tmaf_bwd(g: Tensor, x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
                    fused: bool) -> tuple[Tensor, Tensor]:
    """Gradients (input, levels) of banded TMAF given the upstream gradient ``g`` (shaped like x)."""
    C, b, m1 = x.shape[cd], levels.shape[1] // 2, levels.shape[2]
    dt = compute_dtype(x, levels)
    xc, gc, lv = x.to(dt), g.to(dt), levels.to(dt)
    bp = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1])
    idx = _index(xc, bp, cd, fused)
    red = [k for k in range(x.dim()) if k != cd]
    gx = torch.zeros_like(xc)
    gl = []
    for d in range(-b, b + 1):
        i0, j0, n = _band(C, d)
        xj, gi, ij = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n), idx.narrow(cd, j0, n)
        bj = bp if bp.shape[0] == 1 else bp[j0:j0 + n]
        a = _alpha(xj, ij, bj, lv[i0:i0 + n, d + b], cd, fused)
        gx.narrow(cd, j0, n).add_(a * gi)
        sums = _level_sums(gi * xj, ij, cd, m1, red, fused)
        # Channels outside the band (only for d != 0) get zero level gradient.
        gl.append(torch.nn.functional.pad(sums, (0, 0, i0, C - i0 - n)))
    return gx.to(x.dtype), torch.stack(gl, dim=1).to(levels.dtype)


# --- torch.compile'd fusions, created on first use; eager fallback if compiling fails. --------

_compiled: dict[str, object] = {}
_compile_failed: list[str] = []


def _compile_disabled() -> bool:
    return bool(_compile_failed) or os.environ.get("TMAF_DISABLE_COMPILE", "") not in ("", "0")


def _get_compiled(name: str):
    if name not in _compiled:
        fn = banded_tmaf_fwd if name == "fwd" else banded_tmaf_bwd
        _compiled[name] = torch.compile(fn, dynamic=None)
    return _compiled[name]


def _call(name: str, compiled: bool, *args):
    eager = banded_tmaf_fwd if name == "fwd" else banded_tmaf_bwd
    if not compiled or _compile_disabled() or torch.compiler.is_compiling():
        # Inside an outer torch.compile, the fused formulation is traced into the caller's graph.
        return eager(*args, compiled or torch.compiler.is_compiling())
    try:
        return _get_compiled(name)(*args, True)
    except Exception as e:  # no C++ compiler / triton, unsupported platform, ...
        _compile_failed.append(repr(e))
        warnings.warn(f"tmaf: torch.compile of the fused TMAF kernel failed ({e!r:.200}); "
                      "falling back to the eager fast path", RuntimeWarning, stacklevel=3)
        return eager(*args, False)


class BandedTMAFFunction(torch.autograd.Function):
    """Autograd glue only: saves (x, breakpoints, levels) and calls the helpers above."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int, compiled: bool):
        ctx.save_for_backward(x, breakpoints, levels)
        ctx.channel_dim, ctx.compiled = channel_dim, compiled
        return _call("fwd", compiled, x, breakpoints, levels, channel_dim)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, breakpoints, levels = ctx.saved_tensors
        gx, gl = _call("bwd", ctx.compiled, g.contiguous(), x, breakpoints, levels, ctx.channel_dim)
        return (gx if ctx.needs_input_grad[0] else None, None,
                gl if ctx.needs_input_grad[2] else None, None, None)
