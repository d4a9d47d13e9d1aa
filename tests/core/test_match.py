"""init="match" (docs/method.md section 7, tmaf.matching): the fit's definition restated by hand
for each form, the reported error against the measured one, the band, the lazy modules, the
factory and convert, reset and state_dict, gradients against the literal reference with inputs
on breakpoints, and the errors."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as Fn
from conftest import assert_close
from helpers import input_on_breakpoints

import tmaf
from tmaf import matching

BACKENDS = ["reference", "eager"] + (["native"] if tmaf.native_available() else [])
NONUNIFORM = [-3.0, -1.2, -0.5, -0.1, 0.0, 0.3, 1.0, 2.5]
#: (form, parameterization)
FORMS = [("jump", "levels"), ("continuous", "levels"), ("continuous", "knot_values")]
FORM_IDS = ["jump", "continuous", "knot_values"]
#: name -> (f, lim f(y)/y at -inf, at +inf; None: not finite)
NAMED = {"gelu": (Fn.gelu, 0.0, 1.0), "gelu_tanh": (lambda x: Fn.gelu(x, approximate="tanh"), 0.0, 1.0),
         "silu": (Fn.silu, 0.0, 1.0), "relu2": (lambda x: Fn.relu(x) ** 2, 0.0, None),
         "elu": (Fn.elu, 0.0, 1.0), "tanh": (torch.tanh, 0.0, 0.0),
         "leaky_relu": (lambda x: Fn.leaky_relu(x, 0.01), 0.01, 1.0),
         "quick_gelu": (lambda x: x * torch.sigmoid(1.702 * x), 0.0, 1.0),
         "mish": (Fn.mish, 0.0, 1.0), "relu": (Fn.relu, 0.0, 1.0)}
FUNCS = ["gelu", "gelu_tanh", "silu", "relu2", "elu", "tanh"]


def _grid(kind: str, C: int = 3) -> torch.Tensor:
    if kind == "default":
        return tmaf.DEFAULT_BREAKPOINTS.double()
    bp = torch.tensor(NONUNIFORM, dtype=torch.float64)
    return bp if kind == "nonuniform" else bp * (1.0 + 0.3 * torch.arange(C, dtype=bp.dtype))[:, None]


def _module(form, par, match, grid="default", cls=tmaf.DiagonalTMAF, C=3, **kw):
    return cls(C, breakpoints=_grid(grid, C), init="match", match=match, form=form,
               parameterization=par, dtype=torch.float64, channel_dim=-1, **kw)


def _pieces(s: torch.Tensor) -> list[torch.Tensor]:
    """The documented sample, restated: SAMPLES + 1 points per inner interval, both ends."""
    return [torch.linspace(a, b, matching.SAMPLES + 1, dtype=s.dtype)
            for a, b in zip(s[:-1].tolist(), s[1:].tolist(), strict=True)]


def _rows(bp: torch.Tensor, C: int) -> list[torch.Tensor]:
    return list(bp) if bp.dim() == 2 else [bp] * C


@pytest.mark.parametrize("name", list(NAMED))
def test_named_functions_and_their_measured_asymptotic_slopes(name):
    f, left, right = NAMED[name]
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert_close(matching.FUNCTIONS[name](x), f(x))
    got = matching.asymptotic_slopes(matching.FUNCTIONS[name], tmaf.DEFAULT_BREAKPOINTS)
    for g, want in zip(got, (left, right), strict=True):
        assert (g is None) if want is None else abs(g - want) < 1e-9


@pytest.mark.parametrize("grid", ["default", "nonuniform", "per-channel"])
@pytest.mark.parametrize("name", FUNCS)
def test_jump_levels_are_least_squares_inside_and_limits_outside(name, grid):
    f, left, right = NAMED[name]
    m = _module("jump", "levels", name, grid)
    for s, lv in zip(_rows(m.breakpoints, 3), m.levels, strict=True):
        for k, y in enumerate(_pieces(s), start=1):
            assert_close(lv[k], (y * f(y)).sum() / (y * y).sum())
        assert_close(lv[0], torch.tensor(left, dtype=torch.float64))
        want = f(s[-1]) / s[-1] if right is None else torch.tensor(right, dtype=torch.float64)
        assert_close(lv[-1], want)


@pytest.mark.parametrize("par", ["levels", "knot_values"])
@pytest.mark.parametrize("grid", ["default", "nonuniform", "per-channel"])
@pytest.mark.parametrize("name", FUNCS)
def test_continuous_form_interpolates_at_the_breakpoints_with_the_end_slopes(name, grid, par):
    """f(s_q) exactly (to rounding) at every breakpoint; outside the grid the asymptotic slope
    of f, or the tangent slope at the end breakpoint where f(y)/y has no finite limit."""
    f, left, right = NAMED[name]
    m = _module("continuous", par, name, grid)
    bp = m.breakpoints if m.breakpoints.dim() == 2 else m.breakpoints.expand(3, -1)
    x = bp.T.contiguous()  # (m, C): channel c at its own breakpoints
    assert_close(m(x), f(x))
    lo, hi = bp[:, :1].T, bp[:, -1:].T
    slope_left = (m(lo) - m(lo - 1.0))
    slope_right = (m(hi + 1.0) - m(hi))
    assert_close(slope_left, torch.full_like(lo, left))
    want = 2 * hi if right is None else torch.full_like(hi, right)  # relu2'(s) = 2s
    assert_close(slope_right, want)


@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("grid", ["default", "nonuniform", "per-channel"])
@pytest.mark.parametrize("name", FUNCS)
def test_match_error_is_the_measured_max_error(form, par, name, grid):
    """match_error is the largest error of the module's own output over every interval of the
    range (the jump form's left ends as limits from the right, restated by hand), and bounds
    the error the module shows on a dense sample of (s_1, s_m], within sampling."""
    f = NAMED[name][0]
    m = _module(form, par, name, grid)
    bp = m.breakpoints if m.breakpoints.dim() == 2 else m.breakpoints.expand(3, -1)
    worst = 0.0
    for c, s in enumerate(bp):
        one = torch.zeros(1, 3, dtype=torch.float64)
        for k, y in enumerate(_pieces(s), start=1):
            x = one.expand(len(y), -1).clone()
            x[:, c] = y
            out = m(x)[:, c]
            if form == "jump":  # the left end as the limit from the right of interval k
                out[0] = m.levels[c, k] * y[0]
            worst = max(worst, (out - f(y)).abs().max().item())
    assert m.match_error == pytest.approx(worst, abs=1e-12)
    dense = torch.stack([torch.linspace(s[0].item(), s[-1].item(), 40001, dtype=s.dtype)[1:]
                         for s in bp], dim=-1)
    shown = (m(dense) - f(dense)).abs().max().item()
    assert m.match_error - 1e-4 <= shown <= m.match_error + 1e-6  # sampling: (h / SAMPLES)^2


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
def test_piecewise_linear_functions_are_matched_exactly(form, par, name):
    m = _module(form, par, name)
    x = 3 * torch.randn(50, 3, dtype=torch.float64)
    assert_close(m(x), matching.FUNCTIONS[name](x))
    assert m.match_error < 1e-12


@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("cls,extra", [(tmaf.TridiagonalTMAF, ()), (tmaf.BandedTMAF, (2,))],
                         ids=["tridiagonal", "banded2"])
def test_only_the_diagonal_term_carries_the_fit(form, par, cls, extra):
    """Off-diagonal terms start at zero, so a banded TMAF computes the fit elementwise."""
    C = 5
    band = cls(C, *extra, breakpoints=_grid("per-channel", C), init="match", match="silu",
               form=form, parameterization=par, dtype=torch.float64, channel_dim=-1)
    diag = _module(form, par, "silu", "per-channel", C=C)
    lv = band.levels.detach()
    b = lv.shape[1] // 2
    assert torch.equal(lv[:, b], diag.levels.detach())
    assert not lv[:, :b].any() and not lv[:, b + 1:].any()
    x = 2 * torch.randn(20, C, dtype=torch.float64)
    assert_close(band(x), diag(x))
    assert band.match_error == diag.match_error


def test_fit_in_float32_reports_the_error_of_the_stored_levels():
    m = tmaf.DiagonalTMAF(8, init="match", match="gelu", form="continuous")
    m64 = tmaf.DiagonalTMAF(8, init="match", match="gelu", form="continuous", dtype=torch.float64)
    assert m.levels.dtype == torch.float32
    assert m.match_error == pytest.approx(m64.match_error, abs=1e-6)
    x = tmaf.DEFAULT_BREAKPOINTS[:, None].expand(-1, 8).contiguous()
    assert_close(m(x), Fn.gelu(x))


def test_callable_match_and_modules_are_not_registered():
    """A callable (here the module being replaced) fits as its name does; it is not a
    submodule, so it adds no parameters or state_dict keys."""
    f = torch.nn.PReLU(init=0.2)  # float32 parameter: evaluated in float32
    m = tmaf.DiagonalTMAF(4, init="match", match=f, form="continuous", channel_dim=-1)
    assert m.match is f
    assert list(m.state_dict()) == ["levels", "breakpoints"]
    assert len(list(m.children())) == 0 and len(list(m.parameters())) == 1
    x = 3 * torch.randn(30, 4)
    assert_close(m(x), f(x).detach())
    by_name = tmaf.DiagonalTMAF(4, init="match", match="gelu_tanh")
    by_call = tmaf.DiagonalTMAF(4, init="match", match=lambda x: Fn.gelu(x, approximate="tanh"))
    assert_close(by_call.levels, by_name.levels)
    assert "match=PReLU" in repr(m) and "init='match'" in repr(m)
    assert "match='gelu_tanh'" in repr(by_name)


@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
def test_reset_parameters_redoes_the_fit_and_state_dict_round_trips(form, par):
    m = _module(form, par, "mish", "per-channel")
    fresh = copy.deepcopy(m.state_dict())
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    m.reset_parameters()
    for k, v in fresh.items():
        assert torch.equal(m.state_dict()[k], v)
    other = tmaf.DiagonalTMAF(3, breakpoints=_grid("per-channel"), form=form,
                              parameterization=par, dtype=torch.float64, channel_dim=-1)
    other.load_state_dict(m.state_dict())
    x = 2 * torch.randn(10, 3, dtype=torch.float64)
    assert torch.equal(other(x), m(x))
    assert copy.deepcopy(m).match_error == m.match_error
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert torch.equal(again(x), m(x)) and again.match == "mish"


@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
def test_lazy_modules_fit_when_they_learn_C(form, par):
    lazy = tmaf.LazyTridiagonalTMAF(init="match", match="gelu", form=form, parameterization=par,
                                    channel_dim=-1)
    assert lazy.match_error is None
    x = torch.randn(4, 6)
    y = lazy(x)
    ref = tmaf.TridiagonalTMAF(6, init="match", match="gelu", form=form, parameterization=par,
                               channel_dim=-1)
    assert torch.equal(y, ref(x)) and lazy.match_error == ref.match_error


def test_factory_and_convert_pass_init_match():
    f = tmaf.get_act_layer("continuous_banded2", init="match", match="relu2")
    a = f(6)
    assert a.form == "continuous" and a.match == "relu2" and a.match_error == pytest.approx(0.0625)
    assert tmaf.create_act("diagonal", 4, init="match", match="silu").match_error > 0
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 3)
    before = model(x)
    tmaf.convert(model, "continuous_diagonal", activations=(torch.nn.GELU,), example_input=x,
                 init="match", match="gelu")
    assert isinstance(model[1], tmaf.DiagonalTMAF)
    assert (model(x) - before).abs().max() < 0.03
    lazy = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.SiLU())  # no example input
    want = lazy(x)
    tmaf.convert(lazy, "diagonal", activations=(torch.nn.SiLU,), channel_dim=-1, init="match",
                 match=torch.nn.SiLU())
    got = lazy(x)
    site = lazy[1]  # one call site: the TMAF itself (one state_dict layout)
    assert (got - want).abs().max() <= site.match_error + 1e-6
    assert "match" in tmaf.INITS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per-channel"])
def test_gradients_from_the_match_start_equal_the_literal_reference(backend, form, par,
                                                                    per_channel):
    """Output, input gradient and every parameter gradient of a tridiagonal TMAF started with
    init="match" equal the reference backend's, with a quarter of the inputs on breakpoints."""
    grads = {}
    for be in ("reference", backend):
        torch.manual_seed(3)
        m = _module(form, par, "gelu", "per-channel" if per_channel else "nonuniform",
                    cls=tmaf.TridiagonalTMAF, C=5, backend=be)
        m.channel_dim = 1
        x = input_on_breakpoints((3, 5, 4), 1, m.breakpoints, torch.float64).requires_grad_()
        g = torch.randn_like(x)
        y = m(x)
        y.backward(g)
        grads[be] = (y.detach(), x.grad, *(p.grad for p in m.parameters()))
    for a, b in zip(grads["reference"], grads[backend], strict=True):
        assert_close(b, a)


@pytest.mark.parametrize("form,par", FORMS, ids=FORM_IDS)
def test_fit_on_the_device_equals_the_cpu_fit(device, form, par):
    kw = dict(init="match", match="gelu_tanh", form=form, parameterization=par,
              breakpoints=_grid("per-channel", 4), dtype=torch.float64)
    here = tmaf.TridiagonalTMAF(4, device=device, **kw)
    cpu = tmaf.TridiagonalTMAF(4, **kw)
    for a, b in zip(here.parameters(), cpu.parameters(), strict=True):
        assert a.device.type == device.type
        assert_close(a.cpu(), b)
    assert here.match_error == pytest.approx(cpu.match_error, abs=1e-12)


def test_functions_not_zero_at_zero_warn():
    with pytest.warns(UserWarning, match="0.5 at 0"):
        m = tmaf.DiagonalTMAF(2, init="match", match="sigmoid", form="continuous")
    assert m.match_error >= 0.5 - 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tmaf.DiagonalTMAF(2, init="match", match="gelu")


@pytest.mark.parametrize("kw,exc,msg", [
    ({"init": "match"}, ValueError, "needs match="),
    ({"init": "match", "match": "gleu"}, ValueError, "unknown function to match 'gleu'.*gelu_tanh"),
    ({"init": "relu", "match": "gelu"}, ValueError, "only with init='match'"),
    ({"init": "match", "match": 3}, TypeError, "name or a callable"),
    ({"init": "match", "match": lambda x: x.sum()}, ValueError, "same shape"),
    ({"init": "match", "match": lambda x: torch.log(x)}, ValueError, "not finite"),
    ({"init": "macth"}, ValueError, "unknown init"),
])
def test_bad_input_is_a_clear_error(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        tmaf.DiagonalTMAF(3, **kw)
    with pytest.raises(exc, match=msg):
        tmaf.get_act_layer("continuous_diagonal", **kw)(3)
