"""tmaf: trainable matrix activation functions for PyTorch.

Liu, Cao, Li, Zikatanov, "Neural networks with trainable matrix activation functions"
(arXiv 2109.09948): sigma(y) = D(y) y, where D(y) is a (diagonal, banded or full) matrix of
trainable piecewise-constant functions. ReLU exactly at the default initialisation.

    >>> import torch, tmaf
    >>> act = tmaf.DiagonalTMAF(16)            # drop-in for nn.ReLU on (N, 16, ...) inputs
    >>> x = torch.randn(4, 16, 8, 8)
    >>> torch.equal(act(x), torch.relu(x))
    True

The core imports only torch (and its own compiled operators, ``tmaf._C``, when they were built:
see :func:`native_available`). Figures of what a layer learned are the lab's
(:mod:`tmaf_lab.report.layer_figures`, the ``lab`` extra).
"""

from . import functional, matching
from ._activations import DEFAULT_ACTIVATIONS, RECOGNISED
from ._native import native_available, native_isas, native_status, set_native_isa
from ._report import conversion_report
from ._spec import apply_conversion, conversion_spec
from .calibrate import calibrate, outside_fraction
from .convert import CallSites, convert, is_tmaf, param_groups, tmaf_modules
from .factory import ACTIVATION_NAMES, create_act, get_act_layer
from .functional import BACKENDS, get_backend, resolve_backend, set_backend
from .modules import (
    DEFAULT_BREAKPOINTS,
    INITS,
    BandedTMAF,
    DiagonalTMAF,
    LazyBandedTMAF,
    LazyDiagonalTMAF,
    LazyTridiagonalTMAF,
    TridiagonalTMAF,
    uniform_breakpoints,
)

__version__ = "0.1.0"

__all__ = [
    "functional", "matching", "calibrate", "outside_fraction", "convert", "param_groups", "is_tmaf",
    "tmaf_modules", "CallSites", "conversion_report", "conversion_spec", "apply_conversion",
    "DEFAULT_ACTIVATIONS", "RECOGNISED",
    "ACTIVATION_NAMES", "create_act", "get_act_layer", "BACKENDS", "get_backend", "set_backend",
    "resolve_backend", "native_available", "native_status", "native_isas", "set_native_isa",
    "DEFAULT_BREAKPOINTS", "INITS", "BandedTMAF", "DiagonalTMAF", "TridiagonalTMAF",
    "LazyBandedTMAF", "LazyDiagonalTMAF", "LazyTridiagonalTMAF", "uniform_breakpoints",
]
