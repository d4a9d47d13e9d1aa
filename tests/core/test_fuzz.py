"""Property-based fuzzing of every backend against the literal reference (hypothesis, derandomized):
random shapes (1-D to 4-D), layouts (contiguous, channels-last, strided, expanded), grids (shared
and per-channel; random, evenly spaced, near the native fast path's h/4 rule, far from 0, spans
up to the float32 range), specials (+-inf, NaN, -0.0, inputs on breakpoints), bands, both forms,
input/level/breakpoint dtypes and 1 or 2 threads; the output and every gradient of each backend
(native on every ISA this CPU runs, eager, and the compiled backend's formulation run uncompiled)
against the reference run in float64 on the same values.

Two modes: ``random`` (tolerances from the arithmetic's unit roundoff and the size of each sum),
and ``exact`` (every value on a dyadic lattice, so every product and sum is exact in float32:
the results must be the same bits as the reference's).

TMAF_FUZZ_EXAMPLES=N runs N examples per mode instead of the default (docs/library.md, "Testing").
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import tmaf
import tmaf.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("TMAF_FUZZ_EXAMPLES", "0")) or None
ISAS = tmaf.native_isas() if tmaf.native_available() else []
FORMS = ("jump", "continuous")


def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=True, database=None,
                    print_blob=True, suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ the cases


@st.composite
def cases(draw, exact: bool):
    """One call: x, breakpoints, levels, channel_dim, form and the upstream gradient."""
    ndim = draw(st.integers(1, 4))
    cd = draw(st.integers(0, ndim - 1))
    C = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    shape = [draw(st.integers(1, 5)) for _ in range(ndim)]
    shape[cd] = C
    m = draw(st.sampled_from([1, 2, 3, 5, 9, 16, 17, 31, 40]))
    per_channel = draw(st.booleans())
    form = draw(st.sampled_from(FORMS))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if exact:  # the dyadic lattice: x in 1/8, breakpoints in 1/4, levels and g in 1/8, small
        xdt = lvdt = bpdt = draw(st.sampled_from([torch.float32, torch.float64]))
        grid = _lattice_grid(gen, C if per_channel else 1, m)
        kind, levels_scale = "lattice", 1.0
    else:
        xdt = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]))
        lvdt = draw(st.sampled_from([torch.float32, torch.float64]))
        bpdt = draw(st.sampled_from([torch.float32, torch.float64]))
        kind = draw(st.sampled_from(["random", "linspace", "near-uniform", "far", "wide"]))
        grid = _grid(gen, kind, C if per_channel else 1, m, bpdt)
        if grid is None:
            hypothesis.assume(False)
        levels_scale = 1.0 if kind != "wide" else 0.5
    if kind == "wide":  # spans near the float32 range: one term a channel, the jump form, so no
        form, b = "jump", 0  # float32 sum or intercept can overflow where float64 does not
    else:
        b = draw(st.integers(0, C - 1))
    bp = grid[0] if not per_channel else grid
    x = _input(gen, draw, shape, cd, bp, exact, kind)
    lv = _levels(gen, C, b, m, exact) * levels_scale
    g = _upstream(gen, shape, exact)
    if kind == "wide":  # level-gradient sums of g x stay inside the float32 range (as in float64)
        g = g * 1e-3
    g = g.to(xdt)  # the values both sides use
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided", "expanded"]))
    return dict(x=_layout(x.to(xdt), cd, layout), bp=bp.to(bpdt), lv=lv.to(lvdt), cd=cd, form=form,
                g=g, threads=draw(st.sampled_from([1, 2])), desc=f"{kind} {layout} m={m} b={b}")


def _lattice_grid(gen, rows, m):
    """Distinct multiples of 1/4 in [-8, 8], sorted, per row."""
    return torch.stack([torch.randperm(65, generator=gen)[:m].sort().values.double() / 4 - 8
                        for _ in range(rows)])


def _grid(gen, kind, rows, m, dtype):
    """(rows, m) strictly increasing in ``dtype`` (float64 values), or None."""
    h = 1.0
    if kind == "random":
        scale = 10 ** (6 * torch.rand((), generator=gen).item() - 3)
        g = torch.randn(rows, m, generator=gen, dtype=torch.float64).sort(-1).values * scale
    elif kind == "linspace":
        stretch = 1 + torch.rand(rows, 1, generator=gen, dtype=torch.float64)
        g = torch.linspace(-2, 2, m, dtype=torch.float64).expand(rows, m) * stretch
    elif kind == "near-uniform":  # each point moved by 0.15..0.35 h: both sides of the h/4 rule
        h = 4.0 / max(m - 1, 1)
        size = 0.15 + 0.2 * torch.rand(rows, m, generator=gen, dtype=torch.float64)
        sign = torch.where(torch.rand(rows, m, generator=gen) < 0.5, -1.0, 1.0).double()
        jit = size * sign * h
        jit[:, 0] = 0.0
        jit[:, -1] = 0.0
        g = torch.linspace(-2, 2, m, dtype=torch.float64) + jit
    elif kind == "far":
        g = 1000 + torch.linspace(-2, 2, m, dtype=torch.float64).expand(rows, m) * 1e-3
    else:  # "wide": evenly spaced over most of the float32 range (spans beyond FLT_MAX)
        lo = -3e38 * (0.5 + 0.5 * torch.rand(rows, 1, generator=gen, dtype=torch.float64))
        g = lo + (torch.linspace(0, 1, m, dtype=torch.float64) * (3e38 - lo))
    g = g.to(dtype).double().contiguous()
    if m > 1 and not bool((g.diff(dim=-1) > 0).all()):
        return None
    return g if bool(torch.isfinite(g.to(dtype)).all()) else None


def _input(gen, draw, shape, cd, bp, exact, kind):
    if exact:
        x = torch.randint(-80, 81, shape, generator=gen).double() / 8
    else:
        lo, hi = bp.min().item(), bp.max().item()
        span = hi - lo if hi > lo else 1.0
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * span * 1.4 + lo - 0.2 * span
        if kind == "wide":
            x = x.clamp(-3.3e38, 3.3e38)
        else:
            near0 = torch.randn(shape, generator=gen, dtype=torch.float64)
            x = torch.where(torch.rand(shape, generator=gen) < 0.2, near0, x)
    grid = (bp if bp.dim() == 2 else bp.expand(shape[cd], -1)).double()
    xm = x.movedim(cd, -1)
    pick = torch.randint(0, grid.shape[1], xm.shape, generator=gen)
    on = grid[torch.arange(shape[cd]).expand_as(pick), pick]
    xm = torch.where(torch.rand(xm.shape, generator=gen) < 0.25, on, xm)  # ties
    flat = xm.reshape(-1)
    for v in draw(st.lists(st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 1e30, -1e30]),
                           max_size=3)):
        if exact and abs(v) == 1e30:
            continue
        flat[int(torch.randint(0, flat.numel(), (), generator=gen))] = v
    return xm.movedim(-1, cd).contiguous()


def _levels(gen, C, b, m, exact):
    shape = (C, 2 * b + 1, m + 1)
    lv = (torch.randint(-16, 17, shape, generator=gen).double() / 8 if exact
          else torch.randn(shape, generator=gen, dtype=torch.float64))
    return torch.where(torch.rand(shape, generator=gen) < 0.15, 0.0, lv)  # zero levels


def _upstream(gen, shape, exact):
    return (torch.randint(-16, 17, shape, generator=gen).double() / 8 if exact
            else torch.randn(shape, generator=gen, dtype=torch.float64))


def _layout(x, cd, layout):
    if layout == "channels_last":
        return x.movedim(cd, -1).contiguous().movedim(-1, cd)
    if layout == "strided":
        return torch.cat([x, x], dim=0)[::2]
    if layout == "expanded":  # a broadcast view: one row repeated along the first non-channel dim
        dims = [d for d in range(x.dim()) if d != cd]
        if not dims:
            return x
        return x.narrow(dims[0], 0, 1).expand_as(x)
    return x


# ---------------------------------------------------------------------------- the checks


def _run(backend, case, x, bp, lv, g):
    x = x.detach().requires_grad_()
    lv = lv.detach().clone().requires_grad_()
    y = F.banded_tmaf(x, bp, lv, case["cd"], backend, form=case["form"])
    y.backward(g.to(y.dtype))
    return y.detach(), x.grad, lv.grad


def _runs(case):
    """(name, output, grad input, grad levels) of every fast backend, in the case's dtypes."""
    x, bp, lv, g = case["x"], case["bp"], case["lv"], case["g"]
    prev_threads, prev_env = torch.get_num_threads(), os.environ.get("TMAF_DISABLE_COMPILE")
    torch.set_num_threads(case["threads"])
    try:
        for isa in ISAS:
            prev = tmaf.set_native_isa(isa)
            try:
                yield (f"native-{isa}", *_run("native", case, x, bp, lv, g))
            finally:
                tmaf.set_native_isa(prev)
        yield ("eager", *_run("eager", case, x, bp, lv, g))
        os.environ["TMAF_DISABLE_COMPILE"] = "1"  # the compiled backend's formulation, uncompiled
        yield ("compiled-formulation", *_run("compiled", case, x, bp, lv, g))
    finally:
        torch.set_num_threads(prev_threads)
        if prev_env is None:
            os.environ.pop("TMAF_DISABLE_COMPILE", None)
        else:
            os.environ["TMAF_DISABLE_COMPILE"] = prev_env


def _reference(case):
    x, bp, lv, g = (case[k].double() for k in ("x", "bp", "lv", "g"))
    return _run("reference", case, x, bp, lv, g)


def _band_max(t, cd, b):
    """max over |d| <= b of |t| at channel i + d (finite values), channels on ``cd``."""
    a = torch.where(torch.isfinite(t), t.abs(), 0.0)
    out, C = a.clone(), t.shape[cd]
    for d in range(1, b + 1):
        if d >= C:
            break
        out.narrow(cd, 0, C - d).copy_(torch.maximum(out.narrow(cd, 0, C - d), a.narrow(cd, d, C - d)))
        out.narrow(cd, d, C - d).copy_(torch.maximum(out.narrow(cd, d, C - d), a.narrow(cd, 0, C - d)))
    return out


def _assert_close(name, got, want, bound, desc):
    """Same non-finite values; finite ones within ``bound`` (elementwise) of the reference's
    result rounded to the fast path's dtype (which may overflow to +-inf there)."""
    want = want.to(got.dtype).double()
    got = got.double()
    assert got.shape == want.shape, (name, desc)
    fin = torch.isfinite(want)
    same = torch.isnan(got) == torch.isnan(want)
    same &= torch.where(torch.isinf(want), got == want, True)
    assert bool(same.all()), f"{name} {desc}: non-finite values differ:\n{got}\n{want}"
    err = torch.where(fin, (got - want).abs(), 0.0)
    bad = err > torch.where(fin, bound, 0.0)
    assert not bool(bad.any()), (f"{name} {desc}: {int(bad.sum())} values off, worst "
                                 f"{float(err.max()):.3g} (allowed {float(bound.min()):.3g}..)")


def _unit(dtype):
    return {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8,
            torch.float16: 2.0 ** -11}[dtype]


def _check_random(case):
    """Tolerances from the arithmetic: each output and input-gradient entry is a sum of 2b+1
    terms (plus, continuous, an intercept of up to m products with the breakpoints); each
    level-gradient entry a sum over the N positions of one channel."""
    x, bp, lv, cd = case["x"], case["bp"], case["lv"], case["cd"]
    C, b, m = x.shape[cd], lv.shape[1] // 2, bp.shape[-1]
    compute = torch.promote_types(torch.promote_types(torch.promote_types(x.dtype, lv.dtype), bp.dtype),
                                  torch.float32)
    eps = 8 * _unit(compute)
    cont = case["form"] == "continuous"
    L, B = float(lv.double().abs().max()), float(bp.double().abs().max())
    ref = _reference(case)
    xd, gd = x.double(), case["g"].double()
    x_mag = _band_max(xd, cd, b) + (2 * m + 1) * B * cont
    # outputs and input gradients are rounded to x's dtype (float16/bfloat16: from float32 by
    # the fast paths, from float64 by the reference: one unit each)
    bounds = (eps * (2 * b + 2) * L * x_mag + 2 * _unit(x.dtype) * ref[0].abs(),
              eps * (2 * b + 2) * L * _band_max(gd, cd, b) + 2 * _unit(x.dtype) * ref[1].abs())
    N = x.numel() // max(C, 1)
    Xf = float(torch.where(torch.isfinite(xd), xd.abs(), 0.0).max()) if x.numel() else 0.0
    G = float(gd.abs().max()) if x.numel() else 0.0
    level_bound = 2 * eps * N * G * (Xf + 2 * m * B * cont) + _unit(lv.dtype) * ref[2].abs()
    for name, *fast in _runs(case):
        for what, a, r, bound in zip(("output", "grad input", "grad levels"), fast, ref,
                                     (*bounds, level_bound), strict=True):
            _assert_close(f"{name} {what}", a, r, bound, case["desc"])


def _check_exact(case):
    ref = _reference(case)
    for name, *fast in _runs(case):
        for what, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
            assert torch.equal(a.double().nan_to_num(7.5), r.to(a.dtype).double().nan_to_num(7.5)), (
                f"{name} {what} {case['desc']}: not the same bits as the reference\n{a}\n{r}")
            assert torch.equal(a.isnan(), r.isnan()), (name, what, case["desc"])


@_settings(default=80)
@given(cases(exact=False))
def test_fuzz_every_backend_matches_the_reference(case):
    _check_random(case)


@_settings(default=50)
@given(cases(exact=True))
def test_fuzz_exact_on_a_dyadic_lattice(case):
    _check_exact(case)
