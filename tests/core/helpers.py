"""Shared builders for core tests: inputs that sit exactly on breakpoints, random levels, grids
by spacing."""

from __future__ import annotations

import math

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


#: grids by spacing (the native kernels index evenly spaced grids without compares: each s_k within
#: h/4 of s_0 + k h), and grids just outside that rule, which take the compare chains
GRID_KINDS = ("linspace", "per-channel-linspace", "jittered", "past-quarter", "far-offset")


def grid_by_spacing(kind: str, C: int, m: int, seed: int = 0) -> torch.Tensor:
    """(C, m) float32 breakpoints of one spacing kind (float64 tensor of float32 values)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.linspace(-2.0, 2.0, m, dtype=torch.float64)
    h = 4.0 / (m - 1)
    if kind == "linspace":
        bp = base.expand(C, m)
    elif kind == "per-channel-linspace":  # a scale and a shift per channel
        scale = 0.5 + torch.rand(C, 1, generator=gen, dtype=torch.float64)
        bp = base * scale + torch.randn(C, 1, generator=gen, dtype=torch.float64)
    elif kind in ("jittered", "past-quarter"):  # each point moved by up to 0.2 h, or 0.3-0.45 h
        lo, hi = (0.0, 0.2) if kind == "jittered" else (0.3, 0.45)
        size = lo + (hi - lo) * torch.rand(C, m, generator=gen, dtype=torch.float64)
        sign = torch.where(torch.rand(C, m, generator=gen) < 0.5, -1.0, 1.0).double()
        jitter = sign * size * h
        jitter[:, 0] = jitter[:, -1] = 0.0  # the ends fix h
        bp = base + jitter
    elif kind == "far-offset":  # a fine grid far from 0: spacing 4e-3 around 1000
        bp = 1000.0 + base * 1e-3
    else:
        raise ValueError(f"unknown grid kind {kind!r}; expected one of {GRID_KINDS}")
    return bp.float().double().contiguous()


def input_near_breakpoints(shape, cd: int, bp: torch.Tensor) -> torch.Tensor:
    """float32 input around a (C, m) grid: values on breakpoints and one float step either side of
    them, random values over the grid's span and beyond; channel 0's first entries are +-inf, NaN
    and +-1e30."""
    x = input_on_breakpoints(shape, cd, bp, torch.float32)
    lo, hi = bp.min().item(), bp.max().item()
    xm = x.movedim(cd, -1).double()
    spread = torch.rand(xm.shape, dtype=torch.float64) * (hi - lo) * 1.4 + lo - 0.2 * (hi - lo)
    xm = torch.where(torch.rand(xm.shape) < 0.3, spread, xm).float()
    for direction, share in ((math.inf, 0.15), (-math.inf, 0.15)):
        pick = torch.rand(xm.shape) < share
        xm[pick] = torch.nextafter(xm[pick], torch.full_like(xm[pick], direction))
    flat = xm[..., 0].reshape(-1)
    flat[:5] = torch.tensor([math.inf, -math.inf, math.nan, 1e30, -1e30])
    xm[..., 0] = flat.reshape(xm[..., 0].shape)
    return xm.movedim(-1, cd).contiguous()
