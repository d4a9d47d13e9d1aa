"""Hugging Face transformers: converted models that survive save_pretrained / from_pretrained,
and a Trainer that keeps TMAF parameters out of weight decay. transformers is imported lazily.

    model = GPT2LMHeadModel(config)
    tmaf.convert(model, "diagonal")                # also writes model.config.tmaf
    model.save_pretrained(path)                     # config.json carries the TMAF layout
    model = tmaf.integrations.transformers.from_pretrained(path)   # TMAF in place, same logits

``from_pretrained`` loads through the model class's own ``from_pretrained`` (sharding, dtypes,
tied weights, devices all as usual) with a subclass whose ``__init__`` rebuilds the recorded TMAF
layout right after the original ``__init__``, so every TMAF tensor is an expected key and loads.
The returned model is an instance of the original class. A plain ``AutoModel.from_pretrained``
of such a checkpoint rebuilds the original activations and reports the TMAF tensors as
unexpected keys: load it with this module's ``from_pretrained``.
"""

from __future__ import annotations

import warnings
from functools import cache

from torch import nn

from .._spec import CONFIG_KEY, apply_conversion, conversion_spec, record_layout
from . import tmaf_parameter_names

__all__ = ["record", "save_pretrained", "from_pretrained", "trainer_class", "tmaf_parameter_names"]

def record(model: nn.Module) -> dict:
    """Write the model's current TMAF layout into ``model.config.tmaf`` (what ``save_pretrained``
    stores in config.json); ``tmaf.convert`` and ``tmaf.calibrate`` call it. Call it again after
    anything else that changes the layout, or save with :func:`save_pretrained`. Returns the
    layout ({} with a warning while TMAF layers are still lazy)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError(f"tmaf: expected a Hugging Face PreTrainedModel (with a .config), got "
                        f"{type(model).__name__}")
    return record_layout(model, force=True)


def save_pretrained(model: nn.Module, save_directory, **kwargs) -> None:
    """``model.save_pretrained(save_directory, **kwargs)`` with the TMAF layout recorded first."""
    try:
        conversion_spec(model)
    except ValueError as err:
        raise ValueError(f"{err}; tmaf cannot save a model whose TMAF layers are still lazy") from None
    record(model)
    model.save_pretrained(save_directory, **kwargs)


@cache
def _with_tmaf(cls: type) -> type:
    """A subclass of ``cls`` that rebuilds ``config.tmaf`` after the original ``__init__``."""

    def __init__(self, config, *args, **kwargs):
        cls.__init__(self, config, *args, **kwargs)
        spec = getattr(config, CONFIG_KEY, None)
        if spec:
            apply_conversion(self, spec)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__})


def _resolve_class(model_class, config):
    import transformers

    if model_class is None:
        archs = getattr(config, "architectures", None) or []
        if not archs or not hasattr(transformers, archs[0]):
            raise ValueError(f"tmaf: cannot tell the model class from config.architectures={archs!r}; "
                             "pass model_class= (e.g. transformers.GPT2LMHeadModel)")
        return getattr(transformers, archs[0])
    mapping = getattr(model_class, "_model_mapping", None)  # an Auto class
    if mapping is not None:
        return mapping[type(config)]
    return model_class


def from_pretrained(pretrained_model_name_or_path, model_class=None, **kwargs) -> nn.Module:
    """Load a model saved after ``tmaf.convert``, with its TMAF layers in place.

    Args:
        pretrained_model_name_or_path: a local directory (or hub id) as for ``from_pretrained``.
        model_class: the model class or an Auto class (``AutoModelForCausalLM``); default: the
            class named in ``config.architectures``.
        **kwargs: passed to the class's ``from_pretrained`` (``torch_dtype``, ``device_map``, ...).
    Returns: an instance of the model class, TMAF layers restored, values from the checkpoint.
    """
    import transformers

    config = kwargs.pop("config", None) or transformers.AutoConfig.from_pretrained(
        pretrained_model_name_or_path)
    cls = _resolve_class(model_class, config)
    if not getattr(config, CONFIG_KEY, None):
        warnings.warn(f"tmaf: {pretrained_model_name_or_path} has no TMAF layout in its config "
                      "(config.tmaf); loading it unchanged", stacklevel=2)
        return cls.from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)
    model = _with_tmaf(cls).from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)
    model.__class__ = cls
    return model


@cache
def trainer_class(base: type | None = None) -> type:
    """A subclass of ``base`` (default ``transformers.Trainer``; any Trainer subclass works) whose
    ``get_decay_parameter_names`` leaves out every TMAF parameter, so ``weight_decay`` never
    pulls the activations' levels towards zero."""
    if base is None:
        import transformers

        base = transformers.Trainer

    def get_decay_parameter_names(self, model):
        skip = set(tmaf_parameter_names(model))
        return [n for n in base.get_decay_parameter_names(self, model) if n not in skip]

    return type(f"TMAF{base.__name__}", (base,), {
        "get_decay_parameter_names": get_decay_parameter_names, "__module__": __name__,
        "__doc__": f"{base.__name__} without weight decay on TMAF parameters."})
