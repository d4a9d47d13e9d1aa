"""``pwl_knots``: the continuous diagonal form (pwl) with its slopes written as differences of
values at the breakpoints, the parameterisation of DeepSplines' linear B-splines.

The function is the core's ``continuous_diagonal`` on the same breakpoints s_1 < ... < s_m:
slopes a_0 (left of s_1), a_k = (u_{k+1} - u_k) / (s_{k+1} - s_k) for k = 1..m-1 and a_m (right
of s_m), where u_j is a trained value at s_j, and F(0) = 0 as in the core (a common shift of
the u is the one direction that changes nothing). Same function class, same forward as pwl; only
the gradients the optimiser sees differ: a value u_j moves the function on the two intervals
beside s_j, while a slope a_k moves it on every interval beyond k. It starts as ReLU exactly
(the values of ReLU at the breakpoints, end slopes 0 and 1).
"""

from __future__ import annotations

import torch
from torch import nn


class KnotValuePWL(nn.Module):
    def __init__(self, channels: int, breakpoints: torch.Tensor | None = None):
        super().__init__()
        import tmaf

        s = (tmaf.DEFAULT_BREAKPOINTS if breakpoints is None else breakpoints).detach().clone()
        if s.dim() != 1 or s.numel() < 2 or not bool((s[1:] > s[:-1]).all()):
            raise ValueError(f"pwl_knots: expected at least 2 increasing shared breakpoints, got "
                             f"shape {tuple(s.shape)}")
        if channels < 1:
            raise ValueError(f"pwl_knots: expected channels >= 1, got {channels}")
        self.channels = channels
        self.register_buffer("breakpoints", s)
        self.values = nn.Parameter(torch.relu(s).expand(channels, -1).clone())
        self.left = nn.Parameter(torch.zeros(channels))
        self.right = nn.Parameter(torch.ones(channels))

    def levels(self) -> torch.Tensor:
        """The core's (C, m + 1) slopes of this function."""
        inner = torch.diff(self.values, dim=1) / torch.diff(self.breakpoints)
        return torch.cat([self.left[:, None], inner, self.right[:, None]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import tmaf

        return tmaf.functional.banded_tmaf(x, self.breakpoints, self.levels()[:, None],
                                           channel_dim=1, form="continuous")

    def extra_repr(self) -> str:
        return f"channels={self.channels}, breakpoints={self.breakpoints.numel()}"
