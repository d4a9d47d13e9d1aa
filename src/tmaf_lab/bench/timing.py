"""Interleaved timing and saved-for-backward accounting.

Every candidate of a group is timed once per repeat, in an order that rotates
from repeat to repeat, so slow drift of a shared machine (other processes,
thermal state) hits all candidates alike.  Ratios are the median over repeats
of the per-repeat ratio to a baseline timed in the same repeat (paired ratios),
which cancels that drift; the median time per candidate is reported beside it.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

#: the clock of every timed sample: ``wall`` (time.perf_counter) or ``thread``
#: (time.thread_time, the calling thread's CPU time: it leaves out the time the scheduler gives
#: other processes on a shared machine, and counts only one thread, so it needs torch at 1 thread
#: on the CPU)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}
_clock = CLOCKS["wall"]


def set_clock(name: str) -> None:
    """Time every later sample with clock ``name`` (a key of :data:`CLOCKS`)."""
    global _clock
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}; expected one of {', '.join(CLOCKS)}")
    _clock = CLOCKS[name]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for queued work on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@dataclass(frozen=True)
class Timing:
    """Per-call seconds of one candidate: one sample per repeat."""

    samples: tuple[float, ...]
    number: int  # calls per sample

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def quantile(self, q: float) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _calls_per_sample(fn: Callable[[], None], sync: Callable[[], None], min_sample_s: float) -> int:
    if min_sample_s <= 0:
        return 1
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(1000, math.ceil(min_sample_s / once)))


def time_interleaved(candidates: dict[str, Callable[[], None]], *, repeats: int, warmup: int,
                     sync: Callable[[], None], min_sample_s: float = 0.01) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaved, after ``warmup`` calls of each.

    Args:
        candidates: name -> callable doing one unit of work (e.g. forward+backward).
        repeats: samples per candidate; in repeat r the order is rotated by r.
        warmup: untimed calls of every candidate first (compilation, allocator warm-up).
        sync: waits for the device (see :func:`synchronizer`).
        min_sample_s: each sample runs enough calls to last at least this long (measured by
            one extra call per candidate); 0 for one call per sample.

    Returns:
        name -> :class:`Timing` with ``repeats`` per-call samples.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"expected repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    number = {n: _calls_per_sample(candidates[n], sync, min_sample_s) for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()  # a full collection takes ~0.25 s with torch loaded: once, not every round
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn, n = candidates[name], number[name]
                sync()
                t0 = _clock()
                for _ in range(n):
                    fn()
                sync()
                samples[name].append((_clock() - t0) / n)
            gc.collect(0)  # the youngest generation only, between rounds (milliseconds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {n: Timing(tuple(samples[n]), number[n]) for n in names}


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over repeats of a's sample / b's sample in the same repeat."""
    if len(a.samples) != len(b.samples):
        raise ValueError(f"paired ratio needs equal repeats, got {len(a.samples)} and "
                         f"{len(b.samples)}")
    return statistics.median(x / y for x, y in zip(a.samples, b.samples, strict=True))


@dataclass(frozen=True)
class SavedBytes:
    """Bytes the autograd graph keeps for backward, counted once per storage."""

    total: int
    parameters: int  # part of ``total`` held by the module's parameters and buffers (breakpoints)

    @property
    def activations(self) -> int:
        return self.total - self.parameters


def saved_bytes(forward: Callable[[], object], params: Iterable[torch.Tensor] = ()) -> SavedBytes:
    """Count storages packed by autograd while ``forward()`` builds its graph.

    Uses :func:`torch.autograd.graph.saved_tensors_hooks`; a storage saved twice (or
    saved through two views) counts once.  ``params``: tensors whose storages are
    reported separately as ``parameters`` (e.g. TMAF levels, PReLU weight).
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    total = sum(seen.values())
    return SavedBytes(total=total, parameters=sum(b for p, b in seen.items() if p in param_ptrs))
