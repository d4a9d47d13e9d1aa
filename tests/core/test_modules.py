"""Modules: drop-in contract (ReLU-exact init, any leading dims, device/dtype kwargs,
reset_parameters, extra_repr, state_dict round trip), module == functional, lazy variants."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import breakpoints, input_on_breakpoints
from torch import nn

import tmaf
import tmaf.functional as F

CLASSES = {
    "diagonal": lambda C, **kw: tmaf.DiagonalTMAF(C, **kw),
    "tridiagonal": lambda C, **kw: tmaf.TridiagonalTMAF(C, **kw),
    "banded2": lambda C, **kw: tmaf.BandedTMAF(C, 2, **kw),
    "full": lambda C, **kw: tmaf.BandedTMAF(C, C - 1, **kw),
}


@pytest.mark.parametrize("kind", list(CLASSES))
@pytest.mark.parametrize("shape,cd", [((8, 6), 1), ((2, 6, 5), 1), ((2, 6, 3, 3), 1), ((2, 5, 6), -1)])
def test_default_init_is_exactly_relu(kind, shape, cd):
    act = CLASSES[kind](6, channel_dim=cd)
    x = torch.randn(shape)
    x.view(-1)[:3] = torch.tensor([0.0, -0.0, 2.0])  # exact zero and a breakpoint
    assert torch.equal(act(x), torch.relu(x))
    x.requires_grad_()
    act(x).sum().backward()
    assert torch.equal(x.grad, (x > 0).to(x.dtype))


def test_per_channel_breakpoints_relu_and_leaky():
    bp = breakpoints(4, True, torch.float32)
    x = input_on_breakpoints((3, 4, 5), 1, bp, torch.float32)
    assert torch.equal(tmaf.TridiagonalTMAF(4, breakpoints=bp)(x), torch.relu(x))
    leaky = tmaf.DiagonalTMAF(4, breakpoints=bp, init="leaky_relu", negative_slope=0.2)
    torch.testing.assert_close(leaky(x), nn.functional.leaky_relu(x, 0.2))
    ident = tmaf.BandedTMAF(4, 3, breakpoints=bp, init="identity")
    assert torch.equal(ident(x), x)


def test_random_init_and_reset_parameters():
    act = tmaf.TridiagonalTMAF(4, init="random", init_scale=0.5)
    assert act.levels.abs().max() <= 0.5 and act.levels.std() > 0.05
    act.init = "relu"
    act.reset_parameters()
    x = torch.randn(3, 4)
    assert torch.equal(act(x), torch.relu(x))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_module_equals_functional(kind):
    act = CLASSES[kind](5, init="random")
    x = torch.randn(4, 5, 3)
    lv = act.levels if act.levels.dim() == 3 else act.levels[:, None]
    torch.testing.assert_close(act(x), F.banded_tmaf(x, act.breakpoints, lv, 1))


def test_shapes_and_attributes():
    d = tmaf.DiagonalTMAF(7)
    assert d.levels.shape == (7, 10) and d.breakpoints.shape == (9,)
    assert torch.equal(d.breakpoints, tmaf.DEFAULT_BREAKPOINTS) and 0.0 in d.breakpoints.tolist()
    t = tmaf.TridiagonalTMAF(7, breakpoints=[-1.0, 0.0, 1.0])
    assert t.levels.shape == (7, 3, 4) and t.bandwidth == 1
    f = tmaf.BandedTMAF(7, 6)
    assert f.levels.shape == (7, 13, 10)
    p = tmaf.DiagonalTMAF(7, breakpoints=breakpoints(7, True, torch.float32))
    assert p.breakpoints.shape == (7, 5)
    assert isinstance(d.levels, nn.Parameter) and "breakpoints" in dict(d.named_buffers())
    assert not any(n == "breakpoints" for n, _ in d.named_parameters())
    r = repr(t)
    assert "num_channels=7" in r and "bandwidth=1" in r and "init='relu'" in r


def test_shared_levels_like_prelu():
    act = tmaf.DiagonalTMAF(init="random")  # num_channels=1
    assert act.levels.shape == (1, 10)
    x = torch.randn(2, 6, 4)
    expected = F.diagonal_tmaf(x, act.breakpoints, act.levels.expand(6, -1))
    torch.testing.assert_close(act(x), expected)
    act(x).sum().backward()
    assert act.levels.grad.shape == (1, 10)


def test_device_dtype_kwargs_and_float64():
    act = tmaf.TridiagonalTMAF(3, device="cpu", dtype=torch.float64)
    assert act.levels.dtype == torch.float64 and act.breakpoints.dtype == torch.float64
    x = torch.randn(2, 3, dtype=torch.float64)
    assert act(x).dtype == torch.float64


def test_state_dict_round_trip():
    a = tmaf.TridiagonalTMAF(5, breakpoints=breakpoints(5, True, torch.float32), init="random")
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = tmaf.TridiagonalTMAF(5, breakpoints=breakpoints(5, True, torch.float32))
    b.load_state_dict(torch.load(buf))
    x = torch.randn(3, 5)
    assert torch.equal(a(x), b(x))
    bad = a.state_dict()
    bad["breakpoints"] = bad["breakpoints"].flip(-1)
    with pytest.raises(ValueError, match="strictly increasing"):
        b.load_state_dict(bad)


@pytest.mark.parametrize("lazy,eager", [(tmaf.LazyDiagonalTMAF, tmaf.DiagonalTMAF),
                                        (tmaf.LazyTridiagonalTMAF, tmaf.TridiagonalTMAF)])
def test_lazy_infers_channels(lazy, eager):
    act = lazy(channel_dim=-1)
    x = torch.randn(2, 3, 6)
    y = act(x)
    assert type(act) is eager and act.num_channels == 6 and act.levels.shape[0] == 6
    assert torch.equal(y, torch.relu(x))


def test_lazy_full():
    act = tmaf.LazyBandedTMAF("full")
    act(torch.randn(2, 4))
    assert act.bandwidth == 3 and act.levels.shape == (4, 7, 10)


def test_factory_names_and_call_sites():
    for name in tmaf.ACTIVATION_NAMES:
        m = tmaf.create_act(name, 4)
        assert m(torch.randn(2, 4)).shape == (2, 4)
    layer = tmaf.get_act_layer("tridiagonal", init="random")
    a, b = layer(4), layer(4)
    assert a is not b and a.levels.data_ptr() != b.levels.data_ptr()
    assert isinstance(tmaf.create_act("prelu", 4), nn.PReLU)
    assert tmaf.create_act("prelu", 4).weight.shape == (4,)
    assert tmaf.create_act("banded3", 8).bandwidth == 3
    with pytest.raises(ValueError, match="unknown activation 'swishy'.*relu"):
        tmaf.get_act_layer("swishy")
    with pytest.raises(TypeError, match="module instance"):
        tmaf.get_act_layer(nn.ReLU())
