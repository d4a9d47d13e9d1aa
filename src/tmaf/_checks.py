"""Input validation shared by the functional API and the modules.

Every check raises ``TypeError``/``ValueError`` naming what was expected and what came,
so that bad input never surfaces later as a deep IndexError or a silent broadcast.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def check_input(x: Tensor, channel_dim: int) -> int:
    """Validate ``x`` and ``channel_dim``; return ``channel_dim`` normalised to ``0..ndim-1``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"tmaf: expected the input to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"tmaf: expected a floating-point input (float16/bfloat16/float32/float64), "
                        f"got dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError("tmaf: expected an input with a channel dimension, got a 0-d tensor")
    if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
        raise TypeError(f"tmaf: channel_dim must be an int, got {type(channel_dim).__name__}")
    if not -x.dim() <= channel_dim < x.dim():
        raise ValueError(f"tmaf: channel_dim={channel_dim} is out of range for an input with "
                         f"{x.dim()} dims (shape {tuple(x.shape)}); expected -{x.dim()}..{x.dim() - 1}")
    return channel_dim % x.dim()


def check_breakpoints(breakpoints: Tensor, num_channels: int | None, values: bool = True) -> None:
    """Breakpoints: float tensor of shape (m,) shared or (C, m) per channel, finite, strictly increasing.

    ``values=False`` skips the value checks (finite, increasing), which need a host sync; the modules
    validate once at construction and on ``load_state_dict`` and then skip them on every call.
    """
    if not isinstance(breakpoints, Tensor):
        raise TypeError(f"tmaf: breakpoints must be a torch.Tensor, got {type(breakpoints).__name__}")
    if not breakpoints.is_floating_point():
        raise TypeError(f"tmaf: breakpoints must be floating point, got dtype {breakpoints.dtype}")
    if breakpoints.dim() not in (1, 2):
        raise ValueError(f"tmaf: breakpoints must have shape (m,) (shared) or (C, m) (per channel), "
                         f"got shape {tuple(breakpoints.shape)}")
    if breakpoints.shape[-1] == 0:
        raise ValueError(f"tmaf: breakpoints must hold at least one point (m >= 1), "
                         f"got shape {tuple(breakpoints.shape)}")
    if breakpoints.dim() == 2 and num_channels is not None and breakpoints.shape[0] != num_channels:
        raise ValueError(f"tmaf: per-channel breakpoints must have shape (C, m) = ({num_channels}, m), "
                         f"got shape {tuple(breakpoints.shape)}")
    if values and not _compiling():
        if not bool(torch.isfinite(breakpoints).all()):
            raise ValueError(f"tmaf: breakpoints must be finite, got {breakpoints.tolist()}")
        if breakpoints.shape[-1] > 1 and not bool((breakpoints.diff(dim=-1) > 0).all()):
            raise ValueError(f"tmaf: breakpoints must be strictly increasing along the last dim, "
                             f"got {breakpoints.tolist()}")


def check_levels(levels: Tensor, num_channels: int, num_breakpoints: int, banded: bool) -> int:
    """Levels: (C, 2b+1, m+1) for banded TMAF, (C, m+1) for diagonal. Returns the bandwidth b."""
    if not isinstance(levels, Tensor):
        raise TypeError(f"tmaf: levels must be a torch.Tensor, got {type(levels).__name__}")
    if not levels.is_floating_point():
        raise TypeError(f"tmaf: levels must be floating point, got dtype {levels.dtype}")
    m1 = num_breakpoints + 1
    if not banded:
        if tuple(levels.shape) != (num_channels, m1):
            raise ValueError(f"tmaf: diagonal levels must have shape (C, m+1) = ({num_channels}, {m1}), "
                             f"got {tuple(levels.shape)}")
        return 0
    if levels.dim() != 3 or levels.shape[0] != num_channels or levels.shape[2] != m1:
        raise ValueError(f"tmaf: banded levels must have shape (C, 2b+1, m+1) = ({num_channels}, 2b+1, "
                         f"{m1}), got {tuple(levels.shape)}")
    width = levels.shape[1]
    if width % 2 != 1:
        raise ValueError(f"tmaf: levels.shape[1] must be odd (2b+1), got {width}")
    b = width // 2
    if b > max(num_channels - 1, 0):
        raise ValueError(f"tmaf: bandwidth b={b} exceeds C-1={num_channels - 1} (the full matrix); "
                         f"levels shape {tuple(levels.shape)}")
    return b


def check_same_device(x: Tensor, breakpoints: Tensor, levels: Tensor) -> None:
    if not (x.device == breakpoints.device == levels.device):
        raise ValueError(f"tmaf: input, breakpoints and levels must be on one device, got "
                         f"{x.device}, {breakpoints.device}, {levels.device}")
