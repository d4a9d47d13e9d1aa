"""Double backward (create_graph=True) through every backend and both forms: gradgradcheck in
float64, every second-order gradient against the reference, a gradient penalty against the ReLU
twin, and the native backward operators' own autograd formulas (opcheck)."""

from __future__ import annotations

import pytest
import torch
from helpers import BP, breakpoints, levels

import tmaf
import tmaf.functional as F

NATIVE = tmaf.native_available()
BACKENDS = ["reference", "eager", "compiled", *(["native"] if NATIVE else [])]
FORMS = ["jump", "continuous"]
ISAS = tmaf.native_isas() if NATIVE else []


@pytest.fixture(params=ISAS or [None])
def isa(request):
    if request.param is None:
        yield None
        return
    prev = tmaf.set_native_isa(request.param)
    yield request.param
    tmaf.set_native_isa(prev)


def _off_breakpoints(shape, cd, bp, dtype, gap=1e-3):
    """Random input at least ``gap`` away from every breakpoint of its channel, so that finite
    differences never cross one (the derivatives are piecewise constant / linear in x)."""
    x = torch.randn(shape, dtype=torch.float64) * 1.5
    grid = (bp if bp.dim() == 2 else bp.expand(shape[cd], -1)).double()
    xm = x.movedim(cd, -1)
    near = ((xm.unsqueeze(-1) - grid).abs() < gap).any(-1)
    xm = torch.where(near, xm + 4 * gap, xm)
    return xm.movedim(-1, cd).to(dtype).contiguous()


def _second_order(backend, form, x, bp, lv, cd, u, w):
    """Gradients of <w, d<u, y>/dx> + <w2, d<u, y>/dlevels> (a gradient penalty in x and in the
    levels) with respect to x, the levels and the upstream gradient u."""
    x, lv, u = (t.detach().clone().requires_grad_() for t in (x, lv, u))
    y = F.banded_tmaf(x, bp, lv, cd, backend=backend, form=form)
    gx, gl = torch.autograd.grad(y, (x, lv), u, create_graph=True)
    w2 = torch.linspace(-1, 1, gl.numel(), dtype=gl.dtype).view_as(gl)
    ((gx * w).sum() + (gl * w2).sum()).backward()
    return x.grad, lv.grad, u.grad


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gradient_penalty_snippet_reaches_the_levels(backend, form):
    """The gradient of a penalty on the input gradient reaches the levels (never None)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(4, 3, 10, dtype=torch.float64, requires_grad=True)
    y = F.banded_tmaf(x, tmaf.DEFAULT_BREAKPOINTS.double(), lv, 1, backend, form=form)
    gx, = torch.autograd.grad(y.sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert lv.grad is not None and x.grad is not None
    # d/dlevels of sum_j (sum_d a_{j-d,d,k(x_j)})^2: 2 * gx_j summed per (i, d, interval of x_j)
    want = torch.zeros_like(lv)
    k = torch.bucketize(x.detach(), tmaf.DEFAULT_BREAKPOINTS.double())
    for i in range(4):
        for d in (-1, 0, 1):
            j = i + d
            if 0 <= j < 4:
                want[i, d + 1].index_add_(0, k[:, j].reshape(-1), 2 * gx.detach()[:, j].reshape(-1))
    torch.testing.assert_close(lv.grad, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, torch.zeros_like(x))  # gx is piecewise constant in x


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_penalty_matches_the_relu_twin(backend, form):
    """WGAN-GP style: the penalty's gradient to the layer after TMAF at the ReLU start equals
    the ReLU network's."""
    torch.manual_seed(1)
    x = torch.randn(16, 6, dtype=torch.float64)

    def penalty_grad(act):
        torch.manual_seed(2)
        lin1, lin2 = torch.nn.Linear(6, 8).double(), torch.nn.Linear(8, 1).double()
        xi = x.clone().requires_grad_()
        out = lin2(act(lin1(xi)))
        gx, = torch.autograd.grad(out.sum(), xi, create_graph=True)
        (gx.norm(dim=1) - 1).square().mean().backward()
        return lin2.weight.grad, lin1.weight.grad

    layer = tmaf.TridiagonalTMAF(8, form=form, backend=backend).double()
    got, want = penalty_grad(layer), penalty_grad(torch.relu)
    for a, r in zip(got, want, strict=True):
        assert a is not None
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    assert layer.levels.grad is not None and layer.levels.grad.abs().sum() > 0


@pytest.mark.parametrize("b, per_channel", [(0, False), (1, True)])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradgradcheck(backend, form, b, per_channel):
    C, cd = 4, 1
    bp = breakpoints(C, per_channel)
    x = _off_breakpoints((2, C, 3), cd, bp, torch.float64).requires_grad_()
    lv = levels(C, b, len(BP), torch.float64).requires_grad_()
    torch.autograd.gradgradcheck(lambda x, lv: F.banded_tmaf(x, bp, lv, cd, backend=backend, form=form),
                                 (x, lv))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", [be for be in BACKENDS if be != "reference"])
def test_second_order_matches_reference(backend, form, dtype, layout, isa):
    """Every second-order gradient (to x, the levels and the upstream gradient) against the
    reference run in float64 on the same values, with inputs on breakpoints (second derivatives
    are specified for finite inputs, docs/method.md section 4)."""
    if isa not in (None, ISAS[-1]) and backend != "native":
        pytest.skip("the ISA matters to the native backend only")
    if backend == "compiled" and (dtype, layout) != (torch.float32, "contiguous"):
        pytest.skip("one case: each new shape and dtype compiles the forward again")
    C, cd, b = 5, 1, 2
    bp = breakpoints(C, True, dtype)
    x = torch.randn(3, C, 4, 6, dtype=dtype) * 1.5
    x[1, :, 0, :3] = bp[:, 1:4]  # ties: inputs on a breakpoint of their channel
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    lv = levels(C, b, len(BP), dtype)
    lv[2, :, 0] = 0.0
    u, w = torch.randn_like(x), torch.randn_like(x)
    got = _second_order(backend, form, x, bp, lv, cd, u, w)
    ref = _second_order("reference", form, x.double(), bp.double(), lv.double(), cd, u.double(), w.double())
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for name, a, r in zip(("x", "levels", "upstream"), got, ref, strict=True):
        assert a is not None and a.dtype == dtype, name
        torch.testing.assert_close(a.double(), r, rtol=tol, atol=tol, equal_nan=True,
                                   msg=lambda s, name=name: f"{backend} {form} {name}: {s}")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", [be for be in BACKENDS if be not in ("reference", "compiled")])
def test_third_order_is_never_silently_none(backend, form):
    """A third derivative (d/dlevels of a Hessian-vector product in x and the levels) agrees
    with the reference (compiled: the same formulation as eager under create_graph)."""
    C, cd = 3, 1
    bp = breakpoints(C, False)
    x0 = _off_breakpoints((4, C), cd, bp, torch.float64)
    lv0 = levels(C, 1, len(BP), torch.float64)

    def third(be):
        x, lv = x0.clone().requires_grad_(), lv0.clone().requires_grad_()
        y = F.banded_tmaf(x, bp, lv, cd, backend=be, form=form)
        gx, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        hx, = torch.autograd.grad(gx.sum(), x, create_graph=True)
        hx.square().sum().backward()
        return lv.grad

    got, want = third(backend), third("reference")
    assert got is not None
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not NATIVE, reason="the native operators are not built")
@pytest.mark.parametrize("op", ["banded_bwd", "banded_cont_bwd"])
def test_backward_ops_pass_opcheck_with_their_autograd(op):
    torch.manual_seed(3)
    C, cd = 4, 1
    bp = breakpoints(C, False)
    x = _off_breakpoints((3, C, 2), cd, bp, torch.float64).requires_grad_()
    g = torch.randn_like(x).requires_grad_()
    lv = levels(C, 1, len(BP), torch.float64).requires_grad_()
    # the torch.compile checks (aot_dispatch) once: both ops share one registration
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    utils += ("test_aot_dispatch_dynamic",) if op == "banded_bwd" else ()
    torch.library.opcheck(getattr(torch.ops.tmaf, op), (g, x, bp, lv, cd), test_utils=utils)
    torch.autograd.gradcheck(lambda g, x, lv: getattr(torch.ops.tmaf, op)(g, x, bp, lv, cd), (g, x, lv))
