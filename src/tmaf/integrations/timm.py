"""timm: an ``act_layer`` for ``timm.create_model`` and ``no_weight_decay`` names for its
optimiser factory. Nothing here imports timm.

    model = timm.create_model("convnext_atto", act_layer=tmaf.integrations.timm.act_layer("diagonal"))
    model(torch.randn(1, 3, 224, 224))            # each TMAF takes its C and channel axis here
    tmaf.integrations.timm.exclude_from_weight_decay(model)
    opt = timm.optim.create_optimizer_v2(model, "adamw", weight_decay=0.05)

timm builds activations as ``act_layer()``, ``act_layer(inplace=True)`` or through
``create_act_layer(act_layer, inplace=...)``, with no channel count, so each call returns a lazy
TMAF. At its first forward it reads the channel axis from the layer that produced its input, as
:func:`tmaf.convert` does: Linear (ViT and ConvNeXt MLPs on (B, T, C) / NHWC tensors) -> -1;
Conv, BatchNorm, timm's ``BatchNormAct2d``/``LayerNorm2d`` (ResNet, EfficientNet, NCHW) -> 1.
While any such TMAF is unresolved, a global module forward hook remembers recent layer outputs;
it is removed once the last one has seen its input. ``inplace`` is accepted and ignored (TMAF is
never computed in place). Converting a model built with its own activations,
``tmaf.convert(model, "diagonal", example_input=torch.randn(1, 3, 224, 224))``, does the same in
one step and also recognises timm's ``GELU``, ``GELUTanh``, ``QuickGELU``, ``Swish``, ...
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.nn.parameter import UninitializedParameter

from .._axis import producer_axis
from ..factory import create_lazy_tmaf
from . import tmaf_parameter_names

__all__ = ["act_layer", "no_weight_decay", "exclude_from_weight_decay"]

_KEEP = 512  # recent layer outputs remembered while a TMAF is unresolved


class _Watch:
    """Recent layer outputs and the stack of running modules, while auto TMAFs are pending."""

    pending: weakref.WeakSet = weakref.WeakSet()
    handles: list = []
    outputs: OrderedDict = OrderedDict()  # id(tensor) -> (tensor, module)
    stack: list = []

    @classmethod
    def start(cls, module: nn.Module) -> None:
        cls.pending.add(module)
        if not cls.handles:
            cls.handles = [_module.register_module_forward_pre_hook(cls.enter),
                           _module.register_module_forward_hook(cls.leave, always_call=True)]

    @classmethod
    def done(cls, module: nn.Module) -> None:
        cls.pending.discard(module)
        if not len(cls.pending):
            for h in cls.handles:
                h.remove()
            cls.handles, cls.stack = [], []
            cls.outputs.clear()

    @classmethod
    def enter(cls, module, args):
        if not len(cls.pending):  # every pending TMAF was garbage-collected unresolved
            cls.done(module)
            return
        cls.stack.append(module)

    @classmethod
    def leave(cls, module, args, out):
        if cls.stack and cls.stack[-1] is module:
            cls.stack.pop()
        if isinstance(out, Tensor) and not (args and out is args[0]):
            cls.outputs[id(out)] = (out, module)
            while len(cls.outputs) > _KEEP:
                cls.outputs.popitem(last=False)


def _infer_axis(module: nn.Module, x: Tensor) -> int:
    shape = tuple(x.shape)
    hit = _Watch.outputs.get(id(x))
    if hit is not None and hit[0] is x and (axis := producer_axis(hit[1], shape)) is not None:
        return axis
    if len(_Watch.stack) >= 2 and _Watch.stack[-1] is module:  # e.g. inside timm's BatchNormAct2d
        if (axis := producer_axis(_Watch.stack[-2], shape)) is not None:
            return axis
    for out, producer in reversed(_Watch.outputs.values()):
        if tuple(out.shape) == shape and producer is not module:
            if (axis := producer_axis(producer, shape)) is not None:
                return axis
    if x.dim() <= 2:
        return -1
    raise ValueError(f"tmaf: cannot infer the channel axis of a {type(module).__name__} from timm's "
                     f"act_layer: its first input has shape {shape} and no known layer (Linear, "
                     "Conv, a norm) produced it; pass channel_dim= to act_layer(...)")


def _resolve(module: nn.Module, args) -> None:
    try:
        module.channel_dim = _infer_axis(module, args[0])
    finally:
        module._tmaf_resolve_handle.remove()
        del module._tmaf_resolve_handle
        _Watch.done(module)


def act_layer(kind: str = "diagonal", **options) -> type:
    """A timm ``act_layer``: a class whose call (no arguments, ``inplace=``, or timm's extra
    keyword arguments) returns a new lazy TMAF of ``kind`` for one call site.

    Args:
        kind: a TMAF name ("diagonal", "tridiagonal", "banded<b>", "full", "continuous_...").
        **options: TMAF options (breakpoints, init, form, ...); ``channel_dim=`` fixes the axis
            instead of reading it from the producing layer at the first call.
    """
    fixed = options.pop("channel_dim", None)
    if create_lazy_tmaf(kind, channel_dim=-1, **options) is None:  # validates kind and options
        raise ValueError(f"tmaf: act_layer needs a TMAF name (diagonal, tridiagonal, banded<b>, full, "
                         f"continuous_<name>), got {kind!r}")

    def __new__(cls, *args, inplace=None, **kwargs):
        if args or kwargs:
            raise TypeError(f"tmaf: {cls.__name__} takes only inplace= (ignored), got args={args!r}, "
                            f"kwargs={kwargs!r}")
        module = create_lazy_tmaf(kind, channel_dim=-1 if fixed is None else fixed, **options)
        if fixed is None:
            module._tmaf_resolve_handle = module.register_forward_pre_hook(_resolve, prepend=True)
            _Watch.start(module)
        return module

    name = "TMAF" + "".join(p.capitalize() for p in kind.split("_"))
    return type(name, (nn.Module,), {"__new__": __new__, "__module__": __name__,
                                     "__doc__": f"timm act_layer: a lazy {kind} TMAF per call."})


def no_weight_decay(model: nn.Module) -> set[str]:
    """Names of the TMAF parameters of ``model``, for timm's ``no_weight_decay`` (run one
    forward pass first, so the lazy TMAFs have their parameters)."""
    for name, p in model.named_parameters():
        if isinstance(p, UninitializedParameter):
            raise ValueError(f"tmaf: {name} is not initialised yet; run one forward pass before "
                             "building the optimiser")
    return set(tmaf_parameter_names(model))


def exclude_from_weight_decay(model: nn.Module) -> nn.Module:
    """Make ``model.no_weight_decay()`` (read by ``timm.optim.create_optimizer_v2``) also name
    every TMAF parameter, keeping the model's own names (ViT's pos_embed, ...)."""
    names = no_weight_decay(model)
    own = getattr(model, "no_weight_decay", None)
    base = set(own()) if callable(own) else set()
    model.no_weight_decay = _Names(base | names)
    return model


class _Names:
    """A picklable ``no_weight_decay`` callable: returns a fixed set of parameter names."""

    def __init__(self, names: set[str]) -> None:
        self.names = frozenset(names)

    def __call__(self) -> set[str]:
        return set(self.names)
