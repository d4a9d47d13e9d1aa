"""Call sites: one TMAF per call of a replaced activation module, and the guards that keep two
call sites from ever sharing (tying) one TMAF's parameters."""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

from .modules import BandedTMAF

__all__ = ["is_tmaf", "tmaf_modules", "CallSites"]


def is_tmaf(module: nn.Module) -> bool:
    return isinstance(module, BandedTMAF)


def tmaf_modules(model: nn.Module) -> Iterator[tuple[str, BandedTMAF]]:
    """(qualified name, module) for every TMAF layer in ``model``."""
    for name, module in model.named_modules():
        if is_tmaf(module):
            yield name, module


class CallSites(nn.Module):
    """One activation module per call site of a replaced, reused activation.

    The k-th call within one forward pass of the converted root model goes to ``sites[k]``.
    More calls than sites raise a RuntimeError instead of reusing (tying) a site.
    """

    def __init__(self, sites: list[nn.Module], origin: str) -> None:
        super().__init__()
        self.sites = nn.ModuleList(sites)
        self.origin = origin
        self._calls = 0

    def forward(self, x: Tensor) -> Tensor:
        k = self._calls
        if k >= len(self.sites):
            raise RuntimeError(
                f"tmaf: the activation converted at {self.origin!r} was called {k + 1} times in one "
                f"forward pass but has {len(self.sites)} call site(s); reusing one TMAF would tie "
                "parameters. Pass example_input= to tmaf.convert so every call site gets its own "
                "TMAF, and call the model through its root module.")
        self._calls = k + 1
        return self.sites[k](x)

    def extra_repr(self) -> str:
        return f"origin={self.origin!r}, sites={len(self.sites)}"


def _reset_call_sites(root: nn.Module, args) -> None:
    for m in root.modules():
        if isinstance(m, CallSites):
            m._calls = 0
        elif "_tmaf_calls" in m.__dict__:
            m._tmaf_calls = 0


def _single_call_guard(module: nn.Module, args) -> None:
    """Pre-hook on a TMAF placed without seeing the model run: a second call in one forward
    pass would tie two call sites' parameters, so it raises."""
    module._tmaf_calls += 1
    if module._tmaf_calls > 1:
        raise RuntimeError(
            f"tmaf: a {type(module).__name__} placed by tmaf.convert without an example pass was "
            f"called {module._tmaf_calls} times in one forward pass; reusing one TMAF would tie "
            "parameters. Pass example_input= to tmaf.convert so every call site gets its own "
            "TMAF, and call the model through its root module.")
