"""Deterministic batches: a seeded (distributed) sampler, per-batch normalisation and augmentation.

The order of epoch e is ``DistributedSampler(seed, epoch=e)``; with one process it is
the same permutation, and rank r of R takes every R-th index, so R ranks with a
per-rank batch B/R see exactly the images of the one-process batch B. Augmentation
noise is drawn from a generator seeded by (seed, epoch, step, rank), so a run resumed
mid-epoch draws what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler


def epoch_indices(n: int, epoch: int, seed: int, rank: int, world: int) -> torch.Tensor:
    """This rank's shuffled training indices for ``epoch`` (padded to a multiple of ``world``)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def batch_slices(num: int, batch: int, start: int = 0) -> Iterator[tuple[int, slice]]:
    for step, lo in enumerate(range(0, num, batch)):
        if step >= start:
            yield step, slice(lo, lo + batch)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32, scaled to [0, 1] then standardised per channel."""
    return (x.float().div_(255.0) - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4,
            flip: bool = True) -> torch.Tensor:
    """Random pad-and-crop (reflect padding of ``pad`` pixels) and, with ``flip``, a random
    horizontal flip, per image."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device) if flip else None
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    out = xp[batch, chans, rows, cols]
    return out if flips is None else torch.where(flips[:, None, None, None], out.flip(3), out)


def step_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    key = (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (1 << 63)
    return torch.Generator().manual_seed(key)
