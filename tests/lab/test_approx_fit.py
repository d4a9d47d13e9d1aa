"""Study internals: fair parameter matching, ReLU-exact TMAF init, seeded data, metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import tmaf
from tmaf_lab.approx.fit import (
    ApproxConfig,
    build_mlp,
    count_params,
    make_data,
    match_width,
    metrics,
    outside_grid,
    predict,
    summarise,
    train,
)
from tmaf_lab.approx.targets import resolve_target

# Stated tolerance of --match-params: the closest width, so within half a width step of the
# ReLU reference; within 5% for the default sizes (width 32, depth 3, 9 breakpoints).
MATCH_TOL = 0.05


def _params(act: str, in_dim: int, width: int, cfg: ApproxConfig) -> int | None:
    try:
        return count_params(build_mlp(act, in_dim, width, cfg))
    except ValueError:  # banded<b> needs width > b
        return None


@pytest.mark.parametrize("act", ["relu", "prelu", "silu", "diagonal", "tridiagonal", "banded2",
                                 "full"])
@pytest.mark.parametrize(("width", "depth", "in_dim"), [(32, 3, 1), (16, 2, 2), (48, 1, 1)])
def test_match_params_picks_the_closest_width(act, width, depth, in_dim):
    cfg = ApproxConfig(width=width, depth=depth)
    ref = count_params(build_mlp("relu", in_dim, width, cfg))
    w, p = match_width(act, in_dim, cfg)
    assert p == _params(act, in_dim, w, cfg)
    counts = {v: _params(act, in_dim, v, cfg) for v in range(1, 2 * width + 1)}
    counts = {v: c for v, c in counts.items() if c is not None}
    assert abs(p - ref) == min(abs(c - ref) for c in counts.values())
    # within half the parameter step between neighbouring widths
    step = max(counts.get(w + 1, p) - p, p - counts.get(w - 1, p))
    assert abs(p - ref) <= max(MATCH_TOL * ref, step / 2), (act, w, p, ref)


@pytest.mark.parametrize("act", ["relu", "prelu", "gelu", "diagonal", "tridiagonal", "banded2"])
def test_match_params_within_5_percent_at_default_sizes(act):
    cfg = ApproxConfig()
    ref = count_params(build_mlp("relu", 1, cfg.width, cfg))
    _, p = match_width(act, 1, cfg)
    assert abs(p - ref) / ref <= MATCH_TOL, (act, p, ref)


@pytest.mark.parametrize(("act", "per_channel"), [("relu", 0), ("prelu", 1), ("diagonal", 10),
                                                  ("tridiagonal", 30)])
def test_activation_parameters_are_counted(act, per_channel):
    cfg = ApproxConfig(depth=2, breakpoints=9)
    extra = count_params(build_mlp(act, 1, 12, cfg)) - count_params(build_mlp("relu", 1, 12, cfg))
    assert extra == per_channel * 12 * cfg.depth


@pytest.mark.parametrize("act", ["diagonal", "tridiagonal", "full"])
def test_untrained_tmaf_mlp_equals_its_relu_twin(act):
    cfg = ApproxConfig(depth=3, breakpoints=7, bp_range=3.0)
    torch.manual_seed(0)
    net = build_mlp(act, 2, 10, cfg)
    torch.manual_seed(0)
    twin = build_mlp("relu", 2, 10, cfg)
    mods = [m for _, m in tmaf.tmaf_modules(net)]
    assert len(mods) == cfg.depth and len({id(m) for m in mods}) == cfg.depth  # one per site
    torch.testing.assert_close(mods[0].breakpoints, torch.linspace(-3.0, 3.0, 7))
    x = torch.rand(64, 2) * 2 - 1
    torch.testing.assert_close(net(x), twin(x))


def test_data_is_seeded_and_shared_by_activations():
    cfg = ApproxConfig(n_train=128, n_test=65, domain=(0.0, 3.0))
    t = resolve_target("sin(x) + x")
    a, b, c = make_data(t, cfg, 0), make_data(t, cfg, 0), make_data(t, cfg, 1)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.x_train.min() >= -1 and a.x_train.max() <= 1  # domain mapped to [-1, 1]
    assert abs(float(a.y_train.mean())) < 1e-5 and abs(float(a.y_train.std()) - 1) < 1e-5
    grid = torch.linspace(0.0, 3.0, 65, dtype=torch.float64)
    torch.testing.assert_close(a.y_test, torch.sin(grid) + grid)


def test_metrics_on_known_errors():
    cfg = ApproxConfig(n_train=16, n_test=5)
    data = make_data(resolve_target("x"), cfg, 0)  # grid -1, -0.5, 0, 0.5, 1
    assert metrics(data.y_test.clone(), data) == {"rel_l2": 0.0, "rmse": 0.0, "max_err": 0.0}
    m = metrics(torch.zeros(5, dtype=torch.float64), data)
    assert m["rel_l2"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(math.sqrt(2.5 / 5))
    assert m["max_err"] == pytest.approx(1.0)


def test_summary_mean_std_and_ratio():
    runs = [{"activation": a, "seed": s, "width": 4, "params": 10, "rel_l2": v, "rmse": v,
             "max_err": v, "train_seconds": 1.0}
            for a, vals in (("relu", (0.2, 0.4)), ("diagonal", (0.1, 0.1))) for s, v in
            enumerate(vals)]
    s = summarise(runs, ("relu", "diagonal"))
    assert s["relu"]["rel_l2_mean"] == pytest.approx(0.3)
    assert s["relu"]["rel_l2_std"] == pytest.approx(math.sqrt(0.02))  # sample std
    assert s["diagonal"]["rel_l2_vs_relu"] == pytest.approx(1 / 3)
    assert s["diagonal"]["seeds"] == 2 and s["diagonal"]["params"] == 10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_deterministic_per_seed_and_dtype(dtype):
    cfg = ApproxConfig(n_train=64, n_test=33, steps=6, batch=16, history_points=3, dtype=dtype)
    t = resolve_target("sin(4*x)")
    outs = []
    for _ in range(2):
        data = make_data(t, cfg, 3)
        torch.manual_seed(3)
        model = build_mlp("diagonal", 1, 6, cfg)
        history, seconds, diverged = train(model, data, cfg, 3)
        outs.append((history, predict(model, data)))
        assert not diverged and seconds > 0 and [h["step"] for h in history] == [2, 4, 6]
        assert next(model.parameters()).dtype == getattr(torch, dtype)
    assert outs[0][0] == outs[1][0]
    assert torch.equal(outs[0][1], outs[1][1])


def test_tmaf_lr_reaches_the_level_group():
    cfg = dataclasses.replace(ApproxConfig(), tmaf_lr=0.5)
    groups = tmaf.param_groups(build_mlp("diagonal", 1, 4, cfg), tmaf_lr=cfg.tmaf_lr)
    assert [g.get("lr") for g in groups] == [None, 0.5]


@pytest.mark.parametrize(("init", "zero_bias"), [("he", True), ("torch", False)])
def test_init_choice(init, zero_bias):
    torch.manual_seed(0)
    net = build_mlp("diagonal", 1, 8, ApproxConfig(init=init))
    biases = [m.bias for m in net if isinstance(m, torch.nn.Linear)]
    assert all(bool((b == 0).all()) == zero_bias for b in biases)
    with pytest.raises(ValueError, match="init"):
        build_mlp("relu", 1, 8, ApproxConfig(init="xavier"))


def test_outside_grid_fraction():
    cfg = ApproxConfig(n_train=16, n_test=101, depth=2, bp_range=0.5, breakpoints=3)
    data = make_data(resolve_target("x"), cfg, 0)  # grid on [-1, 1]
    net = build_mlp("diagonal", 1, 1, cfg)
    with torch.no_grad():
        net[0].weight.fill_(1.0)  # first pre-activation = x: |x| > 0.5 on 50 of 101 points
        net[0].bias.zero_()
    fr = outside_grid(net, data)
    assert len(fr) == 2 and fr[0] == pytest.approx(50 / 101)
    assert outside_grid(build_mlp("relu", 1, 4, cfg), data) == []
