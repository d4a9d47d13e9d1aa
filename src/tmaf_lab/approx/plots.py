"""PNG plots of one target's fits: fits, error vs step, learned activation shapes.

matplotlib is imported lazily (Agg backend) so the fits import without it until a
plot is drawn. Plots use the seed-0 model of each activation.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

DPI = 80
MAX_POINTS = 1200  # 1-D fits are drawn on at most this many grid points (file size)


def save(fig, path: Path) -> None:
    """Save as a 256-colour palette PNG (a few times smaller than matplotlib's RGBA PNG)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=256).save(path, optimize=True)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fits(path: Path, title: str, grid: torch.Tensor, truth: torch.Tensor,
              preds: dict[str, torch.Tensor]) -> None:
    """1-D: target and each fit (top) and pointwise error (bottom). 2-D: error maps."""
    plt = _plt()
    if grid.shape[1] == 1:
        every = max(1, grid.shape[0] // MAX_POINTS)
        grid, truth = grid[::every], truth[::every]
        preds = {k: v[::every] for k, v in preds.items()}
        x = grid[:, 0].numpy()
        fig, (ax, ax_err) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True,
                                         gridspec_kw={"height_ratios": [2, 1]})
        ax.plot(x, truth.numpy(), color="black", lw=2.2, label="target")
        for name, p in preds.items():
            ax.plot(x, p.numpy(), lw=1, label=name)
            ax_err.semilogy(x, (p - truth).abs().clamp_min(1e-12).numpy(), lw=0.8, label=name)
        ax.legend(fontsize=8, ncol=3)
        ax.set_title(title, fontsize=9)
        ax_err.set_ylabel("|fit - target|")
        ax_err.set_xlabel("x")
    else:
        n = int(round(grid.shape[0] ** 0.5))
        extent = [float(grid[:, 0].min()), float(grid[:, 0].max()),
                  float(grid[:, 1].min()), float(grid[:, 1].max())]
        panels = [("target", truth)] + [(f"|{k} - target|", (v - truth).abs())
                                        for k, v in preds.items()]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
        for ax, (name, val) in zip(axes, panels, strict=True):
            im = ax.imshow(val.reshape(n, n).numpy(), origin="lower", extent=extent,
                           cmap="viridis")
            ax.set_title(name, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def plot_history(path: Path, title: str, runs: Sequence[dict]) -> None:
    """Held-out rel L2 vs step per activation: median over seeds, min-max band (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    by_act: dict[str, list[dict]] = {}
    for run in runs:
        if run["history"]:
            by_act.setdefault(run["activation"], []).append(run)
    for act, group in by_act.items():
        steps = [h["step"] for h in group[0]["history"]]
        table = [[h["rel_l2"] for h in r["history"]] for r in group
                 if [h["step"] for h in r["history"]] == steps]  # diverged runs stop early
        cols = [sorted(v) for v in zip(*table, strict=True)]
        median = [statistics.median(c) for c in cols]
        line, = ax.semilogy(steps, median, lw=1.4, label=f"{act} (n={len(table)})")
        if len(table) > 1:
            ax.fill_between(steps, [c[0] for c in cols], [c[-1] for c in cols],
                            color=line.get_color(), alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out rel L2 (median over seeds, min-max band)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def plot_curves(path: Path, title: str, curves: dict[str, dict], max_channels: int = 8) -> bool:
    """Learned shapes (first and last layer) per learned activation: TMAF's diagonal
    alpha_i(y) y, or pwl's f_i(y)."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(curves), 2, figsize=(8, 3 * len(curves)), squeeze=False)
    for row, (act, c) in zip(axes, curves.items(), strict=True):
        y = c["y"].numpy()
        for ax, layer in zip(row, ("first layer", "last layer"), strict=True):
            for ch in range(min(max_channels, c[layer].shape[0])):
                ax.plot(y, c[layer][ch].numpy(), lw=1)
            ax.plot(y, y.clip(min=0), color="black", ls="--", lw=1, label="ReLU (init)")
            ax.set_title(f"{act}: {layer}, channels 0-{max_channels - 1}", fontsize=8)
            ax.set_xlabel("pre-activation y")
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return True
