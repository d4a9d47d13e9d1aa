"""Shared builders for core tests: inputs that sit exactly on breakpoints, random levels."""

from __future__ import annotations

import torch

import tmaf.functional as F

BP = [-1.0, -0.25, 0.0, 0.5, 1.5]

C = 5
#: (shape, channel_dim) of the fast-path-vs-reference grids
SHAPES = {
    "NC": ((7, C), 1),
    "NCL": ((3, C, 6), 1),
    "NCHW": ((2, C, 3, 4), 1),
    "NLC": ((3, 6, C), -1),
    "C": ((C,), 0),
}


def breakpoints(C: int, per_channel: bool, dtype=torch.float64, device="cpu") -> torch.Tensor:
    bp = torch.tensor(BP, dtype=dtype, device=device)
    if per_channel:  # different grids per channel, each still containing 0
        scale = 1.0 + 0.2 * torch.arange(C, dtype=dtype, device=device)[:, None]
        bp = bp * scale
    return bp


def input_on_breakpoints(shape, cd: int, bp: torch.Tensor, dtype, device="cpu") -> torch.Tensor:
    """Random input where a quarter of the entries sit exactly on a breakpoint of their channel."""
    x = torch.randn(shape, dtype=torch.float64, device=device) * 1.5
    C = shape[cd]
    grid = bp if bp.dim() == 2 else bp.expand(C, -1)
    xm = x.movedim(cd, -1)
    pick = torch.randint(0, grid.shape[1], xm.shape, device=device)
    on = grid.gather(1, pick.movedim(-1, 0).reshape(C, -1)).reshape(pick.movedim(-1, 0).shape)
    on = on.movedim(0, -1)
    mask = torch.rand(xm.shape, device=device) < 0.25
    xm = torch.where(mask, on, xm)
    return xm.movedim(-1, cd).to(dtype).contiguous()


def levels(C: int, b: int, m: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    return torch.randn(C, 2 * b + 1, m + 1, dtype=dtype, device=device)


def run(backend, x, bp, lv, cd, g):
    """Output, input gradient and level gradient of banded TMAF for upstream gradient ``g``."""
    x = x.detach().clone().requires_grad_()
    lv = lv.detach().clone().requires_grad_()
    y = F.banded_tmaf(x, bp, lv, cd, backend=backend)
    y.backward(g)
    return y.detach(), x.grad, lv.grad
