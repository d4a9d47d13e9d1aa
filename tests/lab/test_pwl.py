"""pwl, the continuous learned rival: ReLU-exact start, fast path vs the literal definition
(output and every gradient), gradcheck, continuity, the fast interval index, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from conftest import assert_close

import tmaf
from tmaf_lab.models import act_factory, create_model, optimizer_groups
from tmaf_lab.pwl import (
    PiecewiseLinear,
    interval_index,
    piecewise_linear,
    piecewise_linear_reference,
    uniform_grid,
)

SHAPES = [((7, 5), 1), ((3, 4, 5, 6), 1), ((2, 3, 4), -1), ((6, 1), 1)]
NON_UNIFORM = torch.tensor([-2.0, -0.7, 0.0, 0.4, 1.9])


@pytest.mark.parametrize("shape, cd", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("bp", [None, NON_UNIFORM], ids=["default-grid", "non-uniform"])
def test_relu_init_is_bit_exact_relu(shape, cd, dtype, bp, device):
    layer = PiecewiseLinear(shape[cd], breakpoints=bp, channel_dim=cd).to(device)
    assert (layer.grid is None) == (bp is not None)
    x = (3 * torch.randn(shape, device=device)).to(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    bits = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16}
    assert torch.equal(y.view(bits[dtype]), torch.relu(x).view(bits[dtype]))


def test_same_parameter_count_as_diagonal_tmaf():
    pwl, diag = PiecewiseLinear(16), tmaf.DiagonalTMAF(16)
    assert pwl.slopes.shape == diag.levels.shape == (16, 10)
    assert torch.equal(pwl.breakpoints, tmaf.DEFAULT_BREAKPOINTS)


def _random_layer(C, cd, bp=None, dtype=torch.float64, device="cpu"):
    layer = PiecewiseLinear(C, breakpoints=bp, channel_dim=cd, dtype=dtype).to(device)
    with torch.no_grad():
        layer.slopes.normal_()
    return layer


@pytest.mark.parametrize("shape, cd", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bp", [None, NON_UNIFORM], ids=["default-grid", "non-uniform"])
@pytest.mark.parametrize("shared", [False, True])
def test_fast_path_matches_literal_definition_with_every_gradient(shape, cd, dtype, bp, shared,
                                                                  device):
    layer = _random_layer(1 if shared else shape[cd], cd, bp, dtype, device)
    x = (3 * torch.randn(shape, device=device, dtype=dtype)).requires_grad_()
    g = torch.randn(shape, device=device, dtype=dtype)
    fast = layer(x)
    dx, da = torch.autograd.grad(fast, (x, layer.slopes), g)
    ref = piecewise_linear_reference(x, layer.slopes, layer.breakpoints, cd)
    rx, ra = torch.autograd.grad(ref, (x, layer.slopes), g)
    assert_close(fast, ref, msg="output")
    assert_close(dx, rx, msg="d/dx")
    assert_close(da, ra, dtype=dtype, msg="d/dslopes")


@pytest.mark.parametrize("bp", [None, NON_UNIFORM], ids=["default-grid", "non-uniform"])
def test_gradcheck_float64(bp):
    layer = _random_layer(3, 1, bp)
    bps = layer.breakpoints
    x = (2 * torch.randn(4, 3, dtype=torch.float64))
    x = torch.where((x[..., None] - bps).abs().min(-1).values < 1e-3, x + 0.01, x)  # off the kinks
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, a: piecewise_linear(x, a, bps, 1, layer.grid), (x, layer.slopes))


def test_continuous_zero_at_zero_and_slopes_are_the_parameters():
    layer = _random_layer(4, 1)
    bp, a = layer.breakpoints, layer.slopes.detach()
    eps = 1e-9
    left = layer((bp - eps)[:, None].expand(-1, 4))
    right = layer((bp + eps)[:, None].expand(-1, 4))
    assert (left - right).abs().max() < 1e-7  # no jump (diagonal TMAF jumps here)
    assert torch.equal(layer(torch.zeros(2, 4, dtype=torch.float64)), torch.zeros(2, 4,
                                                                           dtype=torch.float64))
    mids = torch.cat([bp[:1] - 1, (bp[1:] + bp[:-1]) / 2, bp[-1:] + 1])  # one point per interval
    x0 = mids[:, None].expand(-1, 4)
    slope = (layer(x0 + 1e-3) - layer(x0)) / 1e-3  # (m+1, C)
    assert torch.allclose(slope.T, a, atol=1e-6)


def test_uniform_index_matches_bucketize():
    bp = tmaf.DEFAULT_BREAKPOINTS
    grid = uniform_grid(bp)
    assert grid == (0.5, 4) and uniform_grid(NON_UNIFORM) is None
    assert uniform_grid(torch.linspace(-1, 3, 5)) == (1.0, 1)  # holds 0
    assert uniform_grid(torch.linspace(-1.1, 1, 7)) is None  # no breakpoint at 0
    x = torch.cat([4 * torch.randn(10_000), bp, torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e9])])
    assert torch.equal(interval_index(x, bp, grid), torch.bucketize(x, bp))
    special = torch.tensor([float("inf"), float("-inf"), float("nan")])
    assert interval_index(special, bp, grid).tolist() == [9, 0, 0]


def test_nan_and_inf_inputs():
    layer = PiecewiseLinear(1)
    y = layer(torch.tensor([[float("nan")], [float("inf")], [5.0]]))[:, 0]
    assert torch.isnan(y[0]) and y[1] == float("inf") and y[2] == 5.0


def test_curves_state_dict_and_repr():
    layer = _random_layer(3, 1, dtype=torch.float32)
    grid = torch.linspace(-3, 3, 11)
    curves = layer.curves(grid)
    assert curves.shape == (3, 11)
    assert torch.allclose(curves[1], layer(grid[:, None].expand(-1, 3))[:, 1])
    other = PiecewiseLinear(3)
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other.slopes, layer.slopes)
    state = {"slopes": torch.ones(3, 6), "breakpoints": NON_UNIFORM}
    other = PiecewiseLinear(3, breakpoints=torch.linspace(-2, 2, 5))
    other.load_state_dict(state)
    assert other.grid is None  # the fast uniform index is dropped for the loaded grid
    assert "num_channels=3" in repr(layer) and "init='relu'" in repr(layer)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"num_channels": 0}, ValueError, "num_channels"),
    ({"num_channels": True}, ValueError, "num_channels"),
    ({"num_channels": 2, "init": "zeros"}, ValueError, "unknown init"),
    ({"num_channels": 2, "breakpoints": [1.0, 0.0]}, ValueError, "increasing"),
    ({"num_channels": 2, "breakpoints": [0.0, float("nan")]}, ValueError, "finite"),
    ({"num_channels": 2, "breakpoints": [[0.0, 1.0]]}, ValueError, "1-D"),
    ({"num_channels": 2, "breakpoints": [0.5, 1.0]}, ValueError, "needs 0"),
])
def test_bad_construction(kwargs, err, match):
    with pytest.raises(err, match=match):
        PiecewiseLinear(**kwargs)


def test_bad_inputs_and_bad_state():
    layer = PiecewiseLinear(4)
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="0-d"):
        layer(torch.tensor(1.0))
    with pytest.raises(ValueError, match="4 channels"):
        layer(torch.ones(2, 5))
    with pytest.raises(ValueError, match="channel_dim"):
        PiecewiseLinear(4, channel_dim=3)(torch.ones(2, 4))
    with pytest.raises(ValueError, match="breakpoints of shape"):
        piecewise_linear(torch.ones(2, 4), torch.ones(4, 10), torch.linspace(-1, 1, 5))
    with pytest.raises(ValueError, match="increasing"):
        layer.load_state_dict({"slopes": torch.ones(4, 10), "breakpoints": torch.zeros(9)})


def test_factory_models_and_optimizer_groups():
    make = act_factory("pwl")
    a, b = make(8), make(8)
    assert isinstance(a, PiecewiseLinear) and a is not b and a.slopes is not b.slopes
    assert act_factory("PWL", channel_dim=-1)(3).channel_dim == -1
    with pytest.raises(ValueError, match="pwl"):
        act_factory("swishy")
    x = torch.randn(3, 1, 28, 28)
    torch.manual_seed(0)
    relu = create_model("cnn", (1, 28, 28), 10, "relu", width=4).eval()
    torch.manual_seed(0)
    pwl = create_model("cnn", (1, 28, 28), 10, "pwl", width=4).eval()
    assert torch.equal(pwl(x), relu(x))  # same seed: same weights, and pwl starts as ReLU
    for act, n in (("pwl", 3), ("prelu", 3), ("diagonal", 3), ("relu", 0)):
        model = create_model("cnn", (1, 28, 28), 10, act, width=4)
        groups = optimizer_groups(model, weight_decay=0.1, act_lr=0.5)
        assert groups[0]["weight_decay"] == 0.1 and "lr" not in groups[0]
        if n:
            assert groups[1]["name"] == "activation" and groups[1]["lr"] == 0.5
            assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == n
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
        assert len(groups) == (2 if n else 1)


def test_a_step_of_training_moves_the_slopes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), PiecewiseLinear(8), nn.Linear(8, 1))
    before = model[1].slopes.detach().clone()
    loss = model(torch.randn(64, 3)).pow(2).mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model[1].slopes)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_gradients_accumulate_in_float32(dtype):
    layer = _random_layer(6, 1, dtype=torch.float32)
    x = torch.randn(4096, 6).to(dtype)
    on_kink = (x[..., None].float() == layer.breakpoints).any(-1)  # the literal clamp's
    x = torch.where(on_kink, x + 0.01, x).requires_grad_()  # derivative there sums 2 slopes
    g = torch.randn(4096, 6).to(dtype)
    layer(x).backward(g)
    x64 = x.detach().double().requires_grad_()
    slopes = layer.slopes.detach().double().requires_grad_()
    ref = piecewise_linear_reference(x64, slopes, layer.breakpoints.double(), 1)
    ref.backward(g.double())
    assert layer.slopes.grad.dtype == torch.float32
    torch.testing.assert_close(layer.slopes.grad.double(), slopes.grad, rtol=2e-2, atol=0.5)
    assert_close(x.grad, x64.grad.to(dtype))
