"""The ``compiled`` backend of banded TMAF: levels selected by comparisons, each pass fused by
torch.compile (docs/method.md, sections 4 and 6; the shared band arithmetic:
:mod:`tmaf._banded`).

alpha_{i,d}(x_j) is a chain of comparisons, ``where(x > s_m, t_m, ... where(x > s_1, t_1, t_0))``,
reading level and breakpoint tables laid out (interval, channel) so that the selects vectorise
along a contiguous channel axis; the level gradient is summed per interval from the same
comparisons (``s_k < x <= s_{k+1}``, no index tensor), over the dims after the channel axis first
and the leading dims second, so torch.compile fuses the backward into one pointwise + reduction
pass. Arithmetic and dtypes as in :mod:`tmaf._eager`.

:func:`select_fwd` and :func:`select_bwd` are compiled on first use. Every dim of the input
except the channel axis is marked dynamic before the first compile
(``torch._dynamo.maybe_mark_dynamic``), so one graph per kernel and layer variant serves every
batch size and sequence length; without the marks torch.compile specialises the first shape and
compiles again, dynamic, on the second (measured in docs/benchmarks.md, "Compiled backend and
varying shapes"). The channel count, band width, grid size, form, channel axis and dtype stay
static: a new one compiles a new graph.

The formulation runs uncompiled, written in differentiable tensor operations, where compiling
it would be wrong or useless: inside an outer torch.compile or torch.export (it is traced into
the caller's graph, and is what ONNX export emits), under ``create_graph=True`` (grad mode on in
the backward: autograd records it and a second backward differentiates it), and with
``TMAF_DISABLE_COMPILE=1``. If compiling fails (no C++ compiler or triton, an unsupported
platform), one warning says so and the ``eager`` backend runs from then on.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor

from . import _eager
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


def _alpha(x: Tensor, bpT: Tensor, lvT: Tensor, cd: int) -> Tensor:
    """alpha(x) by comparisons and selects. bpT (m, 1 or n), lvT (m+1, n): contiguous rows."""
    n = lvT.shape[1]
    a = lvT[0].view(bshape(x, cd, n)).expand_as(x)
    for k in range(lvT.shape[0] - 1):
        s_k = bpT[k].view(bshape(x, cd, bpT.shape[1]))
        a = torch.where(x > s_k, lvT[k + 1].view(bshape(x, cd, n)), a)
    return a


def tables(x: Tensor, breakpoints: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
    """The kernels' tables in the compute dtype: breakpoints (m, 1 or C) and levels
    (2b+1, m+1, C), contiguous, so a kernel reads one interval's values for consecutive
    channels from consecutive addresses (vectorised selects when channels are innermost).
    Built outside the compiled kernels: inside, inductor would fold the transposes away."""
    dt = compute_dtype(x, levels, breakpoints)
    bpT = breakpoints.to(dt).reshape(-1, breakpoints.shape[-1]).t().contiguous()
    return bpT, levels.to(dt).permute(1, 2, 0).contiguous()


def select_fwd(x: Tensor, bpT: Tensor, lvT: Tensor, cd: int, icT: Tensor | None = None) -> Tensor:
    """The forward kernel; tables from :func:`tables`; ``icT`` (2b+1, m+1, C): the continuous
    form's intercepts. Returns a tensor like x."""
    C, b = x.shape[cd], lvT.shape[0] // 2
    xc = x.to(lvT.dtype)
    out = None
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj = xc.narrow(cd, j0, n)
        bj = bpT if bpT.shape[1] == 1 else bpT[:, j0:j0 + n]
        y = term(nan_alpha(_alpha(xj, bj, lvT[d + b, :, i0:i0 + n], cd), xj), xj)
        if icT is not None:
            y = y + _alpha(xj, bj, icT[d + b, :, i0:i0 + n], cd)
        out = add_band_term(out, y, xc, cd, i0, n, b)
    return out.to(x.dtype)


def select_bwd(g: Tensor, x: Tensor, bpT: Tensor, lvT: Tensor, cd: int,
               affine: bool = False) -> tuple[Tensor, ...]:
    """The backward kernel: gradients (input, levels (C, 2b+1, m+1) in the compute dtype, and
    with ``affine`` the intercepts')."""
    C, b = x.shape[cd], lvT.shape[0] // 2
    xc, gc = x.to(lvT.dtype), g.to(lvT.dtype)
    gx, gl, gic = None, [], []
    for d in range(-b, b + 1):
        i0, j0, n = band(C, d)
        xj, gi = xc.narrow(cd, j0, n), gc.narrow(cd, i0, n)
        bj = bpT if bpT.shape[1] == 1 else bpT[:, j0:j0 + n]
        a = nan_alpha(_alpha(xj, bj, lvT[d + b, :, i0:i0 + n], cd), xj)
        sums = nan_rows(interval_sums(level_grad_terms(gi, xj, a), xj, bj, cd), xj, cd)
        gx = add_band_term(gx, a * gi, xc, cd, j0, n, b)
        gl.append(pad_band(sums, C, i0, n))
        if affine:
            gic.append(pad_band(nan_rows(interval_sums(gi, xj, bj, cd), xj, cd), C, i0, n))
    out = gx.to(x.dtype), torch.stack(gl, dim=1)
    return (*out, torch.stack(gic, dim=1)) if affine else out


# --- compiling: created on first use; the eager backend if compiling fails ----------------------

#: mark every non-channel dim of the kernels' inputs dynamic before compiling (module docstring)
MARK_DYNAMIC = True
_kernels: dict = {}
_compile_failed: list[str] = []


def _runs_uncompiled() -> bool:
    return (bool(_compile_failed) or os.environ.get("TMAF_DISABLE_COMPILE", "") not in ("", "0")
            or torch.compiler.is_compiling() or torch.is_grad_enabled())


def compiled_kernel(kernel):
    """The torch.compile'd ``kernel`` (:func:`select_fwd` or :func:`select_bwd`), made once."""
    if kernel not in _kernels:
        _kernels[kernel] = torch.compile(kernel, dynamic=None)
    return _kernels[kernel]


def _varying(t: Tensor, cd: int) -> Tensor:
    """An alias of ``t`` (the caller's tensor keeps no marks) with every dim but ``cd`` dynamic."""
    t = t.detach()
    if MARK_DYNAMIC:
        for dim in range(t.dim()):
            if dim != cd:
                torch._dynamo.maybe_mark_dynamic(t, dim)
    return t


def _give_up(e: Exception) -> None:
    _compile_failed.append(repr(e))
    warnings.warn(f"tmaf: torch.compile of the TMAF kernels failed ({e!r:.200}); the 'compiled' "
                  "backend runs the 'eager' one from now on", RuntimeWarning, stacklevel=4)


def banded_fwd(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
               intercepts: Tensor | None = None) -> Tensor:
    """Forward. x (..., C, ...), breakpoints (m,)/(C, m), levels (C, 2b+1, m+1); ``intercepts``
    (shaped like the levels): the continuous form's affine terms. Returns a tensor like x."""
    bpT, lvT = tables(x, breakpoints, levels)
    icT = None if intercepts is None else intercepts.to(lvT.dtype).permute(1, 2, 0).contiguous()
    if _runs_uncompiled():
        return select_fwd(x, bpT, lvT, cd, icT)
    try:
        return compiled_kernel(select_fwd)(_varying(x, cd), bpT, lvT, cd, icT)
    except Exception as e:  # no C++ compiler / triton, unsupported platform, ...
        _give_up(e)
        return _eager.banded_fwd(x, breakpoints, levels, cd, intercepts)


def banded_bwd(g: Tensor, x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
               affine: bool = False) -> tuple[Tensor, ...]:
    """Gradients (input, levels) given the upstream gradient ``g`` (shaped like x); with
    ``affine`` (the continuous form) also the intercepts' (sum of g per interval)."""
    bpT, lvT = tables(x, breakpoints, levels)
    if _runs_uncompiled():
        grads = select_bwd(g, x, bpT, lvT, cd, affine)
    else:
        try:
            grads = compiled_kernel(select_bwd)(_varying(g, cd), _varying(x, cd), bpT, lvT, cd, affine)
        except Exception as e:
            _give_up(e)
            return _eager.banded_bwd(g, x, breakpoints, levels, cd, affine)
    return grads[0], *(t.to(levels.dtype) for t in grads[1:])


class CompiledTMAFFunction(torch.autograd.Function):
    """Autograd glue only: saves (x, breakpoints, levels) and calls the helpers above."""

    @staticmethod
    def forward(ctx, x, breakpoints, levels, channel_dim: int, ic=None):
        save_for_backward(ctx, x, breakpoints, levels, channel_dim, ic)
        return banded_fwd(x, breakpoints, levels, channel_dim, ic)

    @staticmethod
    def backward(ctx, g):  # uncompiled under create_graph: differentiable again
        x, breakpoints, levels = ctx.saved_tensors
        return input_grads(ctx, banded_bwd(g.contiguous(), x, breakpoints, levels, ctx.channel_dim,
                                           ctx.affine))


def banded(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int,
           intercepts: Tensor | None = None) -> Tensor:
    """Banded TMAF on validated input (breakpoints detached); ``intercepts``: the continuous form."""
    return CompiledTMAFFunction.apply(x, breakpoints, levels, cd, intercepts)
