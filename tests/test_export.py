"""Deployment: a trained model with TMAF layers exports with torch.export and runs in ONNX Runtime.

The exported graph is the comparison-and-select formulation of the fast path (``x > s_k`` then
``where``), so it needs no custom operator; intervals are closed on the right, and inputs placed
exactly on breakpoints check that ONNX keeps that convention.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tmaf

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _mlp() -> nn.Module:
    return nn.Sequential(tmaf.DiagonalTMAF(12), nn.Linear(12, 16), tmaf.DiagonalTMAF(16),
                         nn.Linear(16, 16), tmaf.TridiagonalTMAF(16), nn.Linear(16, 3))


def _cnn() -> nn.Module:
    bp = torch.tensor([-1.0, -0.25, 0.0, 0.5, 1.0]) + 0.02 * torch.arange(8.0)[:, None]
    bp[:, 2] = 0.0  # every channel keeps 0 so the ReLU initialisation applies
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                         tmaf.DiagonalTMAF(8, breakpoints=bp),
                         nn.Conv2d(8, 8, 3, padding=1), tmaf.TridiagonalTMAF(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def _calibrated_mlp() -> nn.Module:
    """The MLP after ``tmaf.calibrate``: per-channel (C, m) grids from the data."""
    model = _mlp()
    tmaf.calibrate(model, torch.randn(256, 12, generator=torch.Generator().manual_seed(5)) * 0.7)
    assert all(m.breakpoints.dim() == 2 for _, m in tmaf.tmaf_modules(model))
    return model


def _train(model: nn.Module, in_shape: tuple[int, ...], steps: int = 25) -> nn.Module:
    """A few SGD steps on a fixed random problem, so the levels are no longer the ReLU ones."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((32, *in_shape), generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    before = [m.levels.detach().clone() for _, m in tmaf.tmaf_modules(model)]
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    moved = [(m.levels.detach() - b).abs().max().item()
             for (_, m), b in zip(tmaf.tmaf_modules(model), before, strict=True)]
    assert min(moved) > 1e-3, f"training did not move every TMAF's levels: {moved}"
    return model.eval()


def _inputs(in_shape: tuple[int, ...], batch: int, seed: int) -> torch.Tensor:
    x = torch.randn((batch, *in_shape), generator=torch.Generator().manual_seed(seed)) * 1.5
    # Values exactly on breakpoints (right-closed intervals) for the leading TMAF of the MLP.
    x.view(-1)[:6] = torch.tensor([-2.0, -1.5, 0.0, 0.5, 1.0, 2.0])
    return x


# Under torch.export every fast backend traces the same comparison-and-select graph (the fast
# path takes its fused formulation while tracing), so the eager backend (tests' default) suffices.
@pytest.mark.parametrize("name, build, in_shape", [("mlp", _mlp, (12,)), ("cnn", _cnn, (3, 6, 6)),
                                                   ("mlp-calibrated", _calibrated_mlp, (12,))])
def test_trained_tmaf_model_exports_and_matches_in_onnxruntime(name, build, in_shape, tmp_path):
    torch.manual_seed(0)
    model = _train(build(), in_shape)
    old = tmaf.get_backend()
    tmaf.set_backend("eager")
    try:
        batch = torch.export.Dim("batch", min=1, max=1024)
        example = _inputs(in_shape, 4, seed=1)
        with torch.no_grad():
            ep = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            onnx_program = torch.onnx.export(model, (example,), dynamic_shapes=({0: batch},),
                                             dynamo=True, verbose=False)
        path = tmp_path / f"{name}.onnx"
        onnx_program.save(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n in (1, 7):  # other batch sizes than the example: the batch axis is dynamic
            x = _inputs(in_shape, n, seed=2 + n)
            with torch.no_grad():
                want = model(x)
                got_export = ep.module()(x)
            got_ort = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
            torch.testing.assert_close(got_export, want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.from_numpy(got_ort), want, rtol=1e-4, atol=1e-5)
        ops = {node.op_type for node in onnx_program.model_proto.graph.node}
        assert {"Greater", "Where"} <= ops, sorted(ops)  # comparisons and selects, no custom op
    finally:
        tmaf.set_backend(old)
