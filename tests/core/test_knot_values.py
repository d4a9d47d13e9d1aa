"""The continuous form trained through its values at the breakpoints (parameterization=
"knot_values", docs/method.md section 6.3): the levels it computes, the round trip to the
values, the ReLU start on non-finite input in every backend, gradients through the
reparameterisation (against float64 finite differences and the literal reference), the lazy
modules, the factory, param_groups, state_dict and the errors."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_close
from helpers import breakpoints, input_on_breakpoints

import tmaf
from tmaf._continuous import knots_from_levels, levels_from_knots

BACKENDS = ["reference", "eager"] + (["native"] if tmaf.native_available() else [])


def _module(cls_args, per_channel=False, dtype=torch.float64, **kw):
    cls, C, *b = cls_args
    bp = breakpoints(C, per_channel, dtype)
    return cls(C, *b, breakpoints=bp, form="continuous", parameterization="knot_values",
               dtype=dtype, **kw)


LAYERS = [(tmaf.DiagonalTMAF, 5), (tmaf.TridiagonalTMAF, 5), (tmaf.BandedTMAF, 5, 2)]


def test_levels_are_the_slopes_between_the_knot_values_by_hand():
    bp = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    u = torch.tensor([[3.0, 1.0, 2.0, -1.0]], dtype=torch.float64)
    ends = torch.tensor([[0.25, -4.0]], dtype=torch.float64)
    lv = levels_from_knots(bp, u, ends)
    want = torch.tensor([[0.25, -2.0, 2.0, -2.0, -4.0]], dtype=torch.float64)
    assert torch.equal(lv, want)
    # the function through those values is u at the knots, up to the shift F(0) = 0 fixes
    m = tmaf.DiagonalTMAF(1, breakpoints=bp, form="continuous", dtype=torch.float64)
    with torch.no_grad():
        m.levels.copy_(lv)
    assert_close(m(bp.view(-1, 1)).view(-1), u.view(-1) - u[0, 1])


@pytest.mark.parametrize("layer", LAYERS, ids=["diagonal", "tridiagonal", "banded2"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per-channel"])
def test_round_trip_between_levels_and_knot_values(layer, per_channel):
    """levels -> values -> levels is the identity (random levels, each term on the grid of its
    input channel), and the values are the function's values at the breakpoints."""
    torch.manual_seed(0)
    m = _module(layer, per_channel, init="random")
    lv = m.levels.detach()
    u, ends = knots_from_levels(m.breakpoints, lv)
    assert_close(levels_from_knots(m.breakpoints, u, ends), lv)
    lv3 = lv if lv.dim() == 3 else lv[:, None]
    u3 = u if u.dim() == 3 else u[:, None]
    C, W, _ = lv3.shape
    b = W // 2
    grid = m.breakpoints if m.breakpoints.dim() == 2 else m.breakpoints.expand(C, -1)
    for i in range(C):
        for d in range(-b, b + 1):
            if 0 <= i + d < C:
                single = tmaf.DiagonalTMAF(1, breakpoints=grid[i + d], form="continuous",
                                           dtype=torch.float64)
                with torch.no_grad():
                    single.levels.copy_(lv3[i, d + b][None])
                assert_close(single(grid[i + d].view(-1, 1)).view(-1), u3[i, d + b])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("init", ["relu", "identity", "leaky_relu"])
def test_starts_are_exact_with_non_finite_input(backend, dtype, init):
    """The starts give exactly the levels of the levels parameterisation (so exactly
    torch.relu / identity / leaky_relu for the diagonal, +-inf and NaN included; a slope of
    1/8 so that the leaky start's values at the breakpoints are exact)."""
    x = 3 * torch.randn(6, 4, 3, dtype=dtype)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = float("inf"), float("-inf"), float("nan")
    m = tmaf.DiagonalTMAF(4, init=init, form="continuous", parameterization="knot_values",
                          negative_slope=0.125, backend=backend, dtype=dtype)
    ref = tmaf.DiagonalTMAF(4, init=init, form="continuous", negative_slope=0.125,
                            backend=backend, dtype=dtype)
    assert torch.equal(m.levels, ref.levels)
    want = {"relu": torch.relu(x), "identity": x,
            "leaky_relu": torch.nn.functional.leaky_relu(x, 0.125)}[init]
    got = m(x)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS, ids=["diagonal", "tridiagonal", "banded2"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per-channel"])
def test_gradients_match_the_literal_reference(backend, layer, per_channel):
    """Outputs and the gradients of input, knot values and end slopes equal the reference
    backend's through the same reparameterisation (inputs on breakpoints included)."""
    grads = {}
    for be in ("reference", backend):
        torch.manual_seed(1)
        m = _module(layer, per_channel, init="random", backend=be)
        x = input_on_breakpoints((3, 5, 4), 1, m.breakpoints, torch.float64).requires_grad_()
        g = torch.randn_like(x)
        y = m(x)
        y.backward(g)
        grads[be] = (y.detach(), x.grad, m.knot_values.grad, m.end_slopes.grad)
    for a, b in zip(grads["reference"], grads[backend], strict=True):
        assert_close(b, a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_through_the_knot_values(backend):
    torch.manual_seed(2)
    m = _module((tmaf.TridiagonalTMAF, 4), init="random", backend=backend)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    names = ("knot_values", "end_slopes")
    params = tuple(getattr(m, n).detach().clone().requires_grad_() for n in names)

    def f(x, u, e):
        return torch.func.functional_call(m, {"knot_values": u, "end_slopes": e,
                                              "breakpoints": m.breakpoints}, (x,))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_trains_the_values_not_the_levels():
    """One SGD step moves knot_values / end_slopes (param_groups puts them in the tmaf group),
    and a value moves the function only on the two intervals beside its breakpoint."""
    m = tmaf.DiagonalTMAF(3, form="continuous", parameterization="knot_values")
    assert [n for n, _ in m.named_parameters()] == ["knot_values", "end_slopes"]
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), m)
    groups = tmaf.param_groups(net)
    assert {id(p) for p in groups[-1]["params"]} == {id(m.knot_values), id(m.end_slopes)}
    before = m.levels.detach().clone()
    with torch.no_grad():
        m.knot_values[0, 4] += 1.0  # the value at s_4 = 0
    changed = (m.levels.detach() != before).nonzero().tolist()
    assert changed == [[0, 4], [0, 5]]


def test_lazy_factory_convert_state_dict_and_copy():
    x = torch.randn(4, 6, 3)
    lazy = tmaf.LazyTridiagonalTMAF(form="continuous", parameterization="knot_values")
    y = lazy(x)
    assert type(lazy) is tmaf.TridiagonalTMAF and lazy.knot_values.shape == (6, 3, 9)
    assert lazy.end_slopes.shape == (6, 3, 2)
    assert torch.equal(y, tmaf.TridiagonalTMAF(6, form="continuous")(x))
    act = tmaf.create_act("continuous_diagonal", 6, parameterization="knot_values")
    assert act.parameterization == "knot_values" and "knot_values" in repr(act)
    net = tmaf.convert(torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU()),
                       "continuous_diagonal", example_input=torch.randn(2, 3),
                       parameterization="knot_values")
    assert net[1].parameterization == "knot_values"
    with torch.no_grad():
        act.knot_values.normal_()
    twin = tmaf.DiagonalTMAF(6, form="continuous", parameterization="knot_values")
    twin.load_state_dict(act.state_dict())
    assert set(act.state_dict()) == {"breakpoints", "knot_values", "end_slopes"}
    assert torch.equal(twin(x), act(x)) and torch.equal(copy.deepcopy(act)(x), act(x))
    curves = act.curves(torch.linspace(-3, 3, 7))
    assert curves.shape == (6, 1, 7)


def test_bad_parameterization_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown parameterization 'values'"):
        tmaf.DiagonalTMAF(3, form="continuous", parameterization="values")
    with pytest.raises(ValueError, match="continuous form's .* got form='jump'"):
        tmaf.DiagonalTMAF(3, parameterization="knot_values")
    with pytest.raises(ValueError, match="continuous form's"):
        tmaf.create_act("diagonal", 3, parameterization="knot_values")
    m = tmaf.DiagonalTMAF(3, form="continuous", parameterization="knot_values")
    with pytest.raises(AttributeError, match="cannot be assigned"):
        m.levels = torch.nn.Parameter(torch.zeros(3, 10))
    with pytest.raises(NotImplementedError, match="form='continuous'"):
        tmaf.calibrate(torch.nn.Sequential(m), torch.randn(8, 3))


def test_what_the_starts_keep_on_any_grid():
    """docs/method.md section 6: with knot_values the ReLU and identity starts are exact on every
    grid (their inner slopes are 0/h and h/h); the leaky start's inner slopes are recomputed from
    values rounded in the parameters' dtype, within u ((|s_k| + |s_k+1|) / (s_k+1 - s_k) + 3)
    (u = 2^-24 in float32) of the slope relative to it, and exact on DEFAULT_BREAKPOINTS."""
    gen = torch.Generator().manual_seed(0)
    u = 2.0 ** -24
    for _ in range(60):
        m = int(torch.randint(2, 40, (), generator=gen))
        scale = 10 ** (6 * torch.rand((), generator=gen).item() - 3)
        bp = torch.sort(torch.randn(m, generator=gen) * scale).values
        bp[bp.abs().argmin()] = 0.0
        bp = torch.unique(bp)
        for init in ("relu", "identity", "leaky_relu"):
            kw = dict(breakpoints=bp, init=init, form="continuous")
            got = tmaf.DiagonalTMAF(1, parameterization="knot_values", **kw).levels.detach()[0]
            want = tmaf.DiagonalTMAF(1, **kw).levels.detach()[0]
            if init != "leaky_relu":
                assert torch.equal(got, want), (init, bp)
                continue
            s = bp.double()
            bound = u * ((s[:-1].abs() + s[1:].abs()) / s.diff() + 3)
            rel = (got[1:-1].double() - want[1:-1].double()).abs() / want[1:-1].double().abs()
            assert torch.equal(got[[0, -1]], want[[0, -1]]) and bool((rel <= bound).all()), (bp, rel)
    leaky = tmaf.DiagonalTMAF(1, init="leaky_relu", form="continuous", parameterization="knot_values")
    assert torch.equal(leaky.levels, tmaf.DiagonalTMAF(1, init="leaky_relu").levels)
