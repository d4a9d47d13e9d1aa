"""Which activation a module computes: torch's, transformers' and timm's activation classes by name.

``tmaf.convert`` swaps activation modules without the user naming their classes. transformers
(``transformers.activations``: ``NewGELUActivation``, ``GELUActivation``, ``SiLUActivation``, ...)
and timm (``timm.layers.activations``: ``GELU``, ``GELUTanh``, ``Swish``, ...) define their own
classes, not subclasses of ``nn.GELU``/``nn.SiLU``; they are recognised by their defining package
and class name along the MRO, so neither library is imported here.

Every recognised module gets a canonical function name (``"gelu"``, ``"gelu_tanh"``, ``"silu"``,
``"relu2"``, ...), the name ``init="match"`` fits a TMAF to. Modules with non-default parameters
(``nn.LeakyReLU(0.2)``, ``nn.ELU(alpha=0.5)``) get the function itself as well.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torch.nn import functional as F

__all__ = ["DEFAULT_ACTIVATIONS", "RECOGNISED", "recognise"]

#: Canonical names converted when ``activations`` is not given: hidden-layer nonlinearities that
#: a TMAF can stand in for. Gates and squashers (sigmoid, tanh, hardsigmoid: SE gates, BERT's
#: pooler), trainable ones (prelu) and nn.Identity are left alone unless named.
DEFAULT_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "gelu_tanh",
                       "quick_gelu", "silu", "mish", "relu2", "hardswish")

_TORCH: tuple[tuple[type, str], ...] = (
    (nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.LeakyReLU, "leaky_relu"), (nn.ELU, "elu"),
    (nn.CELU, "celu"), (nn.SELU, "selu"), (nn.SiLU, "silu"), (nn.Mish, "mish"),
    (nn.Hardswish, "hardswish"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"),
    (nn.Hardsigmoid, "hardsigmoid"), (nn.PReLU, "prelu"),
)

# (top-level package, class name) -> canonical name; matched along the MRO.
_BY_NAME: dict[tuple[str, str], str] = {
    ("transformers", "GELUActivation"): "gelu",
    ("transformers", "NewGELUActivation"): "gelu_tanh",
    ("transformers", "FastGELUActivation"): "gelu_tanh",
    ("transformers", "AccurateGELUActivation"): "gelu_tanh",
    ("transformers", "GELUTanh"): "gelu_tanh",
    ("transformers", "PytorchGELUTanh"): "gelu_tanh",
    ("transformers", "QuickGELUActivation"): "quick_gelu",
    ("transformers", "SiLUActivation"): "silu",
    ("transformers", "MishActivation"): "mish",
    ("transformers", "ReLUSquaredActivation"): "relu2",
    ("timm", "GELU"): "gelu",
    ("timm", "GELUTanh"): "gelu_tanh",
    ("timm", "QuickGELU"): "quick_gelu",
    ("timm", "Swish"): "silu", ("timm", "SwishMe"): "silu", ("timm", "SwishJit"): "silu",
    ("timm", "Mish"): "mish", ("timm", "MishMe"): "mish", ("timm", "MishJit"): "mish",
    ("timm", "HardSwish"): "hardswish", ("timm", "HardSwishMe"): "hardswish",
    ("timm", "HardSwishJit"): "hardswish",
    ("timm", "Sigmoid"): "sigmoid", ("timm", "Tanh"): "tanh",
    ("timm", "HardSigmoid"): "hardsigmoid", ("timm", "HardSigmoidMe"): "hardsigmoid",
}

#: Every canonical name a module can be recognised as.
RECOGNISED = tuple(sorted({n for _, n in _TORCH} | set(_BY_NAME.values()) | {"gelu", "gelu_tanh"}))


def _torch_function(module: nn.Module, name: str) -> tuple[str, Callable | None]:
    """The canonical name, and the function itself where the module's parameters differ from
    the canonical function's defaults."""
    if name == "leaky_relu" and module.negative_slope != 0.01:
        return name, partial(F.leaky_relu, negative_slope=module.negative_slope)
    if name in ("elu", "celu") and module.alpha != 1.0:
        return name, partial(F.elu if name == "elu" else F.celu, alpha=module.alpha)
    return name, None


def recognise(module: nn.Module) -> tuple[str, Callable | None] | None:
    """(canonical name, function or None) of the activation ``module`` computes; None if unknown.

    The function is given only where the module's settings differ from the canonical name's
    (``nn.LeakyReLU(0.2)`` -> ``("leaky_relu", partial(F.leaky_relu, negative_slope=0.2))``).
    """
    if isinstance(module, nn.GELU):
        return ("gelu_tanh" if module.approximate == "tanh" else "gelu"), None
    for cls, name in _TORCH:
        if isinstance(module, cls):
            return _torch_function(module, name)
    for cls in type(module).__mro__:
        key = (cls.__module__.partition(".")[0], cls.__name__)
        if key in _BY_NAME:
            return _BY_NAME[key], None
    return None


def looks_like_activation(module: nn.Module) -> bool:
    """A parameter-free leaf whose class name suggests an activation (for the 'nothing converted'
    message only)."""
    if next(module.children(), None) is not None or next(module.parameters(), None) is not None:
        return False
    name = type(module).__name__.lower()
    return any(s in name for s in ("act", "relu", "gelu", "silu", "swish", "mish", "glu", "elu"))
