"""The native operator library ``tmaf._C`` (C++ sources in src/tmaf/csrc) and its torch.library glue.

``tmaf._C`` registers two operators, ``torch.ops.tmaf.banded_fwd`` and ``torch.ops.tmaf.banded_bwd``,
and their continuous-form twins ``banded_cont_fwd`` / ``banded_cont_bwd`` (docs/method.md section
6: the terms alpha(x) x + c(x), the intercept table built from the levels inside the operator,
its part of the level gradient added in the backward), with CPU kernels: vectorised per
instruction set (AVX-512, AVX2, a portable baseline; the best one the CPU runs is picked at
load time), parallel over fixed tasks, one pass over memory each way,
and a level gradient reduced in a fixed order, so it is bit-identical for any thread count.
Semantics, non-finite inputs included: docs/method.md. This module adds what PyTorch needs to
treat the forward as one opaque, differentiable operator: a fake (meta) implementation of both ops
for torch.compile / torch.export. The autograd formula (the backward op) is registered in C++ for
the Autograd key (ops.cpp), so a differentiable call costs one dispatcher call and no Python.

Loading, and the checks that the extension matches the running torch, are in ``tmaf/_loader.py``:
if it is missing, fails to load or was built for another torch release, ``native_available()``
is False, one warning says why, and the functional API falls back to the pure-PyTorch backends.
``TMAF_NO_NATIVE=1`` hides the extension deliberately (no warning); at install time the same
variable skips building it (setup.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _loader

#: The native kernels accept at most this many breakpoints per grid.
MAX_BREAKPOINTS = 256

_unavailable_reason, _built_for = _loader.load()  # (why the native path is off, the build record)


def native_available(device: str | torch.device = "cpu") -> bool:
    """True when the native operators are built and have kernels for ``device`` (CPU only)."""
    if _unavailable_reason is not None:
        return False
    return (device if isinstance(device, torch.device) else torch.device(device)).type == "cpu"


def native_status() -> str:
    """One line: which native kernels run here, or why none do; the torch the extension was built
    for (and its C++ ABI flag) and the torch running."""
    run = _loader.running()
    built = (f"built for torch {_built_for['torch']} (C++11 ABI {_built_for.get('cxx11_abi', '?')})"
             if _built_for else "no build record")
    torches = f"{built}, running torch {run['torch']} (C++11 ABI {run['cxx11_abi']})"
    if _unavailable_reason is not None:
        return f"unavailable: {_unavailable_reason}; {torches}"
    isas = ", ".join(native_isas())
    return f"cpu kernels: {torch.ops.tmaf.native_isa()} (this CPU runs: {isas}); {torches}"


def native_isas() -> list[str]:
    """Instruction-set variants of the kernels this CPU can run, best last."""
    return list(torch.ops.tmaf.native_isas()) if _unavailable_reason is None else []


def set_native_isa(name: str) -> str:
    """Run the kernels built for ``name`` (one of :func:`native_isas`); returns the previous one."""
    if _unavailable_reason is not None:
        raise RuntimeError(f"tmaf: native operators unavailable: {_unavailable_reason}")
    return torch.ops.tmaf.set_native_isa(name)


def supports(x: Tensor, breakpoints: Tensor) -> bool:
    """Whether the native kernels take this call (device and grid size)."""
    return native_available(x.device) and breakpoints.shape[-1] <= MAX_BREAKPOINTS


def unsupported_reason(x: Tensor, breakpoints: Tensor) -> str:
    if _unavailable_reason is not None:
        return _unavailable_reason
    if x.device.type != "cpu":
        return f"the native kernels run on the CPU only, the input is on {x.device}"
    return (f"the native kernels take at most {MAX_BREAKPOINTS} breakpoints, "
            f"got m = {breakpoints.shape[-1]}")


def banded_tmaf_native(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """Banded TMAF through the native operator (validated input, channel_dim in 0..ndim-1)."""
    return _banded_fwd(x, breakpoints, levels, channel_dim)  # no gradient reaches the breakpoints


def banded_continuous_native(x: Tensor, breakpoints: Tensor, levels: Tensor, channel_dim: int) -> Tensor:
    """The continuous form through the native operator (validated input, channel_dim in 0..ndim-1)."""
    return _banded_cont_fwd(x, breakpoints, levels, channel_dim)


def _like_kernel_output(x: Tensor, channel_dim: int) -> Tensor:
    """An empty tensor with the strides the kernels give their output (mirrors ops.cpp)."""
    if x.is_contiguous():
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)
    moved = x.movedim(channel_dim, -1)
    if moved.is_contiguous():  # channels innermost in memory (channels-last): kept as is
        return torch.empty(moved.shape, dtype=x.dtype, device=x.device).movedim(-1, channel_dim)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


if _unavailable_reason is None:
    _banded_fwd = torch.ops.tmaf.banded_fwd.default
    _banded_cont_fwd = torch.ops.tmaf.banded_cont_fwd.default

    def _fwd_fake(x, breakpoints, levels, channel_dim):
        return _like_kernel_output(x, channel_dim % x.dim())

    def _bwd_fake(grad, x, breakpoints, levels, channel_dim):
        return (_like_kernel_output(x, channel_dim % x.dim()),
                torch.empty(levels.shape, dtype=levels.dtype, device=levels.device))

    # the jump form's operators and the continuous form's take the same arguments
    for _form in ("banded", "banded_cont"):
        torch.library.register_fake(f"tmaf::{_form}_fwd")(_fwd_fake)
        torch.library.register_fake(f"tmaf::{_form}_bwd")(_bwd_fake)

    # the backward operators' own derivative, for double backward (create_graph=True)
    from ._second_order import register as _register_second_order

    _register_second_order()
