"""``pwl``, the studies' continuous rival of diagonal TMAF, is the core's continuous_diagonal:
the same function as the lab's former module (its literal definition, restated here), the
same parameters as diagonal TMAF, and the name still builds the committed runs' models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import tmaf
from tmaf_lab.models import act_factory, activation_parameters, create_model, optimizer_groups

ROOT = Path(__file__).resolve().parents[2]


def _former_pwl(x: torch.Tensor, slopes: torch.Tensor, bp: list[float]) -> torch.Tensor:
    """The lab's former definition, (N, C): f_i(y) = sum_k a_{i,k} (clamp(y, I_k) - clamp(0, I_k))."""
    edges = [-math.inf, *bp, math.inf]
    cols = []
    for i in range(x.shape[1]):
        y, f = x[:, i], torch.zeros_like(x[:, i])
        for k in range(len(edges) - 1):
            lo, hi = edges[k], edges[k + 1]
            f = f + slopes[i, k] * (y.clamp(lo, hi) - min(max(0.0, lo), hi))
        cols.append(f)
    return torch.stack(cols, 1)


def test_pwl_is_the_continuous_diagonal_form():
    layer = act_factory("pwl")(6)
    assert isinstance(layer, tmaf.DiagonalTMAF) and layer.form == "continuous"
    assert layer.levels.shape == tmaf.DiagonalTMAF(6).levels.shape  # same parameter count
    assert act_factory("PWL", channel_dim=-1)(3).channel_dim == -1
    torch.manual_seed(0)
    with torch.no_grad():
        layer.levels.normal_()
    x = torch.randn(500, 6, dtype=torch.float64) * 2
    want = _former_pwl(x, layer.levels.double().detach(), tmaf.DEFAULT_BREAKPOINTS.tolist())
    torch.testing.assert_close(layer.double()(x), want)


def test_pwl_starts_as_relu_and_trains():
    torch.manual_seed(0)
    relu = create_model("cnn", (1, 28, 28), 10, "relu", width=4).eval()
    torch.manual_seed(0)
    pwl = create_model("cnn", (1, 28, 28), 10, "pwl", width=4).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(pwl(x), relu(x))  # same seed: same weights, and pwl starts as ReLU
    groups = optimizer_groups(pwl, weight_decay=0.1, act_lr=0.5)
    assert groups[1]["name"] == "activation" and len(groups[1]["params"]) == 3
    assert groups[1]["weight_decay"] == 0.0
    model = nn.Sequential(nn.Linear(3, 8), act_factory("pwl")(8), nn.Linear(8, 1))
    before = model[1].levels.detach().clone()
    model(torch.randn(64, 3)).pow(2).mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model[1].levels)
    assert [p.shape for p in activation_parameters(model)] == [before.shape]


def test_unknown_names_list_the_lab_names():
    with pytest.raises(ValueError, match="the lab also knows pwl"):
        act_factory("swishy")


@pytest.mark.parametrize("config", sorted(ROOT.glob("results/converged/*/*/pwl/seed0/config.json"))[:2])
def test_committed_pwl_configs_still_build_their_model(config):
    cfg = json.loads(config.read_text())
    args = cfg["config"]
    act = args["activation"]
    assert act == "pwl", config
    model = create_model(args["model"], (1, 28, 28), 10, act)
    layers = [m for m in model.modules() if isinstance(m, tmaf.BandedTMAF)]
    assert layers and all(m.form == "continuous" and m.bandwidth == 0 for m in layers)
