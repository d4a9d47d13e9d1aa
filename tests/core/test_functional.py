"""Fast path vs the literal reference: outputs and every gradient (input, levels), over a grid of
bandwidths, breakpoint layouts, channel axes, shapes and dtypes, with inputs on breakpoints."""

from __future__ import annotations

import pytest
import torch
from conftest import TOL, assert_close
from helpers import BP, SHAPES, C, breakpoints, input_on_breakpoints, levels, run

import tmaf
import tmaf.functional as F

#: Every fast path: each is compared with the reference by every test below that loops over FAST.
FAST = ["eager"] + (["native"] if tmaf.native_available() else [])



@pytest.mark.parametrize("b", [0, 1, 2, C - 1])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", FAST)
def test_fast_matches_reference(b, per_channel, shape, dtype, backend, device):
    if backend == "native" and device.type != "cpu":
        pytest.skip("the native kernels are CPU kernels")
    shp, cd = SHAPES[shape]
    bp = breakpoints(C, per_channel, dtype, device)
    x = input_on_breakpoints(shp, cd, bp, dtype, device)
    lv = levels(C, b, len(BP), dtype, device)
    g = torch.randn_like(x)
    ref = run("reference", x, bp, lv, cd, g)
    fast = run(backend, x, bp, lv, cd, g)
    for name, a, r in zip(("output", "grad input", "grad levels"), fast, ref, strict=True):
        assert a.dtype == r.dtype and a.shape == r.shape, name
        assert_close(a, r, msg=f"{name} b={b} per_channel={per_channel} {shape}")


def test_diagonal_equals_banded_b0(device):
    bp = breakpoints(C, False, torch.float32, device)
    x = input_on_breakpoints((4, C, 3), 1, bp, torch.float32, device)
    lv = torch.randn(C, len(BP) + 1, device=device)
    torch.testing.assert_close(F.diagonal_tmaf(x, bp, lv), F.banded_tmaf(x, bp, lv[:, None]))


def test_matches_method_definition_by_hand():
    """Closed-on-the-right intervals and zero padding, checked on hand-computed values."""
    bp = torch.tensor([0.0, 1.0])
    # levels[i, d+b, k]: channel i, offset d, interval k in {(-inf,0], (0,1], (1,inf)}
    lv = torch.zeros(3, 3, 3)
    lv[:, 1] = torch.tensor([0.0, 1.0, 2.0])  # diagonal: 0 | 1 | 2
    lv[:, 0] = torch.tensor([10.0, 20.0, 30.0])  # multiplies y_{i-1}
    lv[:, 2] = torch.tensor([-1.0, -2.0, -3.0])  # multiplies y_{i+1}
    y = torch.tensor([[0.0, 1.0, 2.0]])
    # i=0: diag a(0)*0 = 0; upper: -2*1 (y_1=1 in (0,1]) ; no lower (zero padding)
    # i=1: lower 10*0 (y_0=0 in (-inf,0]) ; diag 1*1 ; upper -3*2
    # i=2: lower 20*1 ; diag 2*2 ; no upper
    expected = torch.tensor([[-2.0, 1.0 - 6.0, 20.0 + 4.0]])
    for backend in ("reference", *FAST):
        torch.testing.assert_close(F.banded_tmaf(y, bp, lv, backend=backend), expected)


@pytest.mark.parametrize("b", [0, 1, 3])
@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck_float64(b, per_channel):
    torch.manual_seed(1)
    bp = breakpoints(4, per_channel)
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    grid = bp if bp.dim() == 2 else bp.expand(4, -1)
    # keep finite differences away from the jumps of alpha
    near = (x.movedim(1, -1).unsqueeze(-1) - grid.unsqueeze(0).unsqueeze(0)).abs().min(-1).values
    x = torch.where(near.movedim(-1, 1) < 1e-3, x + 0.01, x).requires_grad_()
    lv = torch.randn(4, 2 * b + 1, len(BP) + 1, dtype=torch.float64, requires_grad=True)
    for backend in ("reference", *FAST):
        assert torch.autograd.gradcheck(lambda x, lv, be=backend: F.banded_tmaf(x, bp, lv, 1, backend=be),
                                        (x, lv), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", FAST)
def test_relu_exact_and_input_only_saved(backend):
    bp = torch.tensor([-1.0, 0.0, 2.0])
    lv = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(6, -1).contiguous()
    x = torch.tensor([-3.0, -1.0, 0.0, 1e-8, 2.0, 5.0]).repeat(2, 6, 1).transpose(1, 2)  # (2, 6, 6)
    x = (x + torch.randn(2, 6, 6) * (torch.rand(2, 6, 6) < 0.5)).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.diagonal_tmaf(x, bp, lv, backend=backend)
    assert torch.equal(y, torch.relu(x))
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()  # only the input is saved
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (x > 0).float())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", FAST)
def test_half_inputs_keep_dtype_and_fp32_levels(dtype, backend):
    bp = breakpoints(C, False, torch.float32)
    x = input_on_breakpoints((4, C, 3), 1, bp, dtype)
    lv = levels(C, 1, len(BP))
    g = torch.randn_like(x)
    fast = run(backend, x, bp, lv, 1, g)
    ref = run("reference", x, bp, lv, 1, g)
    assert fast[0].dtype == dtype and fast[1].dtype == dtype and fast[2].dtype == torch.float32
    assert_close(fast[0], ref[0], dtype=dtype, msg="output")
    assert_close(fast[1], ref[1], dtype=dtype, msg="grad input")
    assert_close(fast[2], ref[2], dtype=torch.float32, msg="grad levels (fp32 accumulation)")


@pytest.mark.parametrize("backend", FAST)
def test_autocast_linear_then_tmaf(backend):
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, C)
    bp = breakpoints(C, False, torch.float32)
    lv = levels(C, 1, len(BP)).requires_grad_()
    x = torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = F.banded_tmaf(h, bp, lv, 1, backend=backend)
        y_ref = F.banded_tmaf(h, bp, lv, 1, backend="reference")
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16 and lv.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, atol=TOL[torch.bfloat16][0], rtol=TOL[torch.bfloat16][1])
    (gl,) = torch.autograd.grad(y.float().sum(), lv)
    (gl_ref,) = torch.autograd.grad(y_ref.float().sum(), lv)
    assert gl.dtype == torch.float32
    torch.testing.assert_close(gl, gl_ref, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("backend", FAST)
def test_level_gradient_is_deterministic(backend):
    bp = breakpoints(C, True, torch.float32)
    x = input_on_breakpoints((64, C, 33), 1, bp, torch.float32)
    lv = levels(C, 1, len(BP)).requires_grad_()
    grads = []
    for _ in range(3):
        (g,) = torch.autograd.grad(F.banded_tmaf(x, bp, lv, backend=backend).sum(), lv)
        grads.append(g)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_float64_breakpoints_compare_exactly_with_float32_input():
    """A float32 input just above a float64 breakpoint lies right of it (no rounding of s)."""
    bp = torch.tensor([0.1], dtype=torch.float64)
    x = torch.tensor([[0.1]], dtype=torch.float32)  # fl32(0.1) = 0.10000000149 > 0.1
    lv = torch.tensor([[[0.0, 1.0]]])
    for backend in ("reference", *FAST):
        y = F.banded_tmaf(x, bp, lv, backend=backend)
        assert y.dtype == torch.float32 and y.item() == x.item(), backend


@pytest.mark.parametrize("form", ["jump", "continuous"])
@pytest.mark.parametrize("backend", ["reference", *FAST])
def test_no_channels_gives_an_empty_output_and_gradients(backend, form):
    x = torch.randn(2, 0, 3, requires_grad=True)
    lv = torch.randn(0, 1, len(BP) + 1, requires_grad=True)
    y = F.banded_tmaf(x, torch.tensor(BP), lv, 1, backend, form=form)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape and lv.grad.shape == lv.shape
