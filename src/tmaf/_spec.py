"""A converted model's TMAF layout as plain JSON data, and rebuilding it on a fresh model.

``conversion_spec(model)`` lists every TMAF site (a TMAF module, or a :class:`tmaf.CallSites`
with one TMAF per call) with the names it is registered under and each TMAF's structure
(class, C, bandwidth, channel axis, form, parameterization, breakpoint shape). That is all a
state_dict needs to load: ``apply_conversion(fresh_model, spec)`` puts modules of that structure
at those names, and ``load_state_dict`` then fills in the values. This is how a converted Hugging
Face model is stored in ``config.json`` (``config.tmaf``) and rebuilt in ``from_pretrained``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from ._sites import CallSites, _reset_call_sites, is_tmaf
from .modules import BandedTMAF, DiagonalTMAF, TridiagonalTMAF, uniform_breakpoints

__all__ = ["conversion_spec", "apply_conversion", "record_layout", "SPEC_FORMAT", "CONFIG_KEY"]

SPEC_FORMAT = 1
CONFIG_KEY = "tmaf"  # the attribute of a Hugging Face config (a key of config.json)
_CLASSES = {"BandedTMAF": BandedTMAF, "DiagonalTMAF": DiagonalTMAF, "TridiagonalTMAF": TridiagonalTMAF}


def _module_spec(name: str, m: BandedTMAF) -> dict:
    if any(isinstance(p, UninitializedParameter) for p in m.parameters()):
        raise ValueError(f"tmaf: the TMAF at {name!r} is lazy and has not seen an input yet; run one "
                         "forward pass (or convert with example_input=) before saving its layout")
    cls = next(c for c in type(m).__mro__ if c.__name__ in _CLASSES).__name__
    return {"class": cls, "num_channels": m.num_channels, "bandwidth": m.bandwidth,
            "channel_dim": m.channel_dim, "form": m.form, "parameterization": m.parameterization,
            "breakpoints_shape": list(m.breakpoints.shape), "backend": m.backend, "init": m.init}


def conversion_spec(model: nn.Module) -> dict:
    """JSON-ready layout of every TMAF site in ``model`` (see the module docstring)."""
    groups: dict[int, dict] = {}
    inside_callsites = set()
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, CallSites):
            inside_callsites.update(id(s) for s in m.sites)
            if id(m) not in groups:
                groups[id(m)] = {"names": [], "call_sites": True,
                                 "modules": [_module_spec(f"{name}.sites.{k}", s)
                                             for k, s in enumerate(m.sites)]}
            groups[id(m)]["names"].append(name)
        elif is_tmaf(m) and id(m) not in inside_callsites and name:
            if id(m) not in groups:
                groups[id(m)] = {"names": [], "call_sites": False, "modules": [_module_spec(name, m)]}
            groups[id(m)]["names"].append(name)
    return {"format": SPEC_FORMAT, "sites": list(groups.values())}


def _build(spec: dict) -> BandedTMAF:
    shape = spec["breakpoints_shape"]
    bp = uniform_breakpoints(shape[-1], -1.0, 1.0) if shape[-1] > 1 else torch.zeros(1, device="cpu")
    if len(shape) == 2:
        bp = bp.expand(shape[0], -1).contiguous()
    kwargs = dict(breakpoints=bp, init="identity", channel_dim=spec["channel_dim"], form=spec["form"],
                  parameterization=spec["parameterization"], backend=spec["backend"])
    cls = _CLASSES[spec["class"]]
    if cls is BandedTMAF:
        module = BandedTMAF(spec["num_channels"], spec["bandwidth"], **kwargs)
    else:
        module = cls(spec["num_channels"], **kwargs)
    module.init = spec.get("init", module.init)  # the start it was trained from, for its repr
    return module


def apply_conversion(model: nn.Module, spec: dict) -> nn.Module:
    """Put TMAF modules of the layout ``spec`` (from :func:`conversion_spec`) at its names, in
    place, replacing whatever is there; the values come from a later ``load_state_dict``."""
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT or "sites" not in spec:
        raise ValueError(f"tmaf: expected a conversion spec of format {SPEC_FORMAT} (a dict with "
                         f"'format' and 'sites', from tmaf.conversion_spec), got {spec!r:.200}")
    has_callsites = False
    param = next(model.parameters(), None)
    # Under transformers' meta-device init the modules are built on the CPU: their init needs
    # real values; the checkpoint's values replace them.
    device = "cpu" if param is None or param.is_meta else param.device
    for group in spec["sites"]:
        with torch.device(device):
            modules = [_build(s) for s in group["modules"]]
        new = CallSites(modules, group["names"][0]) if group["call_sites"] else modules[0]
        has_callsites |= group["call_sites"]
        for name in group["names"]:
            parent_name, _, attr = name.rpartition(".")
            try:
                parent = model.get_submodule(parent_name)
            except AttributeError as err:
                raise ValueError(f"tmaf: the conversion spec names {name!r}, which {type(model).__name__} "
                                 "does not have; was it made for another architecture?") from err
            setattr(parent, attr, new)
    if has_callsites and not getattr(model, "_tmaf_call_site_hook", False):
        model.register_forward_pre_hook(_reset_call_sites)
        model._tmaf_call_site_hook = True
    return model


def _is_hf_model(model: nn.Module) -> bool:
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__) and hasattr(
        getattr(model, "config", None), "to_dict")


def record_layout(model: nn.Module, force: bool = False) -> dict:
    """Write ``conversion_spec(model)`` into a Hugging Face model's ``config.tmaf`` (what
    ``save_pretrained`` stores in config.json); other models are left alone unless ``force``.
    Lazy TMAFs that have not seen an input cannot be recorded: that warns and returns {}."""
    if not (force or _is_hf_model(model)):
        return {}
    try:
        spec = conversion_spec(model)
    except ValueError as err:
        warnings.warn(f"{err}; save_pretrained will not keep TMAF until "
                      "tmaf.integrations.transformers.record(model) runs after a forward pass",
                      stacklevel=3)
        return {}
    setattr(model.config, CONFIG_KEY, spec)
    return spec
