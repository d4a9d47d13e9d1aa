"""Activation candidates: ReLU / PReLU / GELU baselines and TMAF in each backend.

A candidate is one activation module, called either eagerly or through ``torch.compile``
(baselines), or through one TMAF backend (``compiled`` fused fast path, ``eager`` fast path,
``reference``).  Each candidate exposes two zero-argument callables over one shared input:
``fwd`` (forward with autograd recording, as in training) and ``fwd_bwd`` (forward + backward of
a fixed upstream gradient, input and parameter gradients).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .oracle import oracle_outputs_and_grads

BASELINES = ("relu", "prelu", "gelu")
TMAF_KINDS = ("diagonal", "tridiagonal")
TMAF_BACKENDS = ("compiled", "eager", "reference")


@dataclass(frozen=True)
class Spec:
    """What to run. ``mode``: ``eager`` | ``compile`` for baselines, the TMAF backend otherwise."""

    kind: str
    mode: str
    m: int = 0  # TMAF breakpoints; 0 for baselines

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.mode}" if self.m == 0 else f"{self.kind}-m{self.m}/{self.mode}"

    @property
    def is_tmaf(self) -> bool:
        return self.kind in TMAF_KINDS


def breakpoints(m: int) -> Tensor:
    """m breakpoints on [-2, 2] for unit-scale inputs; m = 1 is ReLU's single breakpoint 0."""
    import tmaf

    return torch.zeros(1) if m == 1 else tmaf.uniform_breakpoints(m, -2.0, 2.0)


def make_module(spec: Spec, num_channels: int, device: torch.device, seed: int = 0) -> nn.Module:
    """The activation module of ``spec``; TMAF levels are random so every interval matters."""
    if spec.kind == "relu":
        return nn.ReLU().to(device)
    if spec.kind == "prelu":
        return nn.PReLU(num_channels).to(device)
    if spec.kind == "gelu":
        return nn.GELU().to(device)
    if not spec.is_tmaf:
        raise ValueError(f"unknown activation {spec.kind!r}; expected one of "
                         f"{BASELINES + TMAF_KINDS}")
    import tmaf

    cls = tmaf.DiagonalTMAF if spec.kind == "diagonal" else tmaf.TridiagonalTMAF
    mod = cls(num_channels, breakpoints=breakpoints(spec.m), init="random", device=device)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mod.levels.copy_(torch.rand(mod.levels.shape, generator=gen) * 2 - 0.5)
    return mod


@contextlib.contextmanager
def tmaf_backend(name: str | None) -> Iterator[None]:
    """Select a TMAF backend for the duration of the block (no-op for ``None``)."""
    if name is None:
        yield
        return
    import tmaf

    old = tmaf.get_backend()
    tmaf.set_backend(name)
    try:
        yield
    finally:
        tmaf.set_backend(old)


class Candidate:
    """One activation bound to a shared input ``x`` (requires grad) and upstream gradient ``g``."""

    def __init__(self, spec: Spec, x: Tensor, g: Tensor, seed: int = 0):
        self.spec = spec
        self.module = make_module(spec, x.shape[1], x.device, seed)
        self.params = list(self.module.parameters())
        self.x, self.g = x, g
        self.backend = spec.mode if spec.is_tmaf else None
        if spec.is_tmaf and spec.mode not in TMAF_BACKENDS:
            raise ValueError(f"TMAF mode must be one of {TMAF_BACKENDS}, got {spec.mode!r}")
        if not spec.is_tmaf and spec.mode not in ("eager", "compile"):
            raise ValueError(f"baseline mode must be 'eager' or 'compile', got {spec.mode!r}")
        self.call: Callable[[Tensor], Tensor] = (
            torch.compile(self.module, dynamic=False) if spec.mode == "compile" else self.module)

    def forward(self, backend: str | None = None) -> Tensor:
        with tmaf_backend(backend or self.backend):
            return self.call(self.x)

    def fwd(self) -> None:
        self.forward()

    def fwd_bwd(self) -> None:
        self.x.grad = None
        for p in self.params:
            p.grad = None
        with tmaf_backend(self.backend):
            self.call(self.x).backward(self.g)

    def outputs_and_grads(self, backend: str | None = None, eager: bool = False) -> list[Tensor]:
        """[output, input grad, *parameter grads], computed with ``backend`` (or eagerly)."""
        self.x.grad = None
        for p in self.params:
            p.grad = None
        with tmaf_backend(backend or self.backend):
            y = (self.module if eager else self.call)(self.x)
            y.backward(self.g)
        out = [y.detach(), self.x.grad] + [p.grad for p in self.params]
        self.x.grad = None
        for p in self.params:
            p.grad = None
        return out


def expected_results(cand: Candidate) -> list[Tensor]:
    """What a candidate must reproduce: [output, input grad, *parameter grads].

    TMAF: the float64 oracle (:mod:`benchmarks.oracle`); baselines: the same module run eagerly.
    """
    if cand.spec.is_tmaf:
        return oracle_outputs_and_grads(cand.x, cand.g, cand.module.breakpoints,
                                        cand.module.levels)
    return cand.outputs_and_grads(eager=True)


def compare(label: str, got: list[Tensor], want: list[Tensor], rtol: float) -> float:
    """Worst error over the tensors, each scaled by the largest magnitude of its expected value.

    Raises ``AssertionError`` naming the tensor when the error exceeds ``rtol`` (sums over
    millions of float32 products round differently between kernels, hence a scaled tolerance).
    """
    names = ["output", "input grad"] + [f"param grad {i}" for i in range(len(got) - 2)]
    worst = 0.0
    for name, a, b in zip(names, got, want, strict=True):
        if a is None or b is None or a.shape != b.shape:
            raise AssertionError(f"{label}: {name} missing or misshapen")
        scale = b.abs().max().item() or 1.0
        err = (a.double() - b.double()).abs().max().item() / scale
        if not err <= rtol:
            raise AssertionError(f"{label}: {name} differs from the reference: "
                                 f"max error {err:.3g} x scale {scale:.3g} > rtol {rtol:g}")
        worst = max(worst, err)
    return worst


def check_against_reference(cand: Candidate, want: list[Tensor] | None = None,
                            rtol: float = 1e-4) -> float:
    """Check output and every gradient of a fast candidate; return the worst scaled error.

    TMAF fast backends are compared with the oracle (``want`` may pass it precomputed),
    compiled baselines with the same module run eagerly.  Eager baselines and the TMAF
    reference backend are references themselves and return 0.
    """
    spec = cand.spec
    if spec.mode == "reference" or (not spec.is_tmaf and spec.mode == "eager"):
        return 0.0
    want = expected_results(cand) if want is None else want
    return compare(spec.name, cand.outputs_and_grads(), want, rtol)


def check_oracle(cand: Candidate, rows: int = 2, rtol: float = 1e-6) -> float:
    """The oracle against ``tmaf``'s reference backend on the first ``rows`` of the batch."""
    import tmaf.functional as F

    x, g = cand.x.detach()[:rows].double().requires_grad_(True), cand.g[:rows].double()
    lv = cand.module.levels.detach().double().requires_grad_(True)
    full = lv.view(lv.shape[0], -1, lv.shape[-1])
    out = F.banded_tmaf(x, cand.module.breakpoints.double(), full, 1, backend="reference")
    out.backward(g)
    want = [out.detach(), x.grad, lv.grad]
    got = oracle_outputs_and_grads(x, g, cand.module.breakpoints, cand.module.levels)
    return compare(f"oracle vs tmaf reference ({cand.spec.name})", got, want, rtol)
