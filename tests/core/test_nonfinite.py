"""Non-finite inputs, one semantics in every backend (docs/method.md, section 4):
a zero level times +-inf is +0 and adds nothing to its level gradient; NaN reaches every output
that reads it, the input gradient at its position and every level gradient of the terms reading it."""

from __future__ import annotations

import math

import pytest
import torch

import tmaf
import tmaf.functional as F

INF, NAN = math.inf, math.nan
BACKENDS = ["reference", "eager", "compiled"] + (["native"] if tmaf.native_available() else [])
#: (backend, b, channel_dim, shape): every backend on every case, but the compiled one (seconds of
#: compilation per new shape) on one case.
CASES = [(be, b, cd, shape) for be in BACKENDS for b in (0, 1)
         for cd, shape in ((1, (3, 4)), (1, (2, 4, 3)), (-1, (2, 3, 4)))
         if be != "compiled" or (b, cd) == (1, -1)]


def _run(backend, x, bp, lv, cd, g):
    x = x.clone().requires_grad_()
    lv = lv.clone().requires_grad_()
    y = F.banded_tmaf(x, bp, lv, cd, backend=backend)
    y.backward(g)
    return y.detach(), x.grad, lv.grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_start_maps_infinities_like_relu(backend):
    x = torch.tensor([[-INF, -1.0, 0.0, 2.0, INF]])
    act = tmaf.DiagonalTMAF(5, backend=backend)
    y = act(x)
    assert torch.equal(y, torch.relu(x))  # -inf -> 0 (not NaN), +inf -> inf
    y.backward(torch.ones_like(y))
    # d/dt_0 at -inf: the level is 0, so the term is constant 0: nothing flows to it
    assert torch.isfinite(act.levels.grad[0]).all()


@pytest.mark.parametrize("backend, b, cd, shape", CASES)
def test_nonfinite_inputs_have_one_semantics(backend, b, cd, shape):
    torch.manual_seed(0)
    C = shape[cd]
    bp = torch.tensor([-1.0, 0.0, 1.0])
    lv = torch.randn(C, 2 * b + 1, 4)
    lv[:, b, 0] = 0.0  # a zero level on the left interval of every diagonal term
    x = torch.randn(shape)
    xm = x.movedim(cd, -1)  # view with the channel axis last
    xm[0, ..., 1] = NAN
    xm[-1, ..., 2] = -INF
    xm[-1, ..., 3] = INF
    g = torch.randn(shape)
    ref = _run("reference", x, bp, lv, cd, g)
    got = _run(backend, x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), got, ref, strict=True):
        torch.testing.assert_close(a, r, equal_nan=True, msg=lambda m, n=name: f"{backend} {n}: {m}")
    y, gx, gl = got
    ym, gxm = y.movedim(cd, -1), gx.movedim(cd, -1)
    # NaN in channel 1 reaches the outputs of channels 1-b..1+b at that position, and gx there
    assert ym[0, ..., max(0, 1 - b):2 + b].isnan().all()
    assert gxm[0, ..., 1].isnan().all()
    # every level gradient of every term reading channel 1 is NaN, in every interval; others are not
    for i in range(C):
        for d in range(-b, b + 1):
            assert bool(gl[i, d + b].isnan().all()) == (i + d == 1), (i, d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_level_times_infinity_is_zero_and_nonzero_gives_signed_infinity(backend):
    bp = torch.tensor([0.0])
    lv = torch.tensor([[[0.0, 0.0]], [[2.0, -3.0]]])  # channel 0: all zero; channel 1: nonzero
    x = torch.tensor([[INF, INF], [-INF, -INF]])
    y, gx, gl = _run(backend, x, bp, lv, 1, torch.ones_like(x))
    assert torch.equal(y, torch.tensor([[0.0, -INF], [0.0, -INF]]))
    assert torch.equal(gx, torch.tensor([[0.0, -3.0], [0.0, 2.0]]))
    assert torch.equal(gl[0], torch.zeros(1, 2))  # zero levels: the term is constant 0
    assert torch.equal(gl[1], torch.tensor([[-INF, INF]]))  # d/dt of t * y is y
