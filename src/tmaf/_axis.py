"""The channel axis of an activation's input, read from the layer that produced it.

A Linear (or transformers' ``Conv1D``, a LayerNorm, an RMSNorm, an Embedding) writes its features
on the last axis: channel_dim = -1, so token tensors (B, T, C) get one activation per feature,
not per position. A Conv or a BatchNorm/GroupNorm/InstanceNorm (timm's ``LayerNorm2d`` too)
writes channels on axis 1: channel_dim = 1. Any other layer is read by its size attributes
(``out_features``, ``out_channels``, ``num_features``, a 1-D ``weight``) where exactly one of
axes 1 and -1 has that size.
"""

from __future__ import annotations

from torch import nn

__all__ = ["producer_axis", "producer_size"]

_LAST_TYPES = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag)
_FIRST_TYPES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)
# class names (any package) whose layout the type test above would get wrong or cannot see
_FIRST_NAMES = ("LayerNorm2d", "LayerNormAct2d", "RmsNorm2d", "RmsNormAct2d", "GroupNormAct",
                "GroupNorm1", "BatchNormAct2d", "FrozenBatchNorm2d", "FrozenBatchNormAct2d")
_LAST_NAMES = ("Conv1D",)  # transformers' GPT-2 projection: a Linear with a transposed weight
_LAST_SUFFIXES = ("RMSNorm", "RmsNorm", "LayerNorm", "LayerNormAct")


def _names(module: nn.Module) -> list[str]:
    return [c.__name__ for c in type(module).__mro__]


def producer_size(module: nn.Module) -> int | None:
    """The number of features a layer writes, from its size attributes; None if unknown."""
    for attr in ("out_features", "out_channels", "num_features", "embedding_dim", "nf"):
        v = getattr(module, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, (tuple, list)) and len(shape) == 1:
        return int(shape[0])
    w = getattr(module, "weight", None)
    if isinstance(w, nn.Parameter) and w.dim() == 1 and not isinstance(
            w, nn.parameter.UninitializedParameter):
        return w.shape[0]
    return None


def producer_axis(module: nn.Module, shape: tuple[int, ...] | None = None) -> int | None:
    """The channel axis (1 or -1) of a tensor of ``shape`` written by ``module``; None if the
    module's kind says nothing and its size matches neither or both of axes 1 and -1."""
    names = _names(module)
    if any(n in _FIRST_NAMES for n in names):
        return 1
    if type(module).__name__ in _LAST_NAMES or isinstance(module, _LAST_TYPES + (nn.LayerNorm,)):
        return -1
    if isinstance(module, _FIRST_TYPES):
        return 1
    if any(n.endswith(s) for n in names[:1] for s in _LAST_SUFFIXES):
        return -1
    size = producer_size(module)
    if size is None or shape is None or len(shape) < 2:
        return None
    first, last = shape[1] == size, shape[-1] == size
    if len(shape) == 2 and (first or last):
        return -1
    if first != last:
        return 1 if first else -1
    return None
