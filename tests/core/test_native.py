"""The native operators (tmaf._C): every kernel variant against the literal reference, on outputs
and every gradient, for every instruction set this CPU runs; opcheck; determinism across thread
counts; torch.compile / torch.export with the operator opaque; the fallback when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import assert_close
from helpers import (
    BP,
    GRID_KINDS,
    breakpoints,
    grid_by_spacing,
    input_near_breakpoints,
    input_on_breakpoints,
    levels,
    run,
)
from torch import nn

import tmaf
import tmaf.functional as F

pytestmark = pytest.mark.skipif(not tmaf.native_available(), reason=tmaf.native_status())

ISAS = tmaf.native_isas() if tmaf.native_available() else []


@pytest.fixture(params=ISAS)
def isa(request):
    prev = tmaf.set_native_isa(request.param)
    yield request.param
    tmaf.set_native_isa(prev)


def _layout(x: torch.Tensor, cd: int, layout: str) -> torch.Tensor:
    """The same values in another memory arrangement: channels innermost, or not dense at all."""
    if layout == "channels_last":
        return x.movedim(cd, -1).contiguous().movedim(-1, cd)
    if layout == "strided":
        return torch.cat([x, x], dim=0)[::2]  # every other row: no dense layout
    return x


def _check(x, bp, lv, cd, msg, dtype=None):
    """Native vs the reference run in float64 on the same values (float32 inputs and breakpoints
    are exact in float64, so every interval is the same; long float32 sums are not)."""
    g = torch.randn_like(x)
    ref = run("reference", x.double(), bp.double(), lv.double(), cd, g.double())
    fast = run("native", x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        assert a.shape == r.shape, f"{name} {msg}"
        if name == "grad levels" and a.dtype == torch.float32:
            # a float32 sum of n = numel / C terms: rounding grows like sqrt(n) (n = 60000: 1.5e-4)
            n = x.numel() / x.shape[cd]
            tol = 1e-5 * max(1.0, n ** 0.5 / 16)
            torch.testing.assert_close(a.double(), r, atol=tol, rtol=tol, msg=f"{name} {msg}")
            continue
        assert_close(a.double(), r, dtype=dtype or a.dtype, msg=f"{name} {msg}")
    assert fast[0].dtype == x.dtype and fast[1].dtype == x.dtype and fast[2].dtype == lv.dtype
    return fast


C = 5
SHAPES = {  # (shape, channel_dim)
    "NC": ((7, C), 1),
    "NCL": ((3, C, 6), 1),
    "NCHW": ((2, C, 3, 4), 1),
    "NLC": ((3, 6, C), -1),
    "C": ((C,), 0),
    "NCHW-wide": ((2, 37, 5, 7), 1),     # several vectors per row, ragged tails
    "NC-wide": ((9, 37), 1),              # several channel vectors, ragged tail
    "NC-long": ((3, 2, 20000), 1),        # inner blocks
}


@pytest.mark.parametrize("b", [0, 1, 2, "full"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_matches_reference(isa, b, per_channel, shape, dtype):
    shp, cd = SHAPES[shape]
    Cs = shp[cd]
    b = Cs - 1 if b == "full" else min(b, Cs - 1)
    bp = breakpoints(Cs, per_channel, dtype)
    x = input_on_breakpoints(shp, cd, bp, dtype)  # a quarter of the inputs tie a breakpoint
    _check(x, bp, levels(Cs, b, len(BP), dtype), cd, f"{isa} b={b} per_channel={per_channel} {shape}")


@pytest.mark.parametrize("m", [1, 3, 9, 17, 20, 31, 40])  # specialised (1, 5, 9, 17), any-m: one
# level register (m < 16), two (16..31), generic (m > 31)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("b", [0, 1])
def test_native_breakpoint_counts_and_layouts(isa, m, layout, b):
    C, cd = 19, 1
    bp = torch.sort(torch.randn(C, m, dtype=torch.float64), dim=-1).values * 1.5
    x = _layout(input_on_breakpoints((4, C, 3, 5), cd, bp, torch.float32), cd, layout)
    _check(x, bp.float(), levels(C, b, m), cd, f"{isa} m={m} {layout} b={b}")


@pytest.mark.parametrize("m", [2, 9, 16, 17, 31])  # one breakpoint register (m < 16), two
@pytest.mark.parametrize("kind", GRID_KINDS)
@pytest.mark.parametrize("b", [0, 1])
@pytest.mark.parametrize("form", ["jump", "continuous"])
def test_native_grids_by_spacing(isa, m, kind, b, form):
    """Evenly spaced grids (indexed at once by the avx512 channels-outer forwards) and grids just
    past the rule (compare chains), on ties, float neighbours of breakpoints and non-finite
    input, both forms: outputs and every gradient against the reference."""
    C, cd = 6, 1
    bp = grid_by_spacing(kind, C, m)
    x = input_near_breakpoints((3, C, 2, 21), cd, bp)
    lv = levels(C, b, m)
    lv[1, :, 2] = 0.0  # zero levels: the zero-level rule at +-inf
    g = torch.randn_like(x)

    def run_form(backend, x, bp, lv):
        x, lv = x.detach().clone().requires_grad_(), lv.detach().clone().requires_grad_()
        y = F.banded_tmaf(x, bp, lv, cd, backend=backend, form=form)
        y.backward(g.to(x.dtype))
        return y.detach(), x.grad, lv.grad

    ref = run_form("reference", x.double(), bp, lv.double())
    fast = run_form("native", x, bp.float(), lv)
    # the continuous form's output a x + c and level gradient (g x summed, g s subtracted through
    # the intercepts) cancel float32 terms the size of the breakpoints (1000 on the far-offset grid)
    scale = max(1.0, bp.abs().max().item()) if form == "continuous" else 1.0
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        tol = 2e-5 * (1.0 if name == "grad input" else scale)
        torch.testing.assert_close(a.double(), r, atol=tol, rtol=2e-5, equal_nan=True,
                                   msg=lambda s, name=name: f"{isa} {form} m={m} {kind} b={b} {name}: {s}")


@pytest.mark.parametrize("op", ["banded_fwd", "banded_cont_fwd"])
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_forward_is_the_same_bits_on_every_isa(op, kind):
    """The computed index (evenly spaced grids, avx512 and avx2) selects the level the compare
    chains select (the portable kernel): forwards agree bit for bit, NaN where NaN."""
    for m, b in ((2, 0), (9, 0), (9, 1), (17, 0), (31, 1)):
        bp = grid_by_spacing(kind, 6, m)
        x = input_near_breakpoints((3, 6, 2, 21), 1, bp)
        lv = levels(6, b, m)
        outs = {}
        for isa in ISAS:
            prev = tmaf.set_native_isa(isa)
            try:
                outs[isa] = getattr(torch.ops.tmaf, op)(x, bp.float(), lv, 1)
            finally:
                tmaf.set_native_isa(prev)
        for isa, y in outs.items():
            assert torch.equal(y.isnan(), outs["default"].isnan()), f"{isa} m={m} b={b}"
            assert torch.equal(y.nan_to_num(0.0), outs["default"].nan_to_num(0.0)), f"{isa} m={m} b={b}"


@pytest.fixture(params=["transpose", "index", "chain"])
def cols_lookup(request, monkeypatch):
    """The columns layout's banded level lookup: 8 x 8 tiles turned into one channel per vector
    and a register shuffle per term (float with avx2, m + 1 <= 16, 1 <= b <= 3; the chains
    elsewhere), the per-lane index and a gather per term, or the blocked tables' compare chains
    (TMAF_COLS_LOOKUP, read at every call)."""
    monkeypatch.setenv("TMAF_COLS_LOOKUP", request.param)
    return request.param


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """The same (N, C, L) values with the channels innermost (the kernels' columns layout)."""
    return x.movedim(1, -1).contiguous().movedim(-1, 1)


@pytest.mark.parametrize("op", ["banded_fwd", "banded_cont_fwd"])
@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_channels_innermost_forward_is_the_same_bits_as_channels_outer(isa, cols_lookup, op, b, kind):
    """Channels innermost, evenly spaced grids take the per-lane interval index (one gather per
    term), other grids the compare chains; both select the level the channels-outer kernels
    select, ties, float neighbours and non-finite inputs included: the same bits, NaN where NaN.
    C = 37: several vectors and a ragged tail at every vector width."""
    C, m = 37, 9
    bp = grid_by_spacing(kind, C, m).float()
    x = input_near_breakpoints((5, C, 3), 1, bp)
    lv = levels(C, b, m)
    lv[1, :, 2] = 0.0  # zero levels: the zero-level rule at +-inf
    rows = getattr(torch.ops.tmaf, op)(x, bp, lv, 1)
    cols = getattr(torch.ops.tmaf, op)(_channels_last(x), bp, lv, 1)
    msg = f"{isa} {cols_lookup} {op} b={b} {kind}"
    assert torch.equal(rows.isnan(), cols.isnan()), msg
    assert torch.equal(rows.nan_to_num(0.0), cols.nan_to_num(0.0)), msg


@pytest.mark.parametrize("dtype, threads", [(torch.float32, 1), (torch.float32, 2), (torch.float64, 1)])
@pytest.mark.parametrize("form", ["jump", "continuous"])
@pytest.mark.parametrize("b", [1, 3, 4])  # 4: past the per-lane index kernels, compare chains
@pytest.mark.parametrize("kind", ["linspace", "per-channel-linspace", "past-quarter"])
def test_channels_innermost_banded_grids_match_the_reference(isa, cols_lookup, kind, b, form, dtype,
                                                            threads):
    """(N, C) input, banded, on evenly spaced grids (the per-lane index) and grids past the rule
    (compare chains): outputs and every gradient against the reference, ties on breakpoints,
    +-inf, NaN and zero levels included, C = 37 (not a multiple of any vector width)."""
    C, m = 37, 9
    bp = grid_by_spacing(kind, C, m)
    x = input_near_breakpoints((23, C), 1, bp).to(dtype)
    lv = levels(C, b, m, dtype)
    lv[1, :, 2] = 0.0
    lv[4, :, 0] = 0.0
    g = torch.randn_like(x)

    def run_form(backend, x, bp, lv):
        x, lv = x.detach().clone().requires_grad_(), lv.detach().clone().requires_grad_()
        y = F.banded_tmaf(x, bp, lv, 1, backend=backend, form=form)
        y.backward(g.to(x.dtype))
        return y.detach(), x.grad, lv.grad

    ref = run_form("reference", x.double(), bp, lv.double())
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast = run_form("native", x, bp.to(dtype), lv)
    finally:
        torch.set_num_threads(prev)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        tol = 2e-5 if dtype == torch.float32 else 1e-10
        where = f"{isa} {cols_lookup} {form} b={b} {kind} {name}"
        torch.testing.assert_close(a.double(), r, atol=tol, rtol=tol, equal_nan=True,
                                   msg=lambda s, where=where: f"{where}: {s}")


@pytest.mark.parametrize("form", ["jump", "continuous"])
def test_channels_innermost_level_gradient_is_bit_identical_for_any_thread_count(cols_lookup, form):
    """The per-lane index kernels (evenly spaced grid, tridiagonal, (N, C)): the same level
    gradient bits at 1, 2 and 3 threads, with several row blocks."""
    torch.manual_seed(5)
    x = torch.randn(3000, 61)
    bp = tmaf.DEFAULT_BREAKPOINTS

    def grad(threads):
        lv = levels(61, 1, len(bp)).requires_grad_()
        torch.manual_seed(6)
        lv.data = torch.randn_like(lv)
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            F.banded_tmaf(x, bp, lv, 1, backend="native", form=form).backward(torch.ones_like(x))
        finally:
            torch.set_num_threads(prev)
        return lv.grad

    first = grad(1)
    for t in (2, 3, 1):
        assert torch.equal(grad(t), first)


def test_native_keeps_channels_last_without_copy():
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    y = tmaf.DiagonalTMAF(8, backend="native")(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_native_half_inputs_compute_in_float32(dtype):
    bp = breakpoints(C, True, torch.float32)
    x = input_on_breakpoints((4, C, 6), 1, bp, dtype)
    lv = levels(C, 1, len(BP), torch.float32)
    fast = run("native", x, bp, lv, 1, torch.ones_like(x))
    ref = run("reference", x, bp, lv, 1, torch.ones_like(x))
    assert fast[0].dtype == dtype and fast[1].dtype == dtype and fast[2].dtype == torch.float32
    for a, r in zip(fast, ref, strict=True):
        assert_close(a, r, dtype=dtype)


def test_native_float64_breakpoints_compare_a_float32_input_exactly():
    bp = torch.tensor([0.1], dtype=torch.float64)  # 0.1 is not a float32 number
    x = torch.tensor([[0.1]], dtype=torch.float32)  # float32(0.1) > float64(0.1)
    lv = torch.tensor([[[1.0, 2.0]]])
    for backend in ("reference", "native"):
        assert F.banded_tmaf(x, bp, lv, backend=backend).item() == pytest.approx(0.2, rel=1e-6)


def test_native_relu_start_is_bit_exact_relu():
    x = torch.randn(3, 16, 9, 9)
    x.view(-1)[:3] = torch.tensor([0.0, float("-inf"), float("inf")])
    y = tmaf.DiagonalTMAF(16, backend="native")(x)
    # Same bits, the sign of zero included (negative inputs give +0, like torch.relu; an input
    # of -0.0 gives +0 where torch.relu keeps -0.0, which torch.equal still calls equal).
    assert torch.equal(y.view(torch.int32), torch.relu(x).view(torch.int32))
    assert torch.equal(tmaf.DiagonalTMAF(1, backend="native")(torch.tensor([[-0.0]])), torch.zeros(1, 1))


def _levels_grad(shape, cd, b, threads):
    torch.manual_seed(3)
    C = shape[cd]
    x = torch.randn(shape)
    lv = levels(C, b, 9).requires_grad_()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = F.banded_tmaf(x, tmaf.DEFAULT_BREAKPOINTS, lv, cd, backend="native")
        y.backward(torch.randn_like(y))
    finally:
        torch.set_num_threads(prev)
    return lv.grad


@pytest.mark.parametrize("shape, cd", [((16, 12, 40, 40), 1), ((3000, 96), 1), ((8, 20, 20, 12), -1)])
@pytest.mark.parametrize("b", [0, 1])
def test_native_level_gradient_is_bit_identical_for_any_thread_count(shape, cd, b):
    grads = [_levels_grad(shape, cd, b, t) for t in (1, 2, 3, 4, 1)]
    for g in grads[1:]:
        assert torch.equal(g, grads[0])


@pytest.mark.parametrize("cd, shape", [(1, (3, 6, 4)), (-1, (2, 3, 6)), (1, (5, 6))])
@pytest.mark.parametrize("b", [0, 1])
def test_opcheck(cd, shape, b):
    x = torch.randn(shape)
    bp = breakpoints(6, True, torch.float32)
    lv = levels(6, b, len(BP)).requires_grad_()
    x.requires_grad_()
    torch.library.opcheck(torch.ops.tmaf.banded_fwd, (x, bp, lv, cd))
    g = torch.randn(shape)
    torch.library.opcheck(torch.ops.tmaf.banded_bwd, (g, x.detach(), bp, lv.detach(), cd))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), tmaf.DiagonalTMAF(8, init="random", backend="native"),
                         nn.Linear(8, 8), tmaf.TridiagonalTMAF(8, init="random", backend="native"),
                         nn.Linear(8, 1))


@pytest.mark.slow
def test_compiled_model_keeps_the_native_op_opaque_and_trains_like_eager():
    x, y = torch.randn(16, 6), torch.randn(16, 1)
    eager, src = _model(), _model()
    compiled = torch.compile(src, fullgraph=True)  # fullgraph: any graph break is an error
    for model in (eager, compiled):
        nn.functional.mse_loss(model(x), y).backward()
    torch.testing.assert_close(compiled(x), eager(x))
    for (n, p), (_, q) in zip(eager.named_parameters(), src.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=lambda m, n=n: f"{n}: {m}")


def test_export_keeps_the_native_op():
    model = _model().eval()
    x = torch.randn(4, 6)
    ep = torch.export.export(model, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("tmaf.banded_fwd.default") == 2, targets
    torch.testing.assert_close(ep.module()(x), model(x))


def test_saves_only_the_input_for_backward():
    x = torch.randn(4, 8, 5, requires_grad=True)
    act = tmaf.DiagonalTMAF(8, backend="native")
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        act(x)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()


def test_empty_input():
    x = torch.randn(0, 4, requires_grad=True)
    act = tmaf.TridiagonalTMAF(4, backend="native")
    y = act(x)
    y.sum().backward()
    assert y.shape == (0, 4) and torch.equal(act.levels.grad, torch.zeros_like(act.levels))


def test_native_backend_refuses_what_it_cannot_run():
    x = torch.randn(2, 3)
    bp = torch.linspace(-1, 1, 300)
    lv = torch.zeros(3, 1, 301)
    with pytest.raises(RuntimeError, match="at most 256 breakpoints"):
        F.banded_tmaf(x, bp, lv, backend="native")
    assert F.resolve_backend(x, "auto", bp) == "eager"  # auto falls back instead
    torch.testing.assert_close(F.banded_tmaf(x, bp, lv), torch.zeros_like(x))


def test_op_reports_bad_shapes_clearly():
    with pytest.raises(RuntimeError, match=r"levels must have shape \(C, 2b\+1, m\+1\)"):
        torch.ops.tmaf.banded_fwd(torch.randn(2, 3), torch.zeros(2), torch.zeros(3, 1, 2), 1)
    with pytest.raises(RuntimeError, match="upstream gradient must have the input's shape"):
        torch.ops.tmaf.banded_bwd(torch.randn(2, 4), torch.randn(2, 3), torch.zeros(1),
                                  torch.zeros(3, 1, 2), 1)
    with pytest.raises(RuntimeError, match="unknown ISA"):
        tmaf.set_native_isa("sse9")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_disabled_native_falls_back_to_eager_and_says_why():
    code = ("import torch, tmaf, tmaf.functional as F\n"
            "x = torch.randn(2, 3)\n"
            "print(tmaf.native_available(), F.resolve_backend(x, 'auto'), tmaf.native_status())\n"
            "try:\n"
            "    F.banded_tmaf(x, torch.zeros(1), torch.zeros(3, 1, 2), backend='native')\n"
            "except RuntimeError as e:\n"
            "    print('error:', e)\n")
    out = _python(code, TMAF_NO_NATIVE="1", TMAF_BACKEND="auto")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False eager unavailable: disabled by TMAF_NO_NATIVE")
    assert "error: tmaf: the 'native' backend cannot run this call" in out.stdout


def test_missing_extension_warns_once_and_still_works():
    code = ("import sys, warnings\n"
            "sys.modules['tmaf._C'] = None  # as if the build had failed: importing it raises\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import torch, tmaf\n"
            "    y = tmaf.DiagonalTMAF(3)(torch.randn(2, 3))\n"
            "msgs = [str(x.message) for x in w if 'native operators unavailable' in str(x.message)]\n"
            "print(len(msgs), tmaf.native_available(), tmaf.resolve_backend(y))\n"
            "print(msgs[0])\n")
    out = _python(code, TMAF_BACKEND="auto")
    assert out.returncode == 0, out.stderr
    first, msg = out.stdout.splitlines()[:2]
    assert first == "1 False eager"
    assert "tmaf._C is not built" in msg and "pip install --no-build-isolation ." in msg
    assert "circular import" not in msg and "\n" not in msg


@pytest.mark.parametrize("cap", ISAS)
def test_cpu_isa_variable_caps_the_kernels_at_load(cap):
    """TMAF_CPU_ISA=<isa> loads the kernels of that ISA (benchmarks time each ISA this way)."""
    out = _python("import tmaf, torch\nprint(torch.ops.tmaf.native_isa())\n", TMAF_CPU_ISA=cap)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == cap


@pytest.mark.skipif("avx512" not in ISAS, reason="this CPU does not run the avx512 kernels")
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("b", [0, 1])
@pytest.mark.parametrize("form", ["jump", "continuous"])
def test_avx512_evenly_spaced_grid_wider_than_float32(form, b, layout):
    """An evenly spaced float32 grid whose span (6e38) overflows float32: x - s_0 would overflow
    in the computed index, so such grids take the compare chains (every ISA agrees with the
    reference: alpha 0.06, 0.07, 0.05 at x = 1e38, 2e38, 0.5e38, not the last level)."""
    prev = tmaf.set_native_isa("avx512")
    try:
        C, cd = 3, 1
        bp = (-3e38 + 0.75e38 * torch.arange(9, dtype=torch.float64)).float()
        lv = (torch.arange(10, dtype=torch.float32) / 100).expand(C, 2 * b + 1, 10).contiguous()
        x = torch.tensor([1e38, 2e38, 0.5e38, -2.9e38, 2.9e38, 0.0, 3e38, -3e38] * 4).view(2, 1, 4, 4)
        x = _layout(x.expand(2, C, 4, 4).contiguous(), cd, layout)
        fast = F.banded_tmaf(x, bp, lv, cd, "native", form=form)
        ref = F.banded_tmaf(x.double(), bp.double(), lv.double(), cd, "reference", form=form)
        torch.testing.assert_close(fast.double(), ref, rtol=1e-6, atol=0.0)
        _check(x.contiguous(), bp, levels(C, b, 9), cd, f"avx512 wide grid {form} b={b} {layout}")
    finally:
        tmaf.set_native_isa(prev)


def test_cols_lookup_rejects_an_unknown_value(monkeypatch):
    monkeypatch.setenv("TMAF_COLS_LOOKUP", "gather")
    with pytest.raises(RuntimeError,
                       match="TMAF_COLS_LOOKUP must be 'transpose', 'index' or 'chain', got 'gather'"):
        torch.ops.tmaf.banded_fwd(torch.randn(4, 8), tmaf.DEFAULT_BREAKPOINTS, levels(8, 1, 9), 1)


@pytest.mark.skipif("avx2" not in ISAS, reason="the 8 x 8 tile kernels are avx2's (float, 8 lanes)")
@pytest.mark.parametrize("form", ["jump", "continuous"])
@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("m", [1, 5, 9, 15, 17])  # 17: past the two-register table, compare chains
def test_tile_kernels_match_the_compare_chains(monkeypatch, form, b, m):
    """avx2, (N, C) float32: the 8 x 8 tile kernels against the blocked tables' compare chains on
    row counts that are not multiples of 8 or 32 (the tiles' row groups, the backward's 32-row
    blocks) and C = 37 (ragged channel tiles, several tasks), ties on breakpoints, +-inf, NaN and
    zero levels, and a finite block beside them: outputs and input gradients the same bits (the
    same terms added in the same order), level gradients within float32 rounding."""
    torch.manual_seed(11)
    C = 37
    bp = torch.linspace(-2.0, 2.0, m) if m > 1 else torch.zeros(1)
    ops = (torch.ops.tmaf.banded_cont_fwd, torch.ops.tmaf.banded_cont_bwd) if form == "continuous" \
        else (torch.ops.tmaf.banded_fwd, torch.ops.tmaf.banded_bwd)
    lv = levels(C, b, m)
    lv[1, :, 0] = 0.0
    lv[5, :, m] = 0.0
    prev = tmaf.set_native_isa("avx2")
    try:
        for n in (7, 13, 45, 300):
            x = input_near_breakpoints((n, C), 1, bp).float()
            if n >= 45:
                x[40:, :] = torch.randn(n - 40, C)  # row blocks with no infinite input
            g = torch.randn(n, C)
            out = {}
            for lookup, family in (("chain", "chain"), ("transpose", "tile" if m + 1 <= 16 else "chain")):
                monkeypatch.setenv("TMAF_COLS_LOOKUP", lookup)
                assert torch.ops.tmaf.kernel_family(x, bp, lv, 1) == family
                out[lookup] = (ops[0](x, bp, lv, 1), *ops[1](g, x, bp, lv, 1))
            where = f"{form} b={b} m={m} n={n}"
            for name, a, c in zip(("output", "grad input"), out["transpose"], out["chain"]):
                assert torch.equal(a.isnan(), c.isnan()), f"{where} {name}"
                assert torch.equal(a.nan_to_num(0.0), c.nan_to_num(0.0)), f"{where} {name}"
            torch.testing.assert_close(out["transpose"][2], out["chain"][2], rtol=2e-5, atol=2e-5 * n ** 0.5,
                                       equal_nan=True, msg=lambda s, where=where: f"{where} grad levels: {s}")
    finally:
        tmaf.set_native_isa(prev)


def test_kernel_family_names_the_kernels_a_call_runs(monkeypatch):
    """tile where the 8 x 8 tile kernels apply (avx2, float32, channels innermost, 1 <= b <= 3,
    m + 1 <= 16), else the compare chains or the per-lane index; rows with channels outer."""
    monkeypatch.delenv("TMAF_COLS_LOOKUP", raising=False)  # the default lookup first
    bp, lv = tmaf.DEFAULT_BREAKPOINTS, levels(8, 1, 9)
    x = torch.randn(4, 8)
    family = torch.ops.tmaf.kernel_family
    assert family(torch.randn(4, 8, 3), bp, lv, 1) == "rows"
    assert family(x, bp, levels(8, 0, 9), 1) == "chain"  # diagonal
    assert family(x.double(), bp, lv, 1) == "chain"
    monkeypatch.setenv("TMAF_COLS_LOOKUP", "index")
    assert family(x, bp, lv, 1) == "index"
    monkeypatch.setenv("TMAF_COLS_LOOKUP", "chain")
    assert family(x, bp, lv, 1) == "chain"
    monkeypatch.delenv("TMAF_COLS_LOOKUP")
    tile = "tile" if torch.ops.tmaf.native_isa() == "avx2" else "chain"
    assert family(x, bp, lv, 1) == tile
    assert family(x, bp, levels(8, 4, 9), 1) == "chain"  # b > 3
    if "avx2" in ISAS:
        prev = tmaf.set_native_isa("avx2")
        try:
            assert family(x, bp, lv, 1) == "tile"
            assert family(x, torch.linspace(-2, 2, 16), levels(8, 1, 16), 1) == "chain"  # m + 1 = 17
        finally:
            tmaf.set_native_isa(prev)
