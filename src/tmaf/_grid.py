"""Helpers shared by the fast paths, calibration and plots: the interval index of
docs/method.md section 1 and the arithmetic dtype of a call.

The literal reference (:mod:`tmaf._reference`) does not use them: it restates both itself.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(x: Tensor, levels: Tensor, breakpoints: Tensor) -> torch.dtype:
    """Arithmetic runs in the promoted dtype of input, levels and breakpoints, never below float32.

    Comparing in the widest dtype keeps the interval of every input exact: float64 breakpoints
    are not rounded to float32 before a float32 input is compared with them.
    """
    dt = torch.promote_types(torch.promote_types(x.dtype, levels.dtype), breakpoints.dtype)
    return torch.promote_types(dt, torch.float32)


def interval_index(x: Tensor, breakpoints: Tensor) -> Tensor:
    """k(x) = #{s_k < x}: the interval of each value of ``x`` for one (m,) grid (section 1).

    Intervals are closed on the right, so a value exactly on s_k lies in interval k. NaN gets
    an arbitrary index here; callers that see NaN handle it themselves.
    """
    dt = torch.promote_types(x.dtype, breakpoints.dtype)
    return torch.bucketize(x.to(dt).contiguous(), breakpoints.to(dt).contiguous(), right=False)
