"""The torch.compile-fused fast path, and TMAF inside a model compiled with torch.compile.

Compilation costs seconds per variant on CPU, so these tests cover few variants.
"""

from __future__ import annotations

import pytest
import torch
from helpers import BP, breakpoints, input_on_breakpoints, levels, run
from torch import nn

import tmaf

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("b,per_channel,shape,cd,dtype", [
    (0, False, (4, 5, 6, 3), 1, torch.float32),
    (1, True, (3, 7, 5), -1, torch.float64),
])
def test_compiled_backend_matches_reference(b, per_channel, shape, cd, dtype):
    C = shape[cd]
    bp = breakpoints(C, per_channel, dtype)
    x = input_on_breakpoints(shape, cd, bp, dtype)
    lv = levels(C, b, len(BP), dtype)
    g = torch.randn_like(x)
    ref = run("reference", x, bp, lv, cd, g)
    fast = run("compiled", x, bp, lv, cd, g)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        torch.testing.assert_close(a, r, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_tmaf_inside_compiled_model_trains_like_eager():
    torch.manual_seed(0)

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), tmaf.DiagonalTMAF(8, init="random"),
                             nn.Linear(8, 8), tmaf.TridiagonalTMAF(8, init="random"), nn.Linear(8, 1))

    x, y = torch.randn(16, 6), torch.randn(16, 1)
    eager, compiled_src = make(), make()
    compiled = torch.compile(compiled_src)
    for model in (eager, compiled):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
    torch.testing.assert_close(compiled(x), eager(x), atol=1e-5, rtol=1e-5)
    for (n, p), (_, q) in zip(eager.named_parameters(), compiled_src.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
