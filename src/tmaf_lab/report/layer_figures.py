"""Figures of what TMAF layers learned (Liu, Cao, Li, Zikatanov, arXiv 2109.09948).

A TMAF layer computes sigma(y)_i = sum_{|d| <= b} alpha_{i,d}(y_{i+d}) y_{i+d} with
piecewise-constant alpha (levels t_{i,d,k} on the intervals cut by the breakpoints).
This module draws, for every TMAF layer of a model:

- :func:`activations` -- the 1-D functions alpha_{i,0}(y) y of chosen channels (and,
  optionally, the off-diagonal terms alpha_{i,d}(y) y) against the ReLU reference;
- :func:`levels_heatmap` -- the levels t_{i,d,k} as a channels x intervals image;
- :func:`couplings` -- for banded layers, how strong the off-diagonal entries are
  (:func:`coupling_strength`, :func:`coupling_matrix` give the numbers);
- :func:`channel_summary` / :func:`channel_summary_figure` -- dead channels (every
  level 0: sigma_i is identically 0) and linear channels (each entry's levels equal
  across intervals: sigma_i is linear in y).

Everything returns data or a ``matplotlib.figure.Figure`` drawn on an Agg canvas;
nothing is shown and pyplot's global state is never touched. matplotlib is imported
only inside the plotting functions (``pip install tmaf[lab]``); the data functions need
only torch. Every function takes a model (all TMAF sub-modules, named as in the
model), a single TMAF layer, or a mapping ``name -> layer``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["activations", "levels_heatmap", "relu_levels", "coupling_strength", "coupling_matrix",
           "couplings", "channel_summary", "channel_summary_figure", "tmaf_layers"]


# ---------------------------------------------------------------- data helpers (torch only)

def _is_tmaf(m: Any) -> bool:
    from tmaf import is_tmaf

    return is_tmaf(m)


def tmaf_layers(obj: nn.Module | Mapping[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    """[(name, layer)] for a TMAF layer, a model holding TMAF layers, or a name -> layer map."""
    if isinstance(obj, Mapping):
        layers = [(str(k), v) for k, v in obj.items() if _is_tmaf(v)]
    elif isinstance(obj, nn.Module) and _is_tmaf(obj):
        layers = [(type(obj).__name__, obj)]
    elif isinstance(obj, nn.Module):
        from tmaf import tmaf_modules

        layers = list(tmaf_modules(obj))
    else:
        raise TypeError(f"expected an nn.Module or a mapping name -> TMAF layer, "
                        f"got {type(obj).__name__}")
    if not layers:
        raise ValueError(f"no TMAF layer found in {type(obj).__name__} "
                         "(expected DiagonalTMAF / TridiagonalTMAF / BandedTMAF modules)")
    return layers


def _levels3(layer: nn.Module) -> torch.Tensor:
    """Levels as (C, 2b+1, m+1) on the CPU in float64 (diagonal layers get b = 0)."""
    t = layer.levels.detach().to("cpu", torch.float64)
    return t.unsqueeze(1) if t.dim() == 2 else t


def _band_mask(c: int, b: int) -> torch.Tensor:
    """(C, 2b+1) bool: True where offset d = idx - b reaches a channel 0 <= i+d < C.
    C = 1 means one set of levels shared by all channels: every offset is used."""
    if c == 1:
        return torch.ones(1, 2 * b + 1, dtype=torch.bool)
    i = torch.arange(c).unsqueeze(1)
    d = torch.arange(-b, b + 1).unsqueeze(0)
    return (i + d >= 0) & (i + d < c)


def coupling_strength(layer: nn.Module) -> torch.Tensor:
    """Mean |t_{i,d,k}| per offset d = -b..b over the channels that have that offset.

    Returns: (2b+1,) float64; index d+b is offset d (a diagonal layer gives shape (1,)).
    """
    lv = _levels3(layer).abs().mean(dim=2)  # (C, 2b+1)
    b = (lv.shape[1] - 1) // 2
    mask = _band_mask(lv.shape[0], b)
    return (lv * mask).sum(0) / mask.sum(0).clamp_min(1)


def coupling_matrix(layer: nn.Module) -> torch.Tensor:
    """(C, C) float64: entry (i, j) = mean_k |t_{i, j-i, k}| for |j-i| <= b, else 0."""
    lv = _levels3(layer).abs().mean(dim=2)
    c, w = lv.shape
    b = (w - 1) // 2
    out = torch.zeros(c, c, dtype=torch.float64)
    for d in range(-b, b + 1):
        i = torch.arange(max(0, -d), min(c, c - d))
        out[i, i + d] = lv[i, d + b]
    return out


def channel_summary(model_or_layers: Any, atol: float = 1e-6,
                    rtol: float = 1e-5) -> list[dict[str, Any]]:
    """Dead and linear channels per TMAF layer.

    A channel i is *dead* when every level it uses is 0 (|t| <= atol), so sigma_i == 0;
    it is *linear* when, for every offset d it uses, max_k t_{i,d,k} - min_k t_{i,d,k} <=
    atol + rtol * max|t_{i,d,:}| (alpha_{i,d} constant, so sigma_i is linear) and it is
    not dead. Offsets that fall outside 0..C-1 are ignored.

    Returns: one dict per layer: ``layer`` (name), ``channels`` (C), ``bandwidth`` (b),
    ``dead`` and ``linear`` (sorted channel indices).
    """
    rows = []
    for name, layer in tmaf_layers(model_or_layers):
        lv = _levels3(layer)
        c, w, _ = lv.shape
        b = (w - 1) // 2
        mask = _band_mask(c, b)  # (C, 2b+1)
        big = lv.abs().amax(dim=2)
        dead = ((big <= atol) | ~mask).all(dim=1)
        spread = lv.amax(dim=2) - lv.amin(dim=2)
        flat = ((spread <= atol + rtol * big) | ~mask).all(dim=1)
        rows.append({"layer": name, "channels": c, "bandwidth": b,
                     "dead": torch.nonzero(dead).flatten().tolist(),
                     "linear": torch.nonzero(flat & ~dead).flatten().tolist()})
    return rows


def _grid(layer: nn.Module, points: int, margin: float = 0.25) -> torch.Tensor:
    """A 1-D grid spanning the layer's breakpoints plus ``margin`` of their range each side."""
    bp = layer.breakpoints.detach().to("cpu", torch.float64)
    low, high = float(bp.min()), float(bp.max())
    span = high - low if high > low else max(1.0, abs(low))
    return torch.linspace(low - margin * span, high + margin * span, points, dtype=torch.float64)


def _channels(spec: int | Sequence[int], c: int, name: str) -> list[int]:
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"channels must be >= 1 or a list of indices, got {spec}")
        return list(range(min(spec, c)))
    chans = list(spec)
    bad = [i for i in chans if not 0 <= i < c]
    if bad:
        raise ValueError(f"channels {bad} out of range for layer {name!r} with {c} channels")
    return chans


# ---------------------------------------------------------------- figures (matplotlib)

def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("tmaf_lab.report.layer_figures needs matplotlib: "
                          "pip install tmaf[lab]") from e
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int, ncols: int, size: tuple[float, float]):
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    fig = _figure(size[0] * cols, size[1] * rows)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _kind(layer: nn.Module) -> str:
    b = int(getattr(layer, "bandwidth", 0) or 0)
    kind = {0: "diagonal", 1: "tridiagonal"}.get(b, f"banded b={b}")
    return f"continuous {kind}" if getattr(layer, "form", "jump") == "continuous" else kind


def activations(model_or_layers: Any, channels: int | Sequence[int] = 4, *,
                y: torch.Tensor | None = None, offsets: bool = False, reference: bool = True,
                points: int = 801, ncols: int = 3,
                panel_size: tuple[float, float] = (3.8, 2.9), title: str | None = None):
    """Learned 1-D activations alpha_{i,0}(y) y (continuous form: F_{i,0}(y)), one panel per
    TMAF layer.

    Args:
        model_or_layers: a model, a TMAF layer, or a mapping name -> TMAF layer.
        channels: the first ``n`` channels of each layer, or a list of channel indices.
        y: 1-D grid (G,); default: the breakpoint range plus 25% on each side.
        offsets: also draw the off-diagonal terms alpha_{i,d}(y) y (d != 0, dotted);
            each is a function of the neighbour's input y_{i+d}.
        reference: draw ReLU max(y, 0) dashed (what every TMAF layer starts as).
    Returns: a ``matplotlib.figure.Figure``.
    """
    layers = tmaf_layers(model_or_layers)
    fig, axes = _panels(len(layers), ncols, panel_size)
    for ax, (name, layer) in zip(axes, layers, strict=True):
        grid = _grid(layer, points) if y is None else y.detach().to("cpu", torch.float64)
        lv = layer.levels
        with torch.no_grad():
            curves = layer.curves(grid.to(lv.device, lv.dtype)).to("cpu", torch.float64).numpy()
        x = grid.numpy()
        b = (curves.shape[1] - 1) // 2
        for n, i in enumerate(_channels(channels, curves.shape[0], name)):
            ax.plot(x, curves[i, b], color=f"C{n % 10}", lw=1.3, label=f"ch {i}")
            for d in range(-b, b + 1) if offsets else ():
                if d != 0 and 0 <= i + d < curves.shape[0]:
                    ax.plot(x, curves[i, b + d], color=f"C{n % 10}", lw=0.8, ls=":")
        if reference:
            ax.plot(x, x.clip(min=0), color="black", ls="--", lw=1, label="ReLU")
        ax.set_title(f"{name} ({_kind(layer)}, C={curves.shape[0]})", fontsize=9)
        ax.set_xlabel("y" + (" (dotted: off-diagonal terms)" if offsets and b else ""))
        ax.set_ylabel("F(y)" if getattr(layer, "form", "jump") == "continuous" else "alpha(y) y")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def relu_levels(layer: nn.Module) -> torch.Tensor:
    """The levels of the ReLU start, (C, 2b+1, m+1) float64: on the diagonal, 1 on the
    intervals right of 0 (k > #{s_j < 0}) and 0 elsewhere; off-diagonals 0."""
    lv = _levels3(layer)
    bp = layer.breakpoints.detach().to("cpu", torch.float64).reshape(-1, lv.shape[-1] - 1)
    # interval of 0 per channel, k(0) = #{s_j < 0}; the ReLU start is 1 right of it
    zero = (bp < 0).sum(-1, keepdim=True)  # (C|1, 1)
    right = torch.arange(lv.shape[-1]) > zero
    out = torch.zeros_like(lv)
    out[:, (lv.shape[1] - 1) // 2] = right.to(lv.dtype).expand(lv.shape[0], -1)
    return out


def levels_heatmap(model_or_layers: Any, offset: int = 0, *, minus_relu: bool = False,
                   ncols: int = 3, panel_size: tuple[float, float] = (3.8, 3.0),
                   title: str | None = None):
    """Levels t_{i,offset,k} of each TMAF layer as a channels x intervals image.

    The colour scale is symmetric about 0 (blue negative, red positive); interval k is
    (s_k, s_{k+1}] with s_0 = -inf, s_{m+1} = +inf. ``minus_relu=True`` shows
    t - (ReLU start levels, :func:`relu_levels`): what training changed. Layers whose
    bandwidth is smaller than ``|offset|`` are left out (ValueError if none remains).
    Returns: a ``matplotlib.figure.Figure``.
    """
    layers = [(n, m) for n, m in tmaf_layers(model_or_layers)
              if abs(offset) <= (_levels3(m).shape[1] - 1) // 2]
    if not layers:
        raise ValueError(f"no TMAF layer has offset {offset} (bandwidth >= {abs(offset)})")
    fig, axes = _panels(len(layers), ncols, panel_size)
    for ax, (name, layer) in zip(axes, layers, strict=True):
        lv = _levels3(layer) - (relu_levels(layer) if minus_relu else 0)
        img = lv[:, (lv.shape[1] - 1) // 2 + offset, :].numpy()
        vmax = float(abs(img).max()) or 1.0
        im = ax.imshow(img, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                       interpolation="nearest")
        what = "levels − ReLU start" if minus_relu else "levels"
        ax.set_title(f"{name} ({_kind(layer)}), {what}, offset {offset}", fontsize=9)
        ax.set_xlabel("interval k")
        ax.set_ylabel("channel")
        fig.colorbar(im, ax=ax, fraction=0.05)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def couplings(model_or_layers: Any, *, panel_size: tuple[float, float] = (3.6, 3.0),
              title: str | None = None):
    """Off-diagonal coupling of each banded layer: mean |level| per offset, and the C x C
    matrix of :func:`coupling_matrix` (log colour scale). Diagonal layers are left out;
    ValueError if no layer has bandwidth > 0.
    Returns: a ``matplotlib.figure.Figure``.
    """
    layers = [(n, m) for n, m in tmaf_layers(model_or_layers) if _levels3(m).shape[1] > 1]
    if not layers:
        raise ValueError("couplings needs a banded TMAF layer (bandwidth > 0); "
                         "all layers are diagonal")
    fig = _figure(2 * panel_size[0], panel_size[1] * len(layers))
    from matplotlib.colors import LogNorm

    axes = fig.subplots(len(layers), 2, squeeze=False)
    for (ax_bar, ax_mat), (name, layer) in zip(axes, layers, strict=True):
        s = coupling_strength(layer).numpy()
        b = (len(s) - 1) // 2
        bars = ax_bar.bar(range(-b, b + 1), s,
                          color=["C3" if d == 0 else "C0" for d in range(-b, b + 1)])
        ax_bar.bar_label(bars, fmt="%.3g", fontsize=7)
        ax_bar.set_xlabel("offset d (entry multiplies y_{i+d})")
        ax_bar.set_ylabel("mean |level|")
        ax_bar.set_title(f"{name} ({_kind(layer)})", fontsize=9)
        mat = coupling_matrix(layer)
        pos = mat[mat > 0]
        log = len(pos) > 0 and pos.max() > pos.min()
        norm = LogNorm(float(pos.min()), float(pos.max())) if log else None
        im = ax_mat.imshow(mat.masked_fill(mat <= 0, float("nan")).numpy(), cmap="viridis",
                           norm=norm, interpolation="nearest")
        ax_mat.set_title("mean |level| of entry (i, j)", fontsize=9)
        ax_mat.set_xlabel("input channel j")
        ax_mat.set_ylabel("output channel i")
        fig.colorbar(im, ax=ax_mat, fraction=0.05)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def channel_summary_figure(model_or_layers: Any, atol: float = 1e-6, rtol: float = 1e-5, *,
                           title: str | None = None):
    """Stacked bars per layer: dead, linear and nonlinear channel counts
    (definitions in :func:`channel_summary`). Returns: a ``matplotlib.figure.Figure``."""
    rows = channel_summary(model_or_layers, atol, rtol)
    fig = _figure(max(4.0, 0.9 * len(rows) + 2), 3.2)
    ax = fig.add_subplot()
    names = [r["layer"] for r in rows]
    dead = [len(r["dead"]) for r in rows]
    lin = [len(r["linear"]) for r in rows]
    rest = [r["channels"] - a - b for r, a, b in zip(rows, dead, lin, strict=True)]
    x = range(len(rows))
    ax.bar(x, dead, color="C3", label="dead")
    ax.bar(x, lin, bottom=dead, color="C1", label="linear")
    ax.bar(x, rest, bottom=[a + b for a, b in zip(dead, lin, strict=True)], color="C0",
           label="nonlinear")
    ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    ax.set_title(title or "TMAF channels: dead / linear / nonlinear", fontsize=10)
    return fig
