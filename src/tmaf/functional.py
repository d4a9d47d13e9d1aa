"""Functional API of trainable matrix activation functions (TMAF).

Liu, Cao, Li, Zikatanov, "Neural networks with trainable matrix activation functions",
arXiv 2109.09948. The activation is sigma(y) = D(y) y with a banded matrix D whose entries are
trainable piecewise-constant functions (METHOD.md):

    sigma(y)_i = sum_{d=-b..b, 0 <= i+d < C} alpha_{i,d}(y_{i+d}) * y_{i+d},
    alpha_{i,d}(s) = levels[i, d+b, k(s)],   k(s) = #{j : s_j < s}   (intervals closed on the right),

with the breakpoints s of channel i+d. b = 0 is diagonal TMAF, b = 1 tridiagonal, b = C-1 full.
Terms with i+d outside 0..C-1 are zero (no wrap-around).

Backends (one switch, :func:`set_backend` or the ``TMAF_BACKEND`` environment variable):
    ``"reference"`` literal loops + autograd (slow, ground truth);
    ``"eager"``     custom autograd function, plain PyTorch ops;
    ``"compiled"``  the same autograd function with torch.compile-fused forward/backward kernels
                    (falls back to ``"eager"`` with a warning if compilation fails);
    ``"auto"``      (default) ``"compiled"`` on CUDA, ``"eager"`` on CPU. On CPU the first call of
                    each new shape costs seconds of compilation (10-30 s, less with PyTorch's
                    on-disk cache), so ``"compiled"`` is opt-in there. The price: the eager
                    backend costs about 50-90x ReLU per activation on large CPU tensors
                    (``results/bench/cpu``), the compiled one 1.3-4x; for CPU training of conv
                    nets, ``set_backend("compiled")`` is usually worth its compile time.
Inside a model compiled with ``torch.compile`` the fused formulation is always traced into the
model's own graph, whatever the backend.
"""

from __future__ import annotations

import os

from torch import Tensor

from . import _checks
from ._fused import BandedTMAFFunction
from ._reference import banded_tmaf_reference

__all__ = ["banded_tmaf", "diagonal_tmaf", "set_backend", "get_backend", "BACKENDS"]

BACKENDS = ("auto", "compiled", "eager", "reference")


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


def _resolve(backend: str | None, x: Tensor) -> str:
    name = _validate_backend(_backend if backend is None else backend)
    if name == "auto":
        return "compiled" if x.device.type == "cuda" else "eager"
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


def _dispatch(x: Tensor, breakpoints: Tensor, levels: Tensor, cd: int, backend: str | None) -> Tensor:
    """Run the selected implementation on validated input; levels (C, 2b+1, m+1)."""
    impl = _resolve(backend, x)
    if impl == "reference":
        return banded_tmaf_reference(x, breakpoints, levels, cd)
    return BandedTMAFFunction.apply(x, breakpoints.detach(), levels, cd, impl == "compiled")


def banded_tmaf(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1,
                backend: str | None = None, *, check_values: bool = True) -> Tensor:
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
    Returns:
        Tensor shaped and typed like ``x``.
    """
    cd = _validate(x, breakpoints, levels, channel_dim, banded=True, check_values=check_values)
    return _dispatch(x, breakpoints, levels, cd, backend)


def diagonal_tmaf(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int = 1,
                  backend: str | None = None, *, check_values: bool = True) -> Tensor:
    """Diagonal TMAF: sigma(x)_i = alpha_i(x_i) x_i, a learned per-channel activation.

    Args:
        x: (..., C, ...) floating-point input.
        breakpoints: (m,) shared, or (C, m) per channel.
        levels: (C, m+1); ``levels[i, k]`` is alpha_i on interval k.
    Returns:
        Tensor shaped and typed like ``x``. Same as :func:`banded_tmaf` with b = 0.
    """
    cd = _validate(x, breakpoints, levels, channel_dim, banded=False, check_values=check_values)
    return _dispatch(x, breakpoints, levels.unsqueeze(1), cd, backend)
