"""The peer libraries' activations as lab activations: the (rows, C) view, the channel check,
learned-activation parameters, the clear error when a library is missing, and (where the
libraries are installed) a parameter-matched fit through ``tmaf approx``."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from tmaf_lab import peer_activations as peers
from tmaf_lab.approx import cli as approx_cli
from tmaf_lab.models import act_factory, activation_parameters, optimizer_groups


class PerChannelScale(nn.Module):  # stands in for a per-channel peer on (rows, C)
    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.arange(1.0, channels + 1))

    def forward(self, rows):
        assert rows.dim() == 2
        return rows * self.scale, "second output"


def test_rows_view_keeps_the_shape_and_applies_per_channel():
    act = peers.PeerActivation("fake", PerChannelScale(3), 3, rows=True, first=True)
    x = torch.randn(2, 3, 4, 5)
    y = act(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    with pytest.raises(ValueError, match="expected an input with 3 channels on dim 1, got shape"):
        act(torch.randn(2, 4, 5))


def test_peer_parameters_are_learned_activation_parameters():
    act = peers.PeerActivation("fake", PerChannelScale(3), 3, rows=True, first=True)
    model = nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 1))
    assert [id(p) for p in activation_parameters(model)] == [id(act.inner.scale)]
    groups = optimizer_groups(model, weight_decay=0.1)
    act_group = next(g for g in groups if any(p is act.inner.scale for p in g["params"]))
    assert act_group["weight_decay"] == 0.0


def test_missing_library_is_a_clear_error(monkeypatch, capsys):
    def missing(name):
        raise peers.PeerMissing(f"{name}: ModuleNotFoundError: not here")

    monkeypatch.setattr(peers, "_quiet_import", missing)
    with pytest.raises(ValueError, match="activation 'deepbspline' needs its library: .*not here"):
        act_factory("deepbspline")
    assert approx_cli.main(["--activations", "relu,deepbspline", "--steps", "2",
                            "--dry-run"]) == 2
    assert "deepbspline" in capsys.readouterr().err
    with pytest.raises(ValueError, match="takes no options"):
        act_factory("pau", breakpoints=torch.zeros(3))
    with pytest.raises(ValueError, match="peer libraries' deepbspline"):
        act_factory("no-such-activation")


@pytest.mark.skipif(importlib.util.find_spec("deepsplines") is None
                    or importlib.util.find_spec("torch_activation") is None,
                    reason="the peer libraries are optional (tmaf_lab.peer_activations.INSTALL)")
def test_installed_peers_fit_parameter_matched(tmp_path):
    out = tmp_path / "fit"
    assert approx_cli.main(["--target", "sin(4*pi*x)", "--activations", "relu,deepbspline,aplu",
                            "--steps", "20", "--seeds", "0", "--no-plots", "--n-train", "256",
                            "--out", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    params = {r["activation"]: r["params"] for r in runs}
    assert abs(params["deepbspline"] - params["relu"]) / params["relu"] < 0.05
    assert all(r["rel_l2"] == r["rel_l2"] for r in runs)  # finite fits, no NaN


def test_pwl_knots_is_the_cores_knot_valued_continuous_diagonal():
    """The lab's pwl_knots is tmaf.DiagonalTMAF(form="continuous",
    parameterization="knot_values"), ReLU at the start (random, +-inf, NaN), and it refuses
    options that contradict its name."""
    import tmaf

    act = act_factory("pwl_knots")(3)
    assert isinstance(act, tmaf.DiagonalTMAF)
    assert (act.form, act.parameterization, act.bandwidth) == ("continuous", "knot_values", 0)
    x = 3 * torch.randn(5, 3)
    x[0, 0], x[1, 1], x[2, 2] = float("inf"), float("-inf"), float("nan")
    assert torch.equal(act(x).nan_to_num(7.0), torch.relu(x).nan_to_num(7.0))
    assert {id(p) for p in activation_parameters(torch.nn.Sequential(act))} == {
        id(act.knot_values), id(act.end_slopes)}
    with pytest.raises(ValueError, match="parameterization='knot_values'; got 'levels'"):
        act_factory("pwl_knots", parameterization="levels")
