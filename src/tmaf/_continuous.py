"""The continuous form's intercept table (docs/method.md, section 6), shared by the fast paths.

On interval k of its input channel j = i + d, the continuous term F_{i,d}(t) = integral_0^t of
the levels a_{i,d,k(u)} du is affine: F = a_{i,d,k} t + c_{i,d,k}. The intercepts follow from
the levels and the breakpoints s of channel j by continuity at every breakpoint and F(0) = 0:
with z = #{s_q < 0} (the interval holding 0) and delta_q = (a_q - a_{q+1}) s_q,

    c_k = sum_{z <= q < k} delta_q  (k > z),   c_z = 0,   c_k = -sum_{k <= q < z} delta_q  (k < z).

Both sums are taken directly (no difference of running totals), so a slope that does not
change across a breakpoint, or changes at 0, adds an exact 0: the ReLU, identity and leaky
starts have all intercepts exactly +0. The table is built from the levels with differentiable
torch ops, once per call, so autograd carries the intercept gradient (the sum of the upstream
gradient per interval, from the kernels) back into the level gradient exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._grid import compute_dtype


def term_breakpoints(breakpoints: Tensor, C: int, W: int) -> Tensor:
    """The breakpoints of each term's input channel j = i + d: (m,) shared stays (m,), (C, m)
    becomes (C, W, m) (j clamped into 0..C-1 for the terms outside the band, never read)."""
    if breakpoints.dim() == 1:
        return breakpoints
    b = W // 2
    j = (torch.arange(C, device=breakpoints.device)[:, None]
         + torch.arange(-b, b + 1, device=breakpoints.device)).clamp(0, C - 1)
    return breakpoints[j]


def intercepts(breakpoints: Tensor, levels: Tensor, x: Tensor | None = None) -> Tensor:
    """c (C, 2b+1, m+1) in the compute dtype (of ``x``, levels and breakpoints; levels' dtype
    without ``x``): F = levels * t + c on each interval, F continuous, F(0) = 0.

    Args:
        breakpoints: (m,) shared or (C, m) per channel, strictly increasing.
        levels: (C, 2b+1, m+1), the slopes; differentiable.
    """
    C, W, m1 = levels.shape
    dt = compute_dtype(x if x is not None else levels, levels, breakpoints)
    a = levels.to(dt)
    s = term_breakpoints(breakpoints.detach().to(dt), C, W)  # (m,) or (C, W, m)
    delta = (a[..., :-1] - a[..., 1:]) * s  # (C, W, m): the jump of c at breakpoint q
    z = (s < 0).sum(-1, keepdim=True)  # (1,) or (C, W, 1): the interval of 0
    q = torch.arange(m1 - 1, device=levels.device)
    zero = delta.new_zeros(())
    right = torch.where(q >= z, delta, zero).cumsum(-1)  # sum_{z <= q <= k-1}, at k - 1
    left = torch.where(q < z, delta, zero).flip(-1).cumsum(-1).flip(-1)  # sum_{k <= q < z}, at k
    pad = delta.new_zeros((C, W, 1))
    return torch.cat([pad, right], -1) - torch.cat([left, pad], -1) + 0.0  # + 0.0: no -0.0


def _term_grid(breakpoints: Tensor, shape: torch.Size, dtype) -> Tensor:
    """The breakpoints of each term's input channel, broadcastable to ``shape`` (C, [W,] m)."""
    C, W = shape[0], (shape[1] if len(shape) == 3 else 1)
    s = term_breakpoints(breakpoints.detach().to(dtype), C, W)
    return s[:, 0] if s.dim() == 3 and len(shape) == 2 else s


def levels_from_knots(breakpoints: Tensor, knot_values: Tensor, end_slopes: Tensor) -> Tensor:
    """The slopes (C, [2b+1,] m+1) of the continuous terms whose values at the breakpoints of
    their input channel are ``knot_values`` (C, [2b+1,] m), with slopes ``end_slopes`` (..., 2)
    left of the first and right of the last breakpoint: a_0 = end_slopes[..., 0],
    a_k = (u_{k+1} - u_k) / (s_{k+1} - s_k) for k = 1..m-1, a_m = end_slopes[..., 1].
    F(0) = 0 fixes the function, so a common shift of the u changes nothing."""
    s = _term_grid(breakpoints, knot_values.shape, knot_values.dtype)
    inner = torch.diff(knot_values, dim=-1) / torch.diff(s, dim=-1)
    return torch.cat([end_slopes[..., :1], inner, end_slopes[..., 1:]], dim=-1)


def knots_from_levels(breakpoints: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`levels_from_knots`: (knot_values F(s_q), end_slopes) of levels
    (C, [2b+1,] m+1). Exact for the ReLU, identity and leaky starts (all intercepts are +0)."""
    lv = levels if levels.dim() == 3 else levels[:, None]
    c = intercepts(breakpoints, lv)
    s = _term_grid(breakpoints, lv.shape[:-1] + (lv.shape[-1] - 1,), lv.dtype)
    values = lv[..., :-1] * s + c[..., :-1]  # breakpoint q closes interval q
    ends = torch.stack([lv[..., 0], lv[..., -1]], dim=-1)
    if levels.dim() == 2:
        values, ends = values[:, 0], ends[:, 0]
    return values, ends
