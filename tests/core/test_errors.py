"""Bad input gets a clear TypeError/ValueError naming the expected and the actual."""

from __future__ import annotations

import pytest
import torch

import tmaf
import tmaf.functional as F

BP = torch.tensor([-1.0, 0.0, 1.0])
LV = torch.zeros(4, 3, 4)
X = torch.randn(2, 4)


@pytest.mark.parametrize("bp,match", [
    (torch.tensor([]), "at least one point"),
    (torch.zeros(4, 0), "at least one point"),
    (torch.tensor([0.0, 0.0, 1.0]), "strictly increasing"),
    (torch.tensor([1.0, 0.0, 2.0]), "strictly increasing"),
    (torch.tensor([-1.0, 0.0, float("inf")]), "finite"),
    (torch.tensor([-1.0, float("nan"), 1.0]), "finite"),
    (torch.tensor(0.0), r"shape \(m,\)"),
    (torch.zeros(1, 4, 3), r"shape \(m,\)"),
    (torch.zeros(3, 3), r"\(C, m\) = \(4, m\)"),
])
def test_bad_breakpoints(bp, match):
    with pytest.raises(ValueError, match=match):
        F.banded_tmaf(X, bp, LV)


def test_integer_breakpoints_and_input():
    with pytest.raises(TypeError, match="breakpoints must be floating point"):
        F.banded_tmaf(X, torch.tensor([-1, 0, 1]), LV)
    with pytest.raises(TypeError, match="floating-point input.*torch.int64"):
        F.banded_tmaf(torch.ones(2, 4, dtype=torch.long), BP, LV)
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        F.banded_tmaf([1.0, 2.0], BP, LV)


@pytest.mark.parametrize("lv,match", [
    (torch.zeros(4, 3, 5), r"\(C, 2b\+1, m\+1\) = \(4, 2b\+1, 4\), got \(4, 3, 5\)"),
    (torch.zeros(4, 2, 4), "must be odd"),
    (torch.zeros(3, 3, 4), r"got \(3, 3, 4\)"),
    (torch.zeros(4, 4), r"got \(4, 4\)"),
    (torch.zeros(4, 9, 4), "exceeds C-1=3"),
])
def test_bad_levels(lv, match):
    with pytest.raises(ValueError, match=match):
        F.banded_tmaf(X, BP, lv)


def test_diagonal_levels_shape():
    with pytest.raises(ValueError, match=r"\(C, m\+1\) = \(4, 4\), got \(4, 1, 4\)"):
        F.diagonal_tmaf(X, BP, torch.zeros(4, 1, 4))


def test_channel_mismatch_and_channel_dim():
    with pytest.raises(ValueError, match=r"got \(4, 3, 4\)"):
        F.banded_tmaf(torch.randn(2, 5), BP, LV)  # C = 5 vs levels for 4 channels
    with pytest.raises(ValueError, match="channel_dim=2 is out of range.*shape \\(2, 4\\)"):
        F.banded_tmaf(X, BP, LV, channel_dim=2)
    with pytest.raises(ValueError, match="channel_dim=-3"):
        tmaf.DiagonalTMAF(4, channel_dim=-3)(X)
    with pytest.raises(TypeError, match="channel_dim must be an int"):
        F.banded_tmaf(X, BP, LV, channel_dim=1.0)
    with pytest.raises(ValueError, match="has 4 channels but the input has 6"):
        tmaf.DiagonalTMAF(4)(torch.randn(2, 6))
    with pytest.raises(ValueError, match="0-d"):
        tmaf.DiagonalTMAF(4)(torch.tensor(1.0))


def test_module_construction_errors():
    with pytest.raises(ValueError, match="needs 0 among the breakpoints"):
        tmaf.DiagonalTMAF(4, breakpoints=[-1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="needs 0 among the breakpoints"):
        tmaf.DiagonalTMAF(4, breakpoints=[-1.0, 0.5], init="leaky_relu")
    tmaf.DiagonalTMAF(4, breakpoints=[-1.0, 0.5], init="identity")  # fine without 0
    with pytest.raises(ValueError, match="unknown init 'relux'"):
        tmaf.DiagonalTMAF(4, init="relux")
    with pytest.raises(ValueError, match="num_channels must be an int >= 1, got 0"):
        tmaf.DiagonalTMAF(0)
    with pytest.raises(ValueError, match="bandwidth 4 exceeds num_channels - 1 = 3"):
        tmaf.BandedTMAF(4, 4)
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        tmaf.DiagonalTMAF(4, backend="fast")
    with pytest.raises(ValueError, match="unknown backend"):
        tmaf.set_backend("cuda")
    with pytest.raises(TypeError, match="sequence of floats, got int"):
        tmaf.DiagonalTMAF(4, breakpoints=3)
    with pytest.raises(ValueError, match="lazy TMAF modules take shared breakpoints"):
        tmaf.LazyDiagonalTMAF(breakpoints=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="must be an int >= 1"):
        tmaf.uniform_breakpoints(0, -1, 1)
    with pytest.raises(ValueError, match="low < high"):
        tmaf.uniform_breakpoints(3, 1, -1)


def test_device_mismatch_meta():
    with pytest.raises(ValueError, match="one device"):
        F.banded_tmaf(X, BP.to("meta"), LV)
