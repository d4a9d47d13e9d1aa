"""Model surgery and optimiser helpers: swap activations for TMAF, group TMAF parameters.

A model may call one activation module at several call sites (torchvision's ResNet ``BasicBlock``
calls ``self.relu`` twice). Swapping it for a single TMAF would silently tie the two sites'
parameters. :func:`convert` therefore either gives every call site its own TMAF (when an
``example_input`` lets it see the calls) or installs a guard that raises a clear error the first
time one converted module is called twice in one forward pass.
"""

from __future__ import annotations

import warnings
from collections import Counter
from fnmatch import fnmatchcase

from torch import nn

from ._activations import DEFAULT_ACTIVATIONS, RECOGNISED, looks_like_activation, recognise
from ._example import hf_dummy_input, run_example, sequential_call
from ._report import conversion_report, site_record
from ._sites import CallSites, _reset_call_sites, _single_call_guard, is_tmaf, tmaf_modules
from ._spec import record_layout
from .factory import create_lazy_tmaf, get_act_layer
from .matching import resolve as resolve_match

__all__ = ["convert", "param_groups", "is_tmaf", "tmaf_modules", "CallSites", "conversion_report",
           "DEFAULT_ACTIVATIONS", "RECOGNISED"]


def _selector(activations):
    """(classes, names) to convert; ``None`` means the recognised defaults."""
    if activations is None:
        return (), set(DEFAULT_ACTIVATIONS)
    items = list(activations) if isinstance(activations, (list, tuple, set, frozenset)) else [activations]
    classes = tuple(a for a in items if isinstance(a, type) and issubclass(a, nn.Module))
    names = {a for a in items if isinstance(a, str)}
    bad = [a for a in items if not (isinstance(a, str) or isinstance(a, type) and issubclass(a, nn.Module))]
    if bad or not items:
        raise TypeError(f"tmaf.convert: activations must be nn.Module classes or activation names "
                        f"({', '.join(RECOGNISED)}), got {activations!r}")
    unknown = sorted(names - set(RECOGNISED))
    if unknown:
        raise ValueError(f"tmaf.convert: unknown activation name(s) {unknown}; expected one of "
                         f"{', '.join(RECOGNISED)} (or pass the module class)")
    return classes, names


def _patterns(value, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in items):
        raise TypeError(f"tmaf.convert: {what} must be a name pattern or a list of them, got {value!r}")
    return items


def _find_places(model, activations, include, exclude):
    classes, names = _selector(activations)
    candidates = []
    for name, m in model.named_modules(remove_duplicate=False):
        if not name or is_tmaf(m) or isinstance(m, CallSites):
            continue
        known = recognise(m)
        if isinstance(m, classes) or (known is not None and known[0] in names):
            candidates.append((name, m, known))
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    for what, pats in (("include", inc), ("exclude", exc)):
        for pat in pats:
            if not any(fnmatchcase(n, pat) for n, _, _ in candidates):
                warnings.warn(f"tmaf.convert: {what} pattern {pat!r} matches none of the activation "
                              f"sites {[n for n, _, _ in candidates]}", stacklevel=3)
    return [(n, m, k) for n, m, k in candidates
            if (not inc or any(fnmatchcase(n, p) for p in inc))
            and not any(fnmatchcase(n, p) for p in exc)]


def _nothing_converted(model, strict: bool, activations) -> None:
    seen = sorted({type(m).__name__ + (f" ({k[0]}, not converted by default)" if k else "")
                   for m in model.modules()
                   if (k := recognise(m)) is not None or looks_like_activation(m)})
    msg = (f"tmaf.convert: no activation converted in {type(model).__name__} (activations="
           f"{activations if activations is not None else 'the recognised defaults'}); activation-like "
           f"modules in the model: {seen or 'none'}. Recognised names: {', '.join(RECOGNISED)}; pass "
           "activations=(YourClass,) for others, or check include=/exclude=")
    if strict:
        raise ValueError(msg)
    warnings.warn(msg, stacklevel=3)


def _calls_for(model, places, example_input, channel_dim):
    """{id(module): [Call, ...]} and how the calls were found."""
    targets = {id(m): n for n, m, _ in reversed(places)}  # first name wins
    if example_input is None and channel_dim == "auto":
        example_input = hf_dummy_input(model)
        how = "dummy input_ids (1, 8)"
    else:
        how = "example_input"
    if example_input is None:
        return {id(m): [c] if (c := sequential_call(model, n)) else [] for n, m, _ in places}, "graph"
    try:
        return run_example(model, targets, example_input), how
    except Exception as err:
        if how == "example_input":
            raise
        raise ValueError(f"tmaf.convert: could not run a dummy input_ids batch through "
                         f"{type(model).__name__} to find the activations' channel axes ({err}); "
                         "pass example_input= (a batch the model takes) or channel_dim=") from err


def _site_module(factory, call, channel_dim, name, options):
    if isinstance(channel_dim, int):
        if call is None or call.shape is None:
            return None
        if not -len(call.shape) <= channel_dim < len(call.shape):
            raise ValueError(f"tmaf.convert: channel_dim={channel_dim} is out of range for the "
                             f"input of shape {call.shape} at {name!r}")
        n = len(call.shape)
        if call.axis is not None and call.axis % n != channel_dim % n:
            warnings.warn(f"tmaf.convert: channel_dim={channel_dim} at {name!r} gives C = "
                          f"{call.shape[channel_dim]} (input {call.shape}), but its input comes "
                          f"{call.via}, which writes channels on axis {call.axis} (C = "
                          f"{call.size}); the explicit channel_dim is used", stacklevel=4)
        return factory(call.shape[channel_dim], channel_dim=channel_dim, **options)
    if call is None or call.axis is None:
        where = f"input of shape {call.shape}" if call and call.shape else "no example pass"
        why = call.via if call else "not inside an nn.Sequential after a known layer"
        raise ValueError(f"tmaf.convert: cannot infer the channel axis of the activation at {name!r} "
                         f"({where}; {why}"
                         "); pass channel_dim= (1 for (N, C, ...), -1 for (..., C)) or an example_input "
                         "whose pass shows the layer producing its input")
    return factory(call.size, channel_dim=call.axis, **options)


def _match_options(options, known, name, module):
    if options.get("init") != "match" or "match" in options:
        return options
    if known is None:
        raise ValueError(f"tmaf.convert: init='match' needs the function of the activation at "
                         f"{name!r}, but {type(module).__name__} is not a recognised activation; pass "
                         f"match=NAME or a callable (recognised: {', '.join(RECOGNISED)})")
    match = known[1] if known[1] is not None else known[0]
    try:
        resolve_match(match)
    except ValueError as err:
        raise ValueError(f"tmaf.convert: init='match' at {name!r} ({type(module).__name__}): {err}; "
                         "pass match= or exclude= for this site") from None
    return {**options, "match": match}


def convert(model: nn.Module, kind="diagonal", activations=None, example_input=None,
            channel_dim: int | str = "auto", *, include=None, exclude=None, strict: bool = False,
            report: bool = False, **options) -> nn.Module:
    """Replace activation modules of ``model`` (in place) by TMAF layers; returns ``model``.

    Args:
        kind: a TMAF name for :func:`tmaf.get_act_layer` ("diagonal", "tridiagonal", "banded<b>",
            "full", "continuous_diagonal", ...) or a layer factory ``f(num_channels, channel_dim=)``.
        activations: what to replace: module classes and/or canonical names ("gelu", "silu", ...).
            Default: every recognised hidden-layer activation of torch, transformers and timm
            (:data:`tmaf.DEFAULT_ACTIVATIONS`); gates (sigmoid, tanh) only when named.
        example_input: a batch for one forward pass (a tensor, a tuple of arguments or a dict of
            keyword arguments) that finds every call site, its input shape and its channel axis.
            The pass runs in eval mode without autograd and restores modes, buffers and RNG.
            Without it, a model with ``config.vocab_size`` (Hugging Face) gets a (1, 8)
            ``input_ids`` batch; any other model is read from its graph (an activation right
            after a known layer in an ``nn.Sequential``), or, with an int ``channel_dim``, gets
            lazy TMAFs.
        channel_dim: "auto" (default): per call site, from the layer producing its input (Linear,
            Conv1D, LayerNorm, RMSNorm -> -1; Conv, BatchNorm, GroupNorm -> 1); an int for all sites.
        include, exclude: module-name patterns (``fnmatch``, e.g. ``"cls.*"``) choosing sites.
        strict: raise instead of warning when nothing is converted.
        report: print the per-site table (:func:`tmaf.conversion_report`).
        **options: TMAF constructor options (breakpoints, init, form, ...). ``init="match"``
            fits each site to the function it replaces (its ``match=``), unless ``match`` is given.

    A module called once gets one TMAF in its place; a module called at several sites (or
    registered under several names) gets a :class:`CallSites` with one TMAF per call.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"tmaf.convert: expected an nn.Module, got {type(model).__name__}")
    if not (channel_dim == "auto" or isinstance(channel_dim, int) and not isinstance(channel_dim, bool)):
        raise ValueError(f"tmaf.convert: channel_dim must be 'auto' or an int, got {channel_dim!r}")
    factory = get_act_layer(kind)
    places = _find_places(model, activations, include, exclude)
    if not places:
        _nothing_converted(model, strict, activations)
        return model
    calls, how = _calls_for(model, places, example_input, channel_dim)
    n_names = Counter(id(m) for _, m, _ in places)
    replacement, records, skipped = {}, [], set()
    for name, module, known in places:
        if id(module) in replacement:
            records[replacement[id(module)][1]]["names"].append(name)
            continue
        if id(module) in skipped:
            continue
        opts = _match_options(options, known, name, module)
        seen = calls[id(module)]
        if not seen and how != "graph" and channel_dim == "auto":
            warnings.warn(f"tmaf.convert: the activation at {name!r} was not called by the example "
                          "pass; it is left unchanged (pass channel_dim= to convert it lazily)",
                          stacklevel=2)
            skipped.add(id(module))
            continue
        sites = [_site_module(factory, c, channel_dim, name, opts) for c in (seen or [None])]
        guard = how == "graph"
        if any(s is None for s in sites):  # explicit channel_dim, no example pass: lazy
            sites, guard = [_lazy(kind, channel_dim, opts)], True
        alone = len(sites) == 1 and n_names[id(module)] == 1
        new = sites[0] if alone else CallSites(sites, name)
        if alone and guard:
            new._tmaf_calls = 0
            new.register_forward_pre_hook(_single_call_guard)
        new.train(module.training)  # the replacement keeps the replaced module's mode
        replacement[id(module)] = (new, len(records))
        records.append(site_record(name, module, known, sites, seen, how))
    _swap(model, places, {k: new for k, (new, _) in replacement.items()})  # once every replacement is built
    model.tmaf_conversion = list(getattr(model, "tmaf_conversion", [])) + records
    record_layout(model)
    if report:
        print(conversion_report(model))
    return model


def _swap(model: nn.Module, places, replacement: dict) -> None:
    """Set each place's replacement (``{id(module): new}``; places without one stay) and, where a
    replacement counts its calls, install the model's hook that resets the counts per forward."""
    for name, module, _ in places:
        if id(module) not in replacement:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, replacement[id(module)])
    if any(isinstance(r, CallSites) or "_tmaf_calls" in r.__dict__ for r in replacement.values()):
        if not getattr(model, "_tmaf_call_site_hook", False):
            model.register_forward_pre_hook(_reset_call_sites)
            model._tmaf_call_site_hook = True


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
