"""The compiled backend under inputs whose shape changes from call to call, as a transformer's
batches change length: the number of graphs torch.compile makes stays bounded.

Every dim but the channel axis is marked dynamic before the first compile (tmaf/_compiled.py),
so each layer variant costs one forward and one backward graph, made on the first length; no
later length or batch size compiles again. Compilation dominates this test's time (seconds per
graph), so the block is tiny and holds two variants that between them cover both forms and both
band widths: diagonal jump (the cheapest graphs) and tridiagonal continuous (the largest).
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close
from torch import nn

import tmaf

pytestmark = pytest.mark.slow

#: (batch, sequence length) in turn; the batch changes too, once
SHAPES = [(2, 5), (2, 6), (2, 9), (3, 7)]
#: the layer variants, each its own pair of graphs
VARIANTS = [(tmaf.DiagonalTMAF, "jump"), (tmaf.TridiagonalTMAF, "continuous")]
C = 4


def _block(backend: str, device: torch.device) -> nn.Sequential:
    """Linear -> TMAF -> Linear -> TMAF ... over (N, L, C) tokens, channels last."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for cls, form in VARIANTS:
        layers += [nn.Linear(C, C), cls(C, channel_dim=-1, init="random", backend=backend, form=form,
                                        breakpoints=torch.tensor([-0.5, 0.0, 0.5]))]
    return nn.Sequential(*layers, nn.Linear(C, C)).to(device)


def _step(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    y = model(x)
    y.square().sum().backward()
    return [y.detach(), *(p.grad for p in model.parameters())]


def test_graph_count_stays_bounded_when_sequence_lengths_change(device):
    compiled, eager = _block("compiled", device), _block("eager", device)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    graphs = []
    for n, length in SHAPES:
        x = torch.randn(n, length, C, device=device)
        got = _step(compiled, x)
        graphs.append(counters["stats"]["unique_graphs"])
    # the first length compiles one forward and one backward graph per variant, no length after it
    assert graphs[0] == 2 * len(VARIANTS), graphs
    assert graphs == [graphs[0]] * len(SHAPES), f"graphs after each shape: {graphs}"
    assert not counters["recompiles"], dict(counters["recompiles"])
    for a, e in zip(got, _step(eager, x), strict=True):  # and it computes what eager does
        assert_close(a, e)
