"""Choose activations by name (timm ``create_act`` style).

``get_act_layer(name)`` returns a *layer factory*: call it once per call site with the channel
count, so that no two call sites ever share an activation instance (and its parameters).

Names: relu, prelu (``nn.PReLU(C)``, one slope per channel), gelu, silu, leaky_relu, tanh,
identity, diagonal, tridiagonal, banded<b> (e.g. ``banded2``), full (banded with b = C-1), and
the continuous form of each TMAF name: continuous_diagonal, continuous_tridiagonal,
continuous_banded<b>, continuous_full (``form="continuous"``, docs/method.md section 6).
TMAF names accept the :class:`~tmaf.BandedTMAF` keyword arguments (breakpoints, init, ...),
e.g. ``get_act_layer("continuous_diagonal", init="match", match="gelu")`` for a start fitted
to GELU (docs/method.md section 7).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from torch import nn

from .modules import (
    BandedTMAF,
    DiagonalTMAF,
    LazyBandedTMAF,
    LazyDiagonalTMAF,
    LazyTridiagonalTMAF,
    TridiagonalTMAF,
)

__all__ = ["ACTIVATION_NAMES", "get_act_layer", "create_act", "create_lazy_tmaf", "is_tmaf_name"]

LayerFactory = Callable[[int], nn.Module]

_PLAIN = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh, "identity": nn.Identity,
}
ACTIVATION_NAMES = ("relu", "prelu", "gelu", "silu", "leaky_relu", "tanh", "identity",
                    "diagonal", "tridiagonal", "banded2", "full", "continuous_diagonal",
                    "continuous_tridiagonal", "continuous_banded2", "continuous_full")


_BANDED = re.compile(r"banded(\d+)")
_CONTINUOUS = "continuous_"


def _is_jump_name(key: str) -> bool:
    return key in ("diagonal", "tridiagonal", "full") or _BANDED.fullmatch(key) is not None


def _form(key: str, kwargs: dict) -> tuple[str, dict]:
    """A continuous_<TMAF name> key -> (the TMAF name, kwargs with form="continuous")."""
    if key.startswith(_CONTINUOUS):
        tmaf_key = key[len(_CONTINUOUS):]
        if _is_jump_name(tmaf_key):
            if kwargs.get("form", "continuous") != "continuous":
                raise ValueError(f"tmaf: {key!r} is the continuous form; got form={kwargs['form']!r}")
            return tmaf_key, {**kwargs, "form": "continuous"}
    return key, kwargs


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _plain(cls, num_channels: int, **kwargs) -> nn.Module:
    return cls(**kwargs)


def _prelu(num_channels: int, channel_dim: int = 1, **kwargs) -> nn.Module:
    if channel_dim != 1:
        raise ValueError(f"tmaf: nn.PReLU applies its slopes along dim 1; got channel_dim={channel_dim}")
    return nn.PReLU(num_parameters=num_channels, **kwargs)


def _full(num_channels: int, **kwargs) -> nn.Module:
    return BandedTMAF(num_channels, max(num_channels - 1, 0), **kwargs)


def _tmaf_layer(make, num_channels=None, /, *args, inplace=None, **kwargs) -> nn.Module:
    """One TMAF for a call site with ``num_channels`` channels; refuses timm's conventions
    (``act_layer()``, ``act_layer(inplace=True)``), which would silently share one set of levels
    or fail deep inside the constructor."""
    if num_channels is None or inplace is not None:
        got = "no channel count" if num_channels is None else f"inplace={inplace!r}"
        raise TypeError(f"tmaf: a TMAF layer factory from tmaf.get_act_layer is called as "
                        f"factory(num_channels), got {got}; as timm's act_layer (called with no "
                        "channel count) use tmaf.integrations.timm.act_layer(name)")
    return make(num_channels, *args, **kwargs)


def is_tmaf_name(name: str) -> bool:
    """Whether ``name`` is a TMAF name of either form (diagonal, continuous_banded3, ...)."""
    return _is_jump_name(_form(_key(name), {})[0])


def get_act_layer(name: str | LayerFactory, **kwargs) -> LayerFactory:
    """Layer factory for ``name``: ``factory(num_channels) -> nn.Module``, a new module per call.

    A callable ``name`` is returned as is (wrapped with ``kwargs`` if given); an ``nn.Module``
    instance is rejected, since reusing it at several call sites would tie their parameters.
    """
    if isinstance(name, nn.Module):
        raise TypeError("tmaf: pass an activation name or a layer factory (class or function), not a "
                        "module instance: one instance reused at several call sites ties parameters")
    if callable(name):
        return partial(name, **kwargs) if kwargs else name
    if not isinstance(name, str):
        raise TypeError(f"tmaf: activation must be a name or a callable, got {type(name).__name__}")
    key, kwargs = _form(_key(name), kwargs)
    if key in _PLAIN:
        return partial(_plain, _PLAIN[key], **kwargs)
    if key == "prelu":
        return partial(_prelu, **kwargs)
    if key == "diagonal":
        return partial(_tmaf_layer, DiagonalTMAF, **kwargs)
    if key == "tridiagonal":
        return partial(_tmaf_layer, TridiagonalTMAF, **kwargs)
    if key == "full":
        return partial(_tmaf_layer, _full, **kwargs)
    match = _BANDED.fullmatch(key)
    if match:
        return partial(_tmaf_layer, BandedTMAF, bandwidth=int(match.group(1)), **kwargs)
    raise ValueError(f"tmaf: unknown activation {name!r}; expected one of {', '.join(ACTIVATION_NAMES)}"
                     " (or banded<b> / continuous_banded<b> for any bandwidth b)")


def create_act(name: str | LayerFactory, num_channels: int, **kwargs) -> nn.Module:
    """One activation module for a call site with ``num_channels`` channels."""
    return get_act_layer(name, **kwargs)(num_channels)


def create_lazy_tmaf(name, **kwargs) -> nn.Module | None:
    """A lazy TMAF (C inferred from its first input) for a TMAF name; None for any other name
    or a callable. Names are read as by :func:`get_act_layer`."""
    if not isinstance(name, str):
        return None
    key, kwargs = _form(_key(name), kwargs)
    if key == "diagonal":
        return LazyDiagonalTMAF(**kwargs)
    if key == "tridiagonal":
        return LazyTridiagonalTMAF(**kwargs)
    if key == "full":
        return LazyBandedTMAF("full", **kwargs)
    match = _BANDED.fullmatch(key)
    return LazyBandedTMAF(int(match.group(1)), **kwargs) if match else None
