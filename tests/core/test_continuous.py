"""The continuous form (docs/method.md section 6): the intercept table, every fast path (eager,
compiled, native on every instruction set) against the literal integral on outputs and every
gradient with inputs on breakpoints, gradcheck in float64, opcheck, the non-finite rules in every
backend, thread-count determinism, the modules, the factory names, convert and calibrate."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_close
from helpers import BP, C, breakpoints, input_on_breakpoints, levels
from helpers import SHAPES as BASE_SHAPES
from torch import nn

import tmaf
import tmaf.functional as F
from tmaf._continuous import intercepts

NATIVE = tmaf.native_available()
FAST = ["eager"] + (["native"] if NATIVE else [])
ISAS = tmaf.native_isas() if NATIVE else []

SHAPES = {**BASE_SHAPES,
          "NC-wide": ((9, 37), 1),       # several channel vectors, ragged tail (columns kernels)
          "NCHW-wide": ((2, 37, 5, 7), 1)}


def run(backend, x, bp, lv, cd, g):
    x = x.detach().clone().requires_grad_()
    lv = lv.detach().clone().requires_grad_()
    y = F.banded_tmaf(x, bp, lv, cd, backend=backend, form="continuous")
    y.backward(g)
    return y.detach(), x.grad, lv.grad


def _integral(t: float, slopes: list[float], bp: list[float]) -> float:
    """F(t) = integral_0^t a_{k(u)} du by the definition, one interval at a time."""
    edges = [-math.inf, *bp, math.inf]
    total = 0.0
    for k, a in enumerate(slopes):
        lo, hi = edges[k], edges[k + 1]
        total += a * (min(max(t, lo), hi) - min(max(0.0, lo), hi))
    return total


# ------------------------------------------------------------------------ the definition


def test_matches_the_integral_by_hand():
    """Hand-built slopes on a grid with 0 inside an interval; F(0) = 0 and continuity."""
    bp = [-1.0, 0.5, 2.0]
    slopes = [3.0, -1.0, 2.0, 0.5]
    lv = torch.tensor(slopes, dtype=torch.float64).view(1, 1, 4)
    t = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.5, 1.0, 2.0, 5.0], dtype=torch.float64)
    for backend in ["reference", *FAST]:
        y = F.banded_tmaf(t.view(-1, 1), torch.tensor(bp, dtype=torch.float64), lv, 1,
                          backend=backend, form="continuous").view(-1)
        want = torch.tensor([_integral(v, slopes, bp) for v in t.tolist()], dtype=torch.float64)
        torch.testing.assert_close(y, want, atol=1e-12, rtol=0, msg=backend)


def test_intercepts_make_every_term_continuous_and_zero_at_zero():
    bp = breakpoints(C, True, torch.float64) - 0.3  # per channel, 0 inside an interval
    lv = levels(C, 1, len(BP), torch.float64)
    c = intercepts(bp, lv)
    b = 1
    for i in range(C):
        for d in range(-b, b + 1):
            j = i + d
            if not 0 <= j < C:
                continue
            a, ci, s = lv[i, d + b], c[i, d + b], bp[j]
            # continuity at every breakpoint: a_k s_k + c_k = a_{k+1} s_k + c_{k+1}
            torch.testing.assert_close(a[:-1] * s + ci[:-1], a[1:] * s + ci[1:])
            z = int((s < 0).sum())
            assert ci[z] == 0  # F = a_z t on the interval of 0


@pytest.mark.parametrize("init", ["relu", "identity", "leaky_relu"])
def test_starts_have_exactly_zero_intercepts(init):
    for b, per_channel in [(0, False), (1, True), (2, False)]:
        layer = tmaf.BandedTMAF(C, b, breakpoints(C, per_channel, torch.float32), init=init,
                                form="continuous")
        c = intercepts(layer.breakpoints, layer.levels.detach())
        assert torch.equal(c, torch.zeros_like(c)) and not torch.signbit(c).any()


def test_continuous_differs_from_jump_only_by_the_intercepts():
    bp = breakpoints(C, False, torch.float64)
    lv = levels(C, 1, len(BP), torch.float64)
    x = input_on_breakpoints((4, C, 3), 1, bp, torch.float64)
    jump = F.banded_tmaf(x, bp, lv, 1)
    cont = F.banded_tmaf(x, bp, lv, 1, form="continuous")
    assert not torch.allclose(jump, cont)
    lv_flat = lv.clone()
    lv_flat[:] = 0.7  # one slope everywhere: no jump to remove, the forms agree
    torch.testing.assert_close(F.banded_tmaf(x, bp, lv_flat, 1),
                               F.banded_tmaf(x, bp, lv_flat, 1, form="continuous"))


# ---------------------------------------------------------------- fast paths vs the integral


@pytest.mark.parametrize("b", [0, 1, 2, "full"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", FAST)
def test_fast_matches_reference(b, per_channel, shape, dtype, backend):
    shp, cd = SHAPES[shape]
    Cs = shp[cd]
    b = Cs - 1 if b == "full" else min(b, Cs - 1)
    bp = breakpoints(Cs, per_channel, dtype)
    x = input_on_breakpoints(shp, cd, bp, dtype)  # a quarter of the inputs tie a breakpoint
    lv = levels(Cs, b, len(BP), dtype)
    g = torch.randn_like(x)
    ref = run("reference", x.double(), bp.double(), lv.double(), cd, g.double())
    fast = run(backend, x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        assert a.dtype == dtype and a.shape == r.shape, name
        assert_close(a.double(), r, dtype=dtype, msg=f"{backend} {name} b={b} {shape}")


@pytest.fixture(params=ISAS)
def isa(request):
    prev = tmaf.set_native_isa(request.param)
    yield request.param
    tmaf.set_native_isa(prev)


@pytest.mark.skipif(not NATIVE, reason="the native operators are not built")
@pytest.mark.parametrize("m", [1, 9, 17, 20, 40])  # specialised variants and the any-m kernel
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("b", [0, 1])
def test_native_every_isa_and_layout(isa, m, layout, b):
    Cs, cd = 19, 1
    bp = (torch.sort(torch.randn(Cs, m, dtype=torch.float64), dim=-1).values * 1.5).float()
    x = input_on_breakpoints((4, Cs, 3, 5), cd, bp, torch.float32)
    if layout == "channels_last":
        x = x.movedim(cd, -1).contiguous().movedim(-1, cd)
    elif layout == "strided":
        x = torch.cat([x, x], dim=0)[::2]
    lv = levels(Cs, b, m, torch.float32)
    g = torch.randn_like(x)
    ref = run("reference", x.double(), bp.double(), lv.double(), cd, g.double())
    fast = run("native", x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        torch.testing.assert_close(a.double(), r, atol=2e-5, rtol=2e-5,
                                   msg=lambda s, name=name: f"{isa} m={m} {layout} {name}: {s}")


@pytest.mark.slow
@pytest.mark.parametrize("b, cd, shape", [(0, 1, (3, C, 4)), (1, -1, (3, 4, C))])
def test_compiled_matches_reference(b, cd, shape):
    bp = breakpoints(C, True, torch.float32)
    x = input_on_breakpoints(shape, cd, bp, torch.float32)
    lv = levels(C, b, len(BP))
    g = torch.randn_like(x)
    ref = run("reference", x.double(), bp.double(), lv.double(), cd, g.double())
    fast = run("compiled", x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        assert_close(a.double(), r, dtype=torch.float32, msg=f"compiled {name}")


@pytest.mark.parametrize("backend", ["reference", *FAST])
@pytest.mark.parametrize("b", [0, 1])
def test_gradcheck(backend, b):
    bp = breakpoints(4, True, torch.float64)
    x = (torch.randn(3, 4, 2, dtype=torch.float64) * 1.5).requires_grad_()  # off the breakpoints
    lv = levels(4, b, len(BP), torch.float64).requires_grad_()
    fn = lambda x, lv: F.banded_tmaf(x, bp, lv, 1, backend=backend, form="continuous")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, lv))


@pytest.mark.skipif(not NATIVE, reason="the native operators are not built")
@pytest.mark.parametrize("cd, shape", [(1, (3, 6, 4)), (-1, (2, 3, 6)), (1, (5, 6))])
@pytest.mark.parametrize("b", [0, 1])
def test_opcheck(cd, shape, b):
    x = torch.randn(shape, requires_grad=True)
    bp = breakpoints(6, True, torch.float32)
    lv = levels(6, b, len(BP)).requires_grad_()
    torch.library.opcheck(torch.ops.tmaf.banded_cont_fwd, (x, bp, lv, cd))
    torch.library.opcheck(torch.ops.tmaf.banded_cont_bwd,
                          (torch.randn(shape), x.detach(), bp, lv.detach(), cd))


@pytest.mark.skipif(not NATIVE, reason="the native operators are not built")
@pytest.mark.parametrize("shape, cd", [((16, 12, 40, 40), 1), ((3000, 96), 1), ((8, 20, 20, 12), -1)])
@pytest.mark.parametrize("b", [0, 1])
def test_native_level_gradient_is_bit_identical_for_any_thread_count(shape, cd, b):
    torch.manual_seed(1)
    x = torch.randn(shape)
    lv0 = levels(shape[cd], b, 9)
    g = torch.randn(shape)
    grads, prev = [], torch.get_num_threads()
    try:
        for threads in (1, 2, 3, 4, 1):
            torch.set_num_threads(threads)
            lv = lv0.clone().requires_grad_()
            F.banded_tmaf(x, tmaf.DEFAULT_BREAKPOINTS, lv, cd, backend="native",
                          form="continuous").backward(g)
            grads.append(lv.grad)
    finally:
        torch.set_num_threads(prev)
    for grad in grads[1:]:
        assert torch.equal(grad, grads[0])


# --------------------------------------------------------------------- non-finite inputs

SPECIAL = [-math.inf, -2.0, -0.0, 0.0, 1e-30, 0.5, 2.0, 7.0, math.inf, math.nan]


@pytest.mark.parametrize("backend", ["reference", *FAST])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_relu_identity_and_leaky_starts_are_exact_non_finite_included(backend, dtype):
    x = torch.tensor(SPECIAL, dtype=dtype).repeat(6, 1).T.reshape(-1, 6).contiguous()
    expect = {"relu": torch.relu(x), "identity": x,
              "leaky_relu": nn.functional.leaky_relu(x, 0.125)}
    for init, want in expect.items():
        for cls in (tmaf.DiagonalTMAF, tmaf.TridiagonalTMAF):
            layer = cls(6, init=init, negative_slope=0.125, backend=backend,
                        form="continuous").to(dtype)
            y = layer(x)
            torch.testing.assert_close(y, want, rtol=0, atol=0, equal_nan=True,
                                       msg=lambda s, c=cls, i=init: f"{c.__name__} {i}: {s}")


@pytest.mark.parametrize("backend", FAST)
def test_non_finite_gradients_follow_the_reference(backend):
    """+-inf and NaN with slope-0 intervals: output, input gradient and level gradient (the
    zero-level rule drops a_k * inf, a NaN input makes every level gradient of its terms NaN)."""
    x = torch.tensor(SPECIAL, dtype=torch.float64).view(-1, 1).expand(-1, 4).contiguous()
    x[:, 3] = torch.linspace(-3, 3, x.shape[0], dtype=torch.float64)  # a finite channel
    for b in (0, 1):
        layer = tmaf.BandedTMAF(4, b, form="continuous").double()
        with torch.no_grad():
            layer.levels[..., -1] = 0.0  # slope 0 on the last interval: 0 * inf
            layer.levels[:, :, 3] = 2.5
        lv = layer.levels.detach()
        g = torch.randn_like(x)
        ref = run("reference", x, layer.breakpoints, lv, 1, g)
        fast = run(backend, x, layer.breakpoints, lv, 1, g)
        for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
            torch.testing.assert_close(a, r, equal_nan=True, msg=lambda s, n=name, b=b: f"b={b} {n}: {s}")
        if b == 0:  # channel 0 read a NaN: all its level gradients; channel 3 is finite
            assert ref[2][0].isnan().all() and ref[2][3].isfinite().all()


# ------------------------------------------------------------------- modules and factory


def test_modules_take_the_form_and_show_it():
    for layer in (tmaf.DiagonalTMAF(4, form="continuous"), tmaf.TridiagonalTMAF(4, form="continuous"),
                  tmaf.BandedTMAF(4, 2, form="continuous"), tmaf.LazyDiagonalTMAF(form="continuous"),
                  tmaf.LazyBandedTMAF("full", form="continuous")):
        x = torch.randn(3, 4, 2)
        assert torch.equal(layer(x), torch.relu(x))
        assert layer.form == "continuous" and "form='continuous'" in repr(layer)
    assert "form" not in repr(tmaf.DiagonalTMAF(4))


def test_bad_form_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown form 'smooth'; expected one of \('jump', 'continuous'\)"):
        tmaf.DiagonalTMAF(4, form="smooth")
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="unknown form"):
        F.banded_tmaf(x, tmaf.DEFAULT_BREAKPOINTS, torch.zeros(4, 1, 10), 1, form="linear")
    with pytest.raises(ValueError, match="is the continuous form"):
        tmaf.get_act_layer("continuous_diagonal", form="jump")


@pytest.mark.parametrize("name, cls, b", [("continuous_diagonal", tmaf.DiagonalTMAF, 0),
                                          ("continuous_tridiagonal", tmaf.TridiagonalTMAF, 1),
                                          ("continuous_banded2", tmaf.BandedTMAF, 2),
                                          ("continuous_full", tmaf.BandedTMAF, 5)])
def test_factory_names(name, cls, b):
    layer = tmaf.create_act(name, 6)
    assert type(layer) is cls and layer.bandwidth == b and layer.form == "continuous"
    assert tmaf.factory.is_tmaf_name(name)
    lazy = tmaf.factory.create_lazy_tmaf(name)
    lazy(torch.randn(2, 6))
    assert lazy.form == "continuous" and lazy.bandwidth == b
    assert not tmaf.factory.is_tmaf_name("continuous_relu")
    with pytest.raises(ValueError, match="unknown activation 'continuous_relu'"):
        tmaf.get_act_layer("continuous_relu")


def test_curves_are_the_continuous_terms():
    torch.manual_seed(3)
    layer = tmaf.TridiagonalTMAF(4, init="random", form="continuous").double()
    y = torch.linspace(-3, 3, 601, dtype=torch.float64)
    curves = layer.curves(y)  # (C, 3, G)
    assert curves.shape == (4, 3, 601)
    h = float(y[1] - y[0])
    assert (curves.diff(dim=-1).abs() <= 1.01 * layer.levels.abs().max() * h).all()  # no jumps
    i = 1  # the diagonal term on its own equals the layer with the off-diagonals zeroed
    diag = layer.levels.detach().clone()
    diag[:, 0] = diag[:, 2] = 0
    out = F.banded_tmaf(y.view(-1, 1).expand(-1, 4), layer.breakpoints, diag, 1, form="continuous")
    torch.testing.assert_close(curves[:, 1].T, out)
    assert curves[0, 0].abs().max() == 0  # out of the band
    assert i == 1


def test_convert_and_param_groups():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    tmaf.convert(model, "continuous_tridiagonal", example_input=torch.randn(2, 3))
    assert model[1].form == "continuous" and model[1].bandwidth == 1
    groups = tmaf.param_groups(model)
    assert [g.get("name") for g in groups][-1] == "tmaf"


def test_calibrate_refuses_the_continuous_form_clearly():
    model = nn.Sequential(nn.Linear(3, 8), tmaf.DiagonalTMAF(8, form="continuous"))
    with pytest.raises(NotImplementedError, match="form='continuous'"):
        tmaf.calibrate(model, torch.randn(16, 3))


@pytest.mark.skipif(not NATIVE, reason="the native operators are not built")
def test_export_keeps_the_continuous_op():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), tmaf.DiagonalTMAF(8, init="random", form="continuous"),
                          nn.Linear(8, 1)).eval()
    x = torch.randn(4, 6)
    ep = torch.export.export(model, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert "tmaf.banded_cont_fwd.default" in targets, targets
    torch.testing.assert_close(ep.module()(x), model(x))


def test_saves_only_the_input_for_backward_on_the_native_path():
    if not NATIVE:
        pytest.skip("the native operators are not built")
    x = torch.randn(4, 8, 5, requires_grad=True)
    act = tmaf.DiagonalTMAF(8, form="continuous")
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        act(x).sum().backward()
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1


@pytest.mark.parametrize("backend", ["eager", "compiled", *(["native"] if NATIVE else [])])
def test_float64_breakpoints_give_float64_arithmetic_to_float32_levels(backend):
    """float64 breakpoints make the arithmetic float64 (docs/method.md section 4): the level
    gradient's two parts (g t summed, and g summed through the intercepts), which cancel on a
    grid far from 0, meet in float64 and are rounded to float32 once, as the reference's."""
    torch.manual_seed(0)
    bp = 1000 + torch.linspace(-2, 2, 9, dtype=torch.float64) * 1e-3
    x = (1000 + torch.randn(4000, 3, dtype=torch.float64) * 2e-3).float()
    lv, g = torch.randn(3, 3, 10), torch.randn(4000, 3)

    def level_grad(be):
        lvr = lv.clone().requires_grad_()
        F.banded_tmaf(x, bp, lvr, 1, be, form="continuous").backward(g)
        return lvr.grad

    want = level_grad("reference")
    assert want.dtype == torch.float32
    # one rounding of the float64 result: within 1 float32 ulp of the reference's rounding
    torch.testing.assert_close(level_grad(backend), want, rtol=2.4e-7, atol=0.0)
