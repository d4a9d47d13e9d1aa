"""Integrations with model libraries; each imports its library lazily, inside its functions.

* :mod:`tmaf.integrations.transformers`: save_pretrained / from_pretrained with TMAF in place,
  and a Trainer that leaves TMAF parameters out of weight decay.
* :mod:`tmaf.integrations.timm`: an ``act_layer`` for ``timm.create_model`` and
  ``no_weight_decay`` names for timm's optimiser factory.
"""

from __future__ import annotations

from torch import nn

from .._sites import tmaf_modules

__all__ = ["tmaf_parameter_names"]


def tmaf_parameter_names(model: nn.Module) -> list[str]:
    """Qualified names of every TMAF parameter in ``model`` (levels, or knot values and end
    slopes): the names to keep out of weight decay."""
    names = []
    for prefix, module in tmaf_modules(model):
        names.extend(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters())
    return names
