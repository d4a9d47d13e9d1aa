"""Functional API of trainable matrix activation functions (TMAF).

Liu, Cao, Li, Zikatanov, "Neural networks with trainable matrix activation functions",
arXiv 2109.09948. The activation is sigma(y) = D(y) y with a banded matrix D whose entries are
trainable piecewise-constant functions (docs/method.md):

    sigma(y)_i = sum_{d=-b..b, 0 <= i+d < C} alpha_{i,d}(y_{i+d}) * y_{i+d},
    alpha_{i,d}(s) = levels[i, d+b, k(s)],   k(s) = #{j : s_j < s}   (intervals closed on the right),

with the breakpoints s of channel i+d. b = 0 is diagonal TMAF, b = 1 tridiagonal, b = C-1 full.
Terms with i+d outside 0..C-1 are zero (no wrap-around).

``form="continuous"`` (docs/method.md, section 6) replaces each term alpha_{i,d}(y) y by its
continuous twin with the same levels as slopes,

    F_{i,d}(t) = integral_0^t levels[i, d+b, k(u)] du   (continuous, piecewise linear, F(0) = 0),

a banded sum of continuous piecewise-linear functions of the neighbouring channels; b = 0 is a
per-channel learnable piecewise-linear activation. The ReLU, identity and leaky starts give the
same functions in both forms.

Backends (one switch, :func:`set_backend` or the ``TMAF_BACKEND`` environment variable):
    ``"native"``    the C++ operators of ``tmaf._C`` (CPU): fused, vectorised, parallel, with a
                    level gradient that is bit-identical for any thread count; opaque to
                    torch.compile and torch.export (see :mod:`tmaf._native`);
    ``"compiled"``  levels selected by comparisons, each pass fused by torch.compile
                    (:mod:`tmaf._compiled`; ``"eager"`` with a warning if compilation fails);
    ``"eager"``     levels looked up by interval index in plain PyTorch ops (:mod:`tmaf._eager`);
    ``"reference"`` literal loops (slow, ground truth);
    ``"auto"``      (default) ``"native"`` where it is built for the tensor's device (CPU),
                    otherwise ``"compiled"`` on CUDA and ``"eager"`` elsewhere.
Measured costs of each backend: docs/benchmarks.md. Inside torch.compile, torch.export and ONNX
export the fast backends trace the ``compiled`` backend's comparison-and-select formulation
(standard operators, which inductor fuses and ONNX has); ``native`` stays one opaque operator
under torch.compile and torch.export.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from . import _checks, _compiled, _eager, _native
from ._continuous import intercepts
from ._grid import compute_dtype
from ._reference import banded_continuous_reference, banded_tmaf_reference

__all__ = ["banded_tmaf", "diagonal_tmaf", "set_backend", "get_backend", "resolve_backend", "BACKENDS",
           "FORMS"]

BACKENDS = ("auto", "native", "compiled", "eager", "reference")
#: the pure-PyTorch fast paths, one module each: ``banded(x, breakpoints, levels, cd, intercepts)``
_FAST_PATHS = {"eager": _eager, "compiled": _compiled}
#: "jump": the paper's TMAF, alpha(y) y; "continuous": its continuous twin (section 6)
FORMS = ("jump", "continuous")


def validate_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"tmaf: unknown form {form!r}; expected one of {FORMS}")
    return form


def _validate_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"tmaf: unknown backend {name!r}; expected one of {BACKENDS}")
    return name


_backend = _validate_backend(os.environ.get("TMAF_BACKEND", "auto") or "auto")


def set_backend(name: str) -> None:
    """Select the implementation used when a call passes ``backend=None`` (see module docstring)."""
    global _backend
    _backend = _validate_backend(name)


def get_backend() -> str:
    return _backend


def resolve_backend(x: Tensor, backend: str | None = None, breakpoints: Tensor | None = None) -> str:
    """The implementation a call with input ``x`` runs: ``backend`` (None: the global setting)
    with ``"auto"`` resolved for ``x``'s device (and, if given, the grid size of ``breakpoints``)."""
    name = _validate_backend(_backend if backend is None else backend)
    if name == "auto":
        native = _native.native_available(x.device) and (
            breakpoints is None or breakpoints.shape[-1] <= _native.MAX_BREAKPOINTS)
        if native:
            return "native"
        return "compiled" if x.device.type == "cuda" else "eager"
    if name == "native" and breakpoints is not None and not _native.supports(x, breakpoints):
        raise RuntimeError(f"tmaf: the 'native' backend cannot run this call: "
                           f"{_native.unsupported_reason(x, breakpoints)}; use backend 'auto'")
    return name


def _validate(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int, banded: bool,
              check_values: bool) -> int:
    """All input checks of the functional API; returns channel_dim normalised to 0..ndim-1."""
    cd = _checks.check_input(x, channel_dim)
    C = x.shape[cd]
    _checks.check_breakpoints(breakpoints, C, values=False)
    _checks.check_levels(levels, C, breakpoints.shape[-1], banded=banded)
    _checks.check_same_device(x, breakpoints, levels)
    if check_values:
        _checks.check_breakpoints(breakpoints, C, values=True)
    return cd


def _dispatch(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, backend: str | None,
              form: str = "jump") -> Tensor:
    """Run the selected implementation on validated input; levels (C, 2b+1, m+1)."""
    name = resolve_backend(x, backend, breakpoints)
    continuous = form == "continuous"
    if name == "reference":
        reference = banded_continuous_reference if continuous else banded_tmaf_reference
        return reference(x, breakpoints, levels, cd)
    if name == "native":
        if not torch.onnx.is_in_onnx_export():
            op = _native.banded_continuous_native if continuous else _native.banded_tmaf_native
            return op(x, breakpoints, levels, cd)
        name = "eager"  # ONNX has no tmaf operator: trace the pure-PyTorch formulation
    if name == "eager" and torch.compiler.is_compiling():
        name = "compiled"  # traced into the caller's graph: comparisons and selects
    bp = breakpoints.detach()
    ic = None
    if continuous:
        # levels in the compute dtype before they split into slopes and intercepts: both parts
        # of the level gradient then meet in that dtype and are rounded to the levels' once
        levels = levels.to(compute_dtype(x, levels, bp))
        ic = intercepts(bp, levels, x)
    return _FAST_PATHS[name].banded(x, bp, levels, cd, ic)


def module_call(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, backend: str | None,
                form: str = "jump") -> Tensor:
    """A module's call: its breakpoints, levels (C, 2b+1, m+1) and form are valid by
    construction and ``cd`` is checked, so only the device is; no host sync, one operator call
    on ``native`` (plus the intercept table's few small ops for the continuous form)."""
    _checks.check_same_device(x, breakpoints, levels)
    return _dispatch(x, breakpoints, levels, cd, backend, form)


def banded_tmaf(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1,
                backend: str | None = None, *, check_values: bool = True,
                form: str = "jump") -> Tensor:
    """Banded TMAF along ``channel_dim``.

    Args:
        x: (..., C, ...) floating-point input; any number of leading/trailing dims.
        breakpoints: (m,) shared by all channels, or (C, m) per channel; finite, strictly increasing.
            Not trainable (their gradient is zero almost everywhere); no gradient flows to them.
        levels: (C, 2b+1, m+1); ``levels[i, d+b, k]`` is alpha_{i,d} on interval k.
        channel_dim: the channel axis of ``x`` (e.g. 1 for (N, C, H, W), -1 for (N, L, C)).
        backend: ``None`` (the global setting) or one of ``BACKENDS``.
        check_values: check breakpoints are finite and increasing (a host sync); modules that
            validated them already pass False.
        form: "jump" (the paper's TMAF, default) or "continuous" (each term the integral of
            its levels, see the module docstring).
    Returns:
        Tensor shaped and typed like ``x``.
    """
    validate_form(form)
    cd = _validate(x, breakpoints, levels, channel_dim, banded=True, check_values=check_values)
    return _dispatch(x, breakpoints, levels, cd, backend, form)


def diagonal_tmaf(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1,
                  backend: str | None = None, *, check_values: bool = True,
                  form: str = "jump") -> Tensor:
    """Diagonal TMAF: sigma(x)_i = alpha_i(x_i) x_i, a learned per-channel activation.

    Args:
        x: (..., C, ...) floating-point input.
        breakpoints: (m,) shared, or (C, m) per channel.
        levels: (C, m+1); ``levels[i, k]`` is alpha_i on interval k (the slope there, for
            ``form="continuous"``).
    Returns:
        Tensor shaped and typed like ``x``. Same as :func:`banded_tmaf` with b = 0.
    """
    validate_form(form)
    cd = _validate(x, breakpoints, levels, channel_dim, banded=False, check_values=check_values)
    return _dispatch(x, breakpoints, levels.unsqueeze(1), cd, backend, form)
