"""tmaf_lab.report.layer_figures: figures hold the right data; dead/linear summary and couplings are exact."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
from torch import nn

tmaf = pytest.importorskip("tmaf")
if not hasattr(tmaf, "DiagonalTMAF"):
    pytest.skip("tmaf core not available yet", allow_module_level=True)
from tmaf_lab.report import layer_figures as tplot  # noqa: E402

BPS = torch.tensor([-1.0, 0.0, 1.0])  # 4 intervals


def alpha_times_y(levels: torch.Tensor, bps: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Independent reference: levels (m+1,) -> alpha(y) * y on the grid y."""
    k = torch.bucketize(y, bps, right=False)
    return levels[k] * y


def diagonal_layer() -> nn.Module:
    layer = tmaf.DiagonalTMAF(5, breakpoints=BPS)
    with torch.no_grad():
        layer.levels[1] = 0.0  # dead
        layer.levels[2] = 0.7  # linear
        layer.levels[3] = 1e-9  # dead within atol
        layer.levels[4] = torch.tensor([0.2, -0.5, 1.5, 0.9])  # nonlinear
    return layer


def tridiagonal_layer() -> nn.Module:
    layer = tmaf.TridiagonalTMAF(4, breakpoints=BPS)
    with torch.no_grad():
        layer.levels[0] = 0.0
        layer.levels[0, 0] = 5.0  # offset -1 of channel 0 is outside the band: ignored
        layer.levels[2] = 0.3  # every entry constant -> linear
        layer.levels[3, 1] = 0.0  # diagonal off, but a nonlinear offset -1 term remains
        layer.levels[3, 0] = torch.tensor([0.0, 0.0, 1.0, 2.0])
    return layer


def test_channel_summary_diagonal():
    (row,) = tplot.channel_summary(diagonal_layer())
    assert row["channels"] == 5 and row["bandwidth"] == 0
    assert row["dead"] == [1, 3] and row["linear"] == [2]


def test_channel_summary_banded_ignores_out_of_band_levels():
    (row,) = tplot.channel_summary({"act": tridiagonal_layer()})
    assert row["layer"] == "act" and row["bandwidth"] == 1
    assert row["dead"] == [0] and row["linear"] == [2]


@pytest.mark.parametrize("atol, dead", [(1e-6, [1, 3]), (1e-12, [1])])
def test_channel_summary_tolerance(atol, dead):
    assert tplot.channel_summary(diagonal_layer(), atol=atol)[0]["dead"] == dead


def test_coupling_numbers():
    torch.manual_seed(0)
    layer = tmaf.BandedTMAF(5, 2, breakpoints=BPS)
    with torch.no_grad():
        layer.levels.copy_(torch.randn_like(layer.levels))
    lv = layer.levels.detach().double().abs().mean(-1)  # (C, 5)
    mat = tplot.coupling_matrix(layer)
    for i in range(5):
        for j in range(5):
            want = lv[i, j - i + 2] if abs(j - i) <= 2 else 0.0
            assert mat[i, j] == pytest.approx(float(want))
    strength = tplot.coupling_strength(layer)
    for idx, d in enumerate(range(-2, 3)):
        rows = [i for i in range(5) if 0 <= i + d < 5]
        assert strength[idx] == pytest.approx(float(lv[rows, idx].mean()))
    assert tplot.coupling_strength(tmaf.DiagonalTMAF(3)).shape == (1,)


def test_activations_figure_data():
    model = nn.Sequential(nn.Linear(3, 5), diagonal_layer(), nn.Linear(5, 4),
                          tridiagonal_layer())
    fig = tplot.activations(model, channels=3, points=101)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(axes) == 2  # one panel per TMAF layer, named as in the model
    assert "1 (diagonal, C=5)" in axes[0].get_title()
    assert "3 (tridiagonal, C=4)" in axes[1].get_title()
    layer = model[1]
    y = torch.tensor(axes[0].lines[0].get_xdata(), dtype=torch.float64)
    assert y.min() < -1 and y.max() > 1  # spans the breakpoints
    for ch in range(3):
        got = torch.tensor(axes[0].lines[ch].get_ydata(), dtype=torch.float64)
        want = alpha_times_y(layer.levels[ch].detach().double(), BPS.double(), y)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    relu = axes[0].lines[-1]
    assert relu.get_label() == "ReLU"
    torch.testing.assert_close(torch.tensor(relu.get_ydata()), y.clamp_min(0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_activations_offsets_and_channel_list():
    layer = tridiagonal_layer()
    fig = tplot.activations(layer, channels=[3], offsets=True, reference=False, points=51)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert len(ax.lines) == 2  # channel 3: diagonal + offset -1 (offset +1 is out of band)
    y = torch.tensor(ax.lines[1].get_xdata(), dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(ax.lines[1].get_ydata(), dtype=torch.float64),
                               alpha_times_y(layer.levels[3, 0].detach().double(),
                                             BPS.double(), y), rtol=1e-5, atol=1e-6)


def test_levels_heatmap_data():
    layer = tridiagonal_layer()
    for offset in (-1, 0, 1):
        fig = tplot.levels_heatmap({"t": layer}, offset=offset)
        img = fig.axes[0].images[0].get_array()
        torch.testing.assert_close(torch.tensor(img.data, dtype=torch.float64),
                                   layer.levels[:, 1 + offset].detach().double())
    with pytest.raises(ValueError, match="offset 2"):
        tplot.levels_heatmap(layer, offset=2)


@pytest.mark.parametrize("layer", [tmaf.DiagonalTMAF(3, breakpoints=BPS),
                                   tmaf.TridiagonalTMAF(4, breakpoints=BPS),
                                   tmaf.DiagonalTMAF(2, breakpoints=torch.tensor([[-1.0, 0.0],
                                                                                  [0.0, 2.0]]))])
def test_relu_levels_match_relu_init(layer):
    torch.testing.assert_close(tplot.relu_levels(layer),
                               tplot._levels3(layer))  # freshly made = ReLU start
    with torch.no_grad():
        layer.levels.add_(0.25)
    fig = tplot.levels_heatmap(layer, minus_relu=True)
    img = torch.tensor(fig.axes[0].images[0].get_array().data)
    assert torch.allclose(img, torch.full_like(img, 0.25), atol=1e-6)


def test_couplings_and_summary_figures():
    model = nn.Sequential(diagonal_layer(), tridiagonal_layer())
    fig = tplot.couplings(model)
    bars = [p.get_height() for p in fig.axes[0].patches]
    assert bars == pytest.approx(tplot.coupling_strength(model[1]).tolist())
    with pytest.raises(ValueError, match="bandwidth > 0"):
        tplot.couplings(diagonal_layer())
    fig = tplot.channel_summary_figure(model)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [2, 1, 1, 1, 2, 2]  # dead x2 layers, linear x2, nonlinear x2


@pytest.mark.parametrize("bad, error, match", [
    (nn.Sequential(nn.Linear(2, 2), nn.ReLU()), ValueError, "no TMAF layer"),
    ("diagonal", TypeError, "expected an nn.Module"),
])
def test_bad_inputs(bad, error, match):
    with pytest.raises(error, match=match):
        tplot.activations(bad)
    with pytest.raises(error, match=match):
        tplot.channel_summary(bad)


def test_channels_out_of_range():
    with pytest.raises(ValueError, match=r"channels \[7\] out of range"):
        tplot.activations(diagonal_layer(), channels=[0, 7])


def test_import_without_matplotlib_gives_clear_error():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import tmaf\nfrom tmaf_lab.report import layer_figures as p\n"
            "layer = tmaf.DiagonalTMAF(3)\n"
            "print(p.channel_summary(layer)[0]['dead'])\n"
            "try:\n    p.activations(layer)\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[]" in out.stdout and "pip install tmaf[lab]" in out.stdout
