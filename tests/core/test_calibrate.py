"""tmaf.calibrate: per-channel quantile grids, exact starts, least-squares refit, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tmaf

C = 5


def _grid_ok(bp, m):
    assert bp.shape == (C, m)
    assert bool((bp == 0).any(dim=1).all())
    assert bool((bp.diff(dim=1) > 0).all())


@pytest.mark.parametrize("cls", [tmaf.DiagonalTMAF, tmaf.TridiagonalTMAF])
@pytest.mark.parametrize("init", ["relu", "identity", "leaky_relu"])
@pytest.mark.parametrize("cd", [1, -1])
def test_starts_are_bit_identical(cls, init, cd):
    act = cls(C, init=init, channel_dim=cd, negative_slope=0.1)
    x = torch.randn(64, C, 4) * torch.linspace(0.1, 5, C)[:, None]
    x[0, :, 0] = 0.0  # inputs of exactly 0 (the breakpoint 0 belongs to the left interval)
    x = x if cd == 1 else x.transpose(1, 2).contiguous()
    before = act(x)
    stats = tmaf.calibrate(act, [x[:32], x[32:]])
    _grid_ok(act.breakpoints, 9)
    assert torch.equal(act(x), before)
    assert stats[""]["rel_change"] == 0.0


def _literal_fit(old_bp, old_lv, new_bp, x):
    """Loop over channel, band offset and new interval: t = sum(x * old(x)) / sum(x^2)."""
    L, W, _ = old_lv.shape
    b = W // 2
    ob = np.broadcast_to(old_bp, (x.shape[1], old_bp.shape[-1]))
    out = np.zeros((L, W, new_bp.shape[1] + 1))
    for i in range(L):
        for w in range(W):
            j = min(max(i + w - b, 0), x.shape[1] - 1)
            xs = x[:, j]
            if not 0 <= i + w - b < x.shape[1]:
                xs = xs[:0]
            ko = np.array([np.sum(ob[j] < v) for v in xs], dtype=int)
            kn = np.array([np.sum(new_bp[j] < v) for v in xs], dtype=int)
            old_term = old_lv[i, w, ko] * xs
            for k in range(new_bp.shape[1] + 1):
                sel = kn == k
                den = np.sum(xs[sel] ** 2)
                out[i, w, k] = np.sum(xs[sel] * old_term[sel]) / den if den > 0 else np.nan
    return out


@pytest.mark.parametrize("cls", [tmaf.DiagonalTMAF, tmaf.TridiagonalTMAF])
@pytest.mark.parametrize("m_new", [None, 6])
def test_trained_layer_is_least_squares_refit(cls, m_new):
    torch.manual_seed(1)
    act = cls(C, dtype=torch.float64)
    with torch.no_grad():
        act.levels.normal_()
    old_bp, old_lv = act.breakpoints.clone(), act.levels.detach().clone()
    x = torch.randn(300, C, dtype=torch.float64) * torch.linspace(0.2, 3, C, dtype=torch.float64)
    stats = tmaf.calibrate(act, x, num_breakpoints=m_new)
    m = 9 if m_new is None else m_new
    _grid_ok(act.breakpoints, m)
    got = act.levels.detach().reshape(C, -1, m + 1).numpy()
    want = _literal_fit(old_bp.numpy(), old_lv.reshape(C, -1, 10).numpy(), act.breakpoints.numpy(),
                        x.numpy())
    filled = ~np.isnan(want)
    assert filled.mean() > 0.8
    np.testing.assert_allclose(got[filled], want[filled], rtol=1e-10, atol=1e-12)
    # the fit is the L2 projection: the output change it reports matches a direct computation
    old = tmaf.functional.banded_tmaf(x, old_bp, old_lv.reshape(C, -1, 10), 1)
    new = act(x).detach()
    assert stats[""]["rel_change"] == pytest.approx(float((new - old).norm() / old.norm()))
    assert 0 < stats[""]["rel_change"] < 1


def test_quantile_range_and_outside_fractions():
    act = tmaf.DiagonalTMAF(1)
    x = torch.arange(-10.0, 11.0)[:, None]
    stats = tmaf.calibrate(act, x, quantiles=(0.1, 0.9), num_breakpoints=5)
    assert act.breakpoints.shape == (5,)  # shared levels keep one pooled grid
    assert torch.allclose(act.breakpoints, torch.tensor([-8.0, -4.0, 0.0, 4.0, 8.0]))
    assert stats[""]["outside_old"] == pytest.approx(16 / 21)
    assert stats[""]["outside_new"] == pytest.approx(4 / 21)


def test_constant_and_tiny_variance_channels():
    act = tmaf.DiagonalTMAF(3, init="random")
    x = torch.stack([torch.full((50,), 0.5), torch.zeros(50), 1e-6 * torch.randn(50)], 1)
    tmaf.calibrate(act, x)
    bp = act.breakpoints
    assert bool((bp.diff(dim=1) > 0).all()) and bool((bp == 0).any(dim=1).all())
    g = 1e-3 * 0.5
    assert torch.allclose(bp[0], torch.tensor([0.0] + [0.5 + k * g for k in range(8)]))
    assert torch.allclose(bp[1], torch.arange(9) * 1e-6)  # all zeros: 0, g, 2g, ... with g = 1e-6
    assert bool(torch.isfinite(act.levels).all())


def test_non_finite_positions_are_ignored_with_a_warning():
    x = torch.randn(200, C)
    bad = x.clone()
    bad[3, 1], bad[7, 0] = float("nan"), float("inf")
    keep = torch.ones(200, dtype=torch.bool)
    keep[[3, 7]] = False
    a, b = tmaf.DiagonalTMAF(C), tmaf.DiagonalTMAF(C)
    with pytest.warns(RuntimeWarning, match="2 of 200"):
        tmaf.calibrate(a, bad)
    tmaf.calibrate(b, x[keep])
    assert torch.equal(a.breakpoints, b.breakpoints)
    with pytest.raises(ValueError, match="only non-finite"), pytest.warns(RuntimeWarning):
        tmaf.calibrate(tmaf.DiagonalTMAF(C), torch.full((4, C), float("nan")))


def test_errors():
    with pytest.raises(ValueError, match="Sequential holds no TMAF"):
        tmaf.calibrate(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(3, 2))
    with pytest.raises(ValueError, match="empty"):
        tmaf.calibrate(tmaf.DiagonalTMAF(C), [])
    with pytest.raises(ValueError, match="unknown layer"):
        tmaf.calibrate(tmaf.DiagonalTMAF(C), torch.randn(3, C), layers=["nope"])
    with pytest.raises(ValueError, match="quantiles"):
        tmaf.calibrate(tmaf.DiagonalTMAF(C), torch.randn(3, C), quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="not materialised"):
        tmaf.calibrate(tmaf.LazyDiagonalTMAF(), torch.randn(3, C))
    two = nn.ModuleDict({"a": tmaf.DiagonalTMAF(C), "b": tmaf.DiagonalTMAF(C)})
    two.forward = lambda x: two["a"](x)
    with pytest.raises(ValueError, match="'b' never ran"):
        tmaf.calibrate(two, torch.randn(3, C))


def test_layers_option_max_samples_and_determinism():
    model = nn.Sequential(tmaf.DiagonalTMAF(C), tmaf.DiagonalTMAF(C))
    x = torch.randn(3000, C)
    stats = tmaf.calibrate(model, list(x.split(100)), layers=["1"], max_samples=256, seed=3)
    assert list(stats) == ["1"] and model[0].breakpoints.shape == (9,)
    again = nn.Sequential(tmaf.DiagonalTMAF(C), tmaf.DiagonalTMAF(C))
    tmaf.calibrate(again, list(x.split(100)), layers=["1"], max_samples=256, seed=3)
    assert torch.equal(model[1].breakpoints, again[1].breakpoints)
    full = nn.Sequential(tmaf.DiagonalTMAF(C), tmaf.DiagonalTMAF(C))
    tmaf.calibrate(full, x, layers=["1"])  # all 3000 positions
    # layer 1 sees relu(x): half its quantiles tie at 0 and are spread by the minimal gap
    _grid_ok(full[1].breakpoints, 9)
    assert (model[1].breakpoints - full[1].breakpoints).abs().max() < 0.5  # a sample of the data


def test_lazy_after_materialisation():
    act = tmaf.LazyTridiagonalTMAF(channel_dim=-1)
    x = torch.randn(100, C) * 3
    before = act(x)
    tmaf.calibrate(act, x)
    _grid_ok(act.breakpoints, 9)
    assert torch.equal(act(x), before)


def test_state_dict_round_trip():
    torch.manual_seed(2)
    act = tmaf.TridiagonalTMAF(C)
    with torch.no_grad():
        act.levels.normal_()
    x = torch.randn(100, C) * 2
    tmaf.calibrate(act, x, num_breakpoints=7)
    sd = act.state_dict()
    fresh = tmaf.TridiagonalTMAF(C, breakpoints=torch.zeros(C, 7).cumsum(1) + torch.arange(7.0))
    fresh.load_state_dict(sd)
    assert torch.equal(fresh(x), act(x))
    plain = tmaf.TridiagonalTMAF(C)  # a fresh default layer: reshape the buffer, then load
    plain.breakpoints = torch.empty(C, 7)
    plain.levels = nn.Parameter(torch.empty(C, 3, 8))
    plain.load_state_dict(sd)
    assert torch.equal(plain(x), act(x))


def test_convert_then_calibrate():
    model = tmaf.convert(nn.Sequential(nn.Linear(3, C), nn.ReLU(), nn.Linear(C, 2)), "diagonal")
    x = torch.randn(100, 3) * 3
    before = model(x)
    stats = tmaf.calibrate(model, x)
    assert len(stats) == 1 and torch.equal(model(x), before)


def _ddp_worker(rank, world, port, out, fail_rank=None):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(3)  # the same initial layer on both ranks
        act = tmaf.TridiagonalTMAF(C)
        with torch.no_grad():
            act.levels.normal_()
        x = torch.randn(200, C, generator=torch.Generator().manual_seed(10 + rank)) * (1 + rank)
        try:
            stats = tmaf.calibrate(act, [] if rank == fail_rank else x)
        except (ValueError, RuntimeError) as e:
            torch.save({"error": f"{type(e).__name__}: {e}"}, f"{out}/rank{rank}.pt")
            return
        torch.save({"bp": act.breakpoints, "lv": act.levels.detach(), "stats": stats},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_take_rank0_calibration(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.manual_seed(3)  # rank 0's calibration, done alone, is what both ranks hold
    act = tmaf.TridiagonalTMAF(C)
    with torch.no_grad():
        act.levels.normal_()
    x0 = torch.randn(200, C, generator=torch.Generator().manual_seed(10)) * 1
    alone = tmaf.calibrate(act, x0)
    for r in (r0, r1):
        assert torch.equal(r["bp"], act.breakpoints) and torch.equal(r["lv"], act.levels.detach())
        assert r["stats"] == alone


def test_distributed_failure_on_one_rank_raises_on_every_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), 1), nprocs=2, join=True)  # no hang
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r1["error"].startswith("ValueError") and "inputs is empty" in r1["error"]
    assert r0["error"].startswith("RuntimeError") and "another rank" in r0["error"]


def test_ddp_wrapper_is_refused(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(tmaf.DiagonalTMAF(C))
        with pytest.raises(ValueError, match="before wrapping"):
            tmaf.calibrate(ddp, torch.randn(10, C))
    finally:
        dist.destroy_process_group()


def test_outside_fraction_per_channel_and_errors():
    grids = torch.tensor([[-1.0, 0.0, 1.0], [-10.0, 0.0, 10.0]])
    act = tmaf.DiagonalTMAF(2, breakpoints=grids, channel_dim=1)
    x = torch.tensor([[5.0, 5.0], [0.5, -20.0], [float("nan"), 0.0], [-1.0, 10.0]])
    # finite values: 7; outside: 5.0 (ch 0) and -20.0 (ch 1); the ends -1 and 10 are inside
    model = nn.Sequential(act, nn.Identity())
    assert tmaf.outside_fraction(model, [x[:2], x[2:]]) == {"0": pytest.approx(2 / 7)}
    assert tmaf.outside_fraction(act, x[:, :, None].expand(4, 2, 3)) == {"": pytest.approx(2 / 7)}
    shared = tmaf.TridiagonalTMAF(2)  # the default grid [-2, 2]
    assert tmaf.outside_fraction(shared, torch.tensor([[3.0, 0.0]])) == {"": 0.5}
    with pytest.raises(ValueError, match="no TMAF layer"):
        tmaf.outside_fraction(nn.ReLU(), x)
    with pytest.raises(ValueError, match="unknown layer"):
        tmaf.outside_fraction(model, x, layers=["9"])
    with pytest.raises(ValueError, match="empty"):
        tmaf.outside_fraction(model, [])
    with pytest.raises(ValueError, match="no finite input"):
        tmaf.outside_fraction(act, torch.full((2, 2), float("inf")))


def test_calibration_lowers_the_outside_fraction():
    act = tmaf.DiagonalTMAF(C, channel_dim=-1)
    x = torch.randn(2000, C) * torch.linspace(0.5, 6, C)
    before = tmaf.outside_fraction(act, x)[""]
    stats = tmaf.calibrate(act, x, max_samples=2000)
    after = tmaf.outside_fraction(act, x)[""]
    assert after < 0.011 < before and after == pytest.approx(stats[""]["outside_new"])
