"""Model surgery and optimiser helpers: swap activations for TMAF, group TMAF parameters.

A model may call one activation module at several call sites (torchvision's ResNet ``BasicBlock``
calls ``self.relu`` twice). Swapping it for a single TMAF would silently tie the two sites'
parameters. :func:`convert` therefore either gives every call site its own TMAF (when an
``example_input`` lets it see the calls) or installs a guard that raises a clear error the first
time one converted module is called twice in one forward pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .factory import create_lazy_tmaf, get_act_layer
from .modules import BandedTMAF

__all__ = ["convert", "param_groups", "is_tmaf", "tmaf_modules", "CallSites"]


def is_tmaf(module: nn.Module) -> bool:
    return isinstance(module, BandedTMAF)


def tmaf_modules(model: nn.Module) -> Iterator[tuple[str, BandedTMAF]]:
    """(qualified name, module) for every TMAF layer in ``model``."""
    for name, module in model.named_modules():
        if is_tmaf(module):
            yield name, module


class CallSites(nn.Module):
    """One activation module per call site of a replaced, reused activation.

    The k-th call within one forward pass of the converted root model goes to ``sites[k]``.
    More calls than sites raise a RuntimeError instead of reusing (tying) a site.
    """

    def __init__(self, sites: list[nn.Module], origin: str) -> None:
        super().__init__()
        self.sites = nn.ModuleList(sites)
        self.origin = origin
        self._calls = 0

    def forward(self, x: Tensor) -> Tensor:
        k = self._calls
        if k >= len(self.sites):
            raise RuntimeError(
                f"tmaf: the activation converted at {self.origin!r} was called {k + 1} times in one "
                f"forward pass but has {len(self.sites)} call site(s); reusing one TMAF would tie "
                "parameters. Pass example_input= to tmaf.convert so every call site gets its own "
                "TMAF, and call the model through its root module.")
        self._calls = k + 1
        return self.sites[k](x)

    def extra_repr(self) -> str:
        return f"origin={self.origin!r}, sites={len(self.sites)}"


def _reset_call_sites(root: nn.Module, args) -> None:
    for m in root.modules():
        if isinstance(m, CallSites):
            m._calls = 0


def _record_calls(model: nn.Module, targets: dict[int, str], example_input, channel_dim: int):
    """Run ``model(example_input)`` once; return {id(module): [channel count per call]}."""
    calls: dict[int, list[int]] = {i: [] for i in targets}
    seen: set[int] = set()

    def hook(module, args):
        x = args[0]
        if not isinstance(x, Tensor) or not -x.dim() <= channel_dim < x.dim():
            raise ValueError(f"tmaf: activation at {targets[id(module)]!r} got an input of shape "
                             f"{tuple(getattr(x, 'shape', ()))} with no channel_dim={channel_dim}")
        calls[id(module)].append(x.shape[channel_dim])

    handles = []
    for m in model.modules():
        if id(m) in targets and id(m) not in seen:
            seen.add(id(m))
            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            if isinstance(example_input, tuple):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
    return calls


def convert(model: nn.Module, kind="diagonal", activations=(nn.ReLU,), example_input=None,
            channel_dim: int = 1, **options) -> nn.Module:
    """Replace every ``activations`` module in ``model`` (in place) by a TMAF; returns ``model``.

    Args:
        kind: activation name for :func:`tmaf.get_act_layer` ("diagonal", "tridiagonal",
            "banded<b>", "full", ...) or a layer factory ``f(num_channels) -> nn.Module``.
        activations: module types to replace (default ``(nn.ReLU,)``).
        example_input: a batch (or tuple of args) for one no-grad forward pass that finds each
            call site and its channel count; every call site gets its own TMAF. Without it, lazy
            TMAFs infer C on first use, and a module reused at two call sites raises at run time.
        channel_dim: channel axis of the activations' inputs.
        **options: passed to the TMAF constructor (breakpoints, init, ...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"tmaf.convert: expected an nn.Module, got {type(model).__name__}")
    types = tuple(activations) if isinstance(activations, (list, tuple)) else (activations,)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"tmaf.convert: activations must be nn.Module classes, got {activations!r}")
    factory = get_act_layer(kind, channel_dim=channel_dim, **options)
    places = [(name, m) for name, m in model.named_modules(remove_duplicate=False)
              if isinstance(m, types) and not is_tmaf(m) and name]
    if not places:
        return model
    targets = {id(m): name for name, m in places}
    n_names = Counter(id(m) for _, m in places)  # >1: one module registered under several names
    calls = None if example_input is None else _record_calls(model, targets, example_input, channel_dim)
    replacement: dict[int, nn.Module] = {}  # a module registered under several names gets one
    for name, module in places:               # CallSites serving all of its calls, in call order
        if id(module) not in replacement:
            counts = None if calls is None else calls[id(module)]
            if not counts:  # unknown call sites: infer C lazily and guard against reuse
                new = CallSites([_lazy(kind, channel_dim, options)], name)
            else:
                sites = [factory(c) for c in counts]
                alone = len(sites) == 1 and n_names[id(module)] == 1
                new = sites[0] if alone else CallSites(sites, name)
            replacement[id(module)] = new
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, replacement[id(module)])
    if not getattr(model, "_tmaf_call_site_hook", False):
        model.register_forward_pre_hook(_reset_call_sites)
        model._tmaf_call_site_hook = True
    return model


def _lazy(kind, channel_dim: int, options: dict) -> nn.Module:
    module = create_lazy_tmaf(kind, channel_dim=channel_dim, **options)
    if module is None:
        raise ValueError(f"tmaf.convert: kind={kind!r} needs example_input= to know channel counts")
    return module


def param_groups(model: nn.Module, weight_decay: float = 0.0, tmaf_weight_decay: float = 0.0,
                 tmaf_lr: float | None = None) -> list[dict]:
    """Optimiser parameter groups: everything else, then the TMAF levels in their own group.

    TMAF levels get ``tmaf_weight_decay`` (default 0: decaying levels pulls the activation towards
    zero, not towards ReLU) and, if given, their own learning rate ``tmaf_lr``.
    """
    tmaf_ids = {id(p) for _, m in tmaf_modules(model) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError("tmaf.param_groups: the model has uninitialised (lazy) parameters; run "
                             "one forward pass before building the optimiser")
    rest = [p for p in params if id(p) not in tmaf_ids]
    levels = [p for p in params if id(p) in tmaf_ids]
    groups = []
    if rest:
        groups.append({"params": rest, "weight_decay": weight_decay, "name": "weights"})
    if levels:
        group = {"params": levels, "weight_decay": tmaf_weight_decay, "name": "tmaf"}
        if tmaf_lr is not None:
            group["lr"] = tmaf_lr
        groups.append(group)
    return groups
