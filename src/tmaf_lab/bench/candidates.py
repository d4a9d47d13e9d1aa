"""Activation candidates: ReLU / PReLU / GELU baselines and TMAF in each backend.

A candidate is one activation module, called either eagerly or through ``torch.compile``
(baselines), or through one TMAF backend (``native`` C++ operators, ``compiled`` fused fast path,
``eager`` fast path, ``reference``).  Inputs are described by :class:`Shape` (dimensions and
memory layout; the channel axis is always dim 1).  Each candidate exposes two zero-argument
callables over one shared input:
``fwd`` (forward with autograd recording, as in training) and ``fwd_bwd`` (forward + backward of
a fixed upstream gradient, input and parameter gradients).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .oracle import continuous_oracle_outputs_and_grads, oracle_outputs_and_grads

BASELINES = ("relu", "prelu", "gelu")
TMAF_KINDS = ("diagonal", "tridiagonal", "continuous_diagonal", "continuous_tridiagonal")
JUMP_KINDS = ("diagonal", "tridiagonal")


CONTINUOUS_M = 9  # the continuous form is timed at the targets' m only (against the jump form)


def is_continuous(kind: str) -> bool:
    return kind.startswith("continuous_")


def kind_ms(kind: str, ms) -> list[int]:
    """The grid sizes a kind is timed at: every m for the jump form, CONTINUOUS_M for the
    continuous one (its target is its ratio to the jump form at that m)."""
    return [m for m in ms if not is_continuous(kind) or m == CONTINUOUS_M]
TMAF_BACKENDS = ("native", "compiled", "eager", "reference")  # "native" first: the main column


@dataclass(frozen=True)
class Shape:
    """An input shape with its memory layout; channels on dim 1 (``channel_dim=1``).

    ``name``: ``64x64x32x32`` (contiguous, channels outer: a contiguous run per (row, channel)),
    ``4096x1024`` (2-D: channels innermost), ``32x64x56x56-cl`` (``torch.channels_last``:
    channels innermost in memory).
    """

    dims: tuple[int, ...]
    channels_last: bool = False

    @classmethod
    def parse(cls, text: str) -> Shape:
        body, _, suffix = text.partition("-")
        if suffix not in ("", "cl"):
            raise ValueError(f"shape {text!r}: expected NxCx... with an optional -cl suffix")
        try:
            dims = tuple(int(s) for s in body.split("x"))
        except ValueError:
            raise ValueError(f"shape {text!r}: expected NxCx..., e.g. 64x64x32x32") from None
        if len(dims) < 2 or min(dims) < 1 or (suffix and len(dims) != 4):
            raise ValueError(f"shape {text!r}: expected >= 2 positive dims (-cl: 4 dims)")
        return cls(dims, bool(suffix))

    @property
    def name(self) -> str:
        return "x".join(map(str, self.dims)) + ("-cl" if self.channels_last else "")

    @property
    def layout(self) -> str:
        """``outer`` (channels outside a contiguous inner run) or ``inner`` (innermost)."""
        return "outer" if len(self.dims) > 2 and not self.channels_last else "inner"

    def randn(self, device: torch.device, generator: torch.Generator | None = None,
              requires_grad: bool = False) -> Tensor:
        t = torch.randn(self.dims, generator=generator).to(device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t.requires_grad_(requires_grad)


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
    def uses_tmaf(self) -> bool:
        return self.kind in TMAF_KINDS


def breakpoints(m: int) -> Tensor:
    """m breakpoints on [-2, 2] for unit-scale inputs; m = 1 is ReLU's single breakpoint 0.

    m = 9 is ``tmaf.DEFAULT_BREAKPOINTS`` (the targets' m)."""
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
    if not spec.uses_tmaf:
        raise ValueError(f"unknown activation {spec.kind!r}; expected one of "
                         f"{BASELINES + TMAF_KINDS}")
    import tmaf

    jump = spec.kind.removeprefix("continuous_")
    cls = tmaf.DiagonalTMAF if jump == "diagonal" else tmaf.TridiagonalTMAF
    # the module carries its backend (no global switch around every timed call)
    mod = cls(num_channels, breakpoints=breakpoints(spec.m), init="random", device=device,
              backend=spec.mode, form="continuous" if is_continuous(spec.kind) else "jump")
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
        if spec.uses_tmaf and spec.mode not in TMAF_BACKENDS:
            raise ValueError(f"TMAF mode must be one of {TMAF_BACKENDS}, got {spec.mode!r}")
        if not spec.uses_tmaf and spec.mode not in ("eager", "compile"):
            raise ValueError(f"baseline mode must be 'eager' or 'compile', got {spec.mode!r}")
        self.spec = spec
        self.module = make_module(spec, x.shape[1], x.device, seed)
        self.params = list(self.module.parameters())
        self.x, self.g = x, g
        self.backend = spec.mode if spec.uses_tmaf else None  # the module's own setting
        self.call: Callable[[Tensor], Tensor] = (
            torch.compile(self.module, dynamic=False) if spec.mode == "compile" else self.module)

    def forward(self) -> Tensor:
        return self.call(self.x)

    def fwd(self) -> None:
        self.call(self.x)

    def fwd_bwd(self) -> None:
        self.x.grad = None
        for p in self.params:
            p.grad = None
        self.call(self.x).backward(self.g)

    def outputs_and_grads(self, eager: bool = False) -> list[Tensor]:
        """[output, input grad, *parameter grads]; ``eager``: the module without torch.compile."""
        self.x.grad = None
        for p in self.params:
            p.grad = None
        y = (self.module if eager else self.call)(self.x)
        y.backward(self.g)
        out = [y.detach(), self.x.grad] + [p.grad for p in self.params]
        self.x.grad = None
        for p in self.params:
            p.grad = None
        return out


def expected_results(cand: Candidate) -> list[Tensor]:
    """What a candidate must reproduce: [output, input grad, *parameter grads].

    TMAF: the float64 oracle (``tmaf_lab.bench.oracle.oracle_outputs_and_grads``); baselines: the
    same module run eagerly.
    """
    if cand.spec.uses_tmaf:
        oracle = (continuous_oracle_outputs_and_grads if is_continuous(cand.spec.kind)
                  else oracle_outputs_and_grads)
        return oracle(cand.x, cand.g, cand.module.breakpoints, cand.module.levels)
    return cand.outputs_and_grads(eager=True)


def _chunks(t: Tensor, elements: int = 1 << 20):
    """Slices of ``t`` along dim 0 of about ``elements`` each: float64 temporaries of 8 MB stay
    in the allocator's heap (a 64 MB one is a fresh mmap with page faults, ~0.5 s per check)."""
    if t.dim() == 0:
        yield t
        return
    per = max(1, elements // max(1, t[0].numel()))
    for i in range(0, t.shape[0], per):
        yield t[i:i + per]


def _max_abs(t: Tensor) -> float:
    """max |t|, by reductions only (no temporary the size of ``t``)."""
    if t.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(t.detach())
    return max(-lo.item(), hi.item())


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b|, the difference in the wider dtype, in slices (see :func:`_chunks`)."""
    return max((_max_abs(cb - ca) for ca, cb in zip(_chunks(a.detach()), _chunks(b.detach()),
                                                    strict=True) if ca.numel()), default=0.0)


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
        scale = _max_abs(b) or 1.0
        err = _max_abs_diff(a, b) / scale
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
    if spec.mode == "reference" or (not spec.uses_tmaf and spec.mode == "eager"):
        return 0.0
    want = expected_results(cand) if want is None else want
    return compare(spec.name, cand.outputs_and_grads(), want, rtol)


def check_oracle(cand: Candidate, rows: int = 2, rtol: float = 1e-6) -> float:
    """The oracle against ``tmaf``'s reference backend on the first ``rows`` of the batch."""
    import tmaf.functional as F

    x, g = cand.x.detach()[:rows].double().requires_grad_(True), cand.g[:rows].double()
    lv = cand.module.levels.detach().double().requires_grad_(True)
    full = lv.view(lv.shape[0], -1, lv.shape[-1])
    form = "continuous" if is_continuous(cand.spec.kind) else "jump"
    out = F.banded_tmaf(x, cand.module.breakpoints.double(), full, 1, backend="reference",
                        form=form)
    out.backward(g)
    want = [out.detach(), x.grad, lv.grad]
    oracle = continuous_oracle_outputs_and_grads if form == "continuous" else oracle_outputs_and_grads
    got = oracle(x, g, cand.module.breakpoints, cand.module.levels)
    return compare(f"oracle vs tmaf reference ({cand.spec.name})", got, want, rtol)
