"""PNG figures for the report: training curves, approximation error curves, and learned
activations rebuilt from checkpoints. Uses matplotlib's object API (no pyplot state,
Agg canvas), so nothing is ever shown and nothing leaks between figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tmaf_lab.report.stats import base_activation, sort_activations

X_KEYS = ("step", "steps", "iter", "iteration", "epoch")
Y_KEYS = ("rel_l2", "test_rel_l2", "val_rel_l2", "eval_rel_l2", "loss", "train_loss", "mse")


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def history_series(history: Any) -> tuple[list[float], list[float], str] | None:
    """(x, y, y-name) from an approx run's ``history``: a list of numbers or of dicts."""
    if not isinstance(history, list) or not history:
        return None
    if all(isinstance(h, (int, float)) and not isinstance(h, bool) for h in history):
        return list(range(len(history))), [float(h) for h in history], "loss"
    if not all(isinstance(h, dict) for h in history):
        return None
    xk = next((k for k in X_KEYS if all(k in h for h in history)), None)
    yk = next((k for k in Y_KEYS if all(isinstance(h.get(k), (int, float)) for h in history)),
              None)
    if yk is None:
        return None
    xs = [float(h[xk]) for h in history] if xk else list(range(len(history)))
    return xs, [float(h[yk]) for h in history], yk


def approx_history(runs: Sequence[dict], title: str, path: Path) -> Path | None:
    """Error (or loss) vs step, one line per run, coloured by activation, log scale."""
    series = [(r["activation"], history_series(r.get("history"))) for r in runs]
    series = [(a, s) for a, s in series if s is not None]
    if not series:
        return None
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    colors = {a: f"C{i}" for i, a in enumerate(sort_activations(a for a, _ in series))}
    labelled = set()
    for act, (xs, ys, _) in series:
        ax.plot(xs, ys, color=colors[act], lw=1.2, alpha=0.8,
                label=None if act in labelled else act)
        labelled.add(act)
    if all(y > 0 for _, (_, ys, _) in series for y in ys):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(series[0][1][2])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def approx_overview(studies: Sequence[tuple[str, Sequence[dict]]], path: Path,
                    columns: int = 3) -> Path | None:
    """One panel per (label, runs) study: the median over seeds of the error history per
    activation, log scale, one shared legend; None when fewer than two studies have a
    history. The overview of a multi-target study (the per-study figures show every run)."""
    import statistics

    panels = []
    for label, runs in studies:
        by_act: dict[str, dict[float, list[float]]] = {}
        for r in runs:
            s = history_series(r.get("history"))
            if s is not None and all(y > 0 for y in s[1]):
                for x, y in zip(s[0], s[1], strict=True):
                    by_act.setdefault(r["activation"], {}).setdefault(x, []).append(y)
        if by_act:
            panels.append((label, by_act))
    if len(panels) < 2:
        return None
    acts = sort_activations({a for _, by_act in panels for a in by_act})
    colors = {a: f"C{i}" for i, a in enumerate(acts)}
    rows = -(-len(panels) // columns)
    fig = new_figure(3.2 * min(columns, len(panels)), 2.5 * rows + 0.5)
    axes = fig.subplots(rows, min(columns, len(panels)), squeeze=False).ravel()
    for ax, (label, by_act) in zip(axes, panels, strict=False):
        for act in sort_activations(by_act):
            xs = sorted(by_act[act])
            ax.plot(xs, [statistics.median(by_act[act][x]) for x in xs], color=colors[act],
                    lw=1.2, label=act)
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for i, ax in enumerate(axes):
        ax.set_visible(i < len(panels))
        if i < len(panels) and i + columns >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("step", fontsize=8)
    handles = [axes[0].plot([], [], color=colors[a], label=a)[0] for a in acts]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(acts), fontsize=8)
    fig.supylabel("held-out rel L2 (median over seeds)", fontsize=8)
    return save(fig, path)


def _per_epoch(runs: Sequence[Any], key: str) -> dict[float, dict[int, float]]:
    """epoch -> {seed: value of ``key``} from the runs' metrics.jsonl rows."""
    out: dict[float, dict[int, float]] = {}
    for run in runs:
        for row in run.metrics:
            if isinstance(row.get(key), (int, float)):
                out.setdefault(float(row["epoch"]), {})[run.seed] = float(row[key])
    return out


def training_curves(runs_by_act: Mapping[str, Sequence[Any]], title: str,
                    path: Path) -> Path | None:
    """Test accuracy and train loss per epoch (mean over seeds, min-max band) and, when ReLU
    ran, test accuracy - ReLU per epoch, paired by seed (mean, 95 % t interval band)."""
    from tmaf_lab.report.stats import paired

    panels = (("test_acc", "test accuracy"), ("train_loss", "train loss"))
    data = {act: {key: _per_epoch(runs, key) for key, _ in panels}
            for act, runs in runs_by_act.items()}
    data = {a: d for a, d in data.items() if any(d.values())}
    if not data:
        return None
    ref = data.get("relu", {}).get("test_acc")
    ref = ref if ref and any(a != "relu" for a in data) else None
    fig = new_figure(13.0 if ref else 9.0, 3.4)
    axes = fig.subplots(1, 3 if ref else 2)
    bases = sort_activations(base_activation(a) for a in data)
    for act in sort_activations(data):
        color = f"C{bases.index(base_activation(act)) % 10}"  # a tuned arm: its base's colour,
        style = "-" if act == base_activation(act) else "--"  # dashed
        for ax, (key, _) in zip(axes, panels, strict=False):
            by_epoch = data[act][key]
            if by_epoch:
                es = sorted(by_epoch)
                vals = [list(by_epoch[e].values()) for e in es]
                ax.plot(es, [sum(v) / len(v) for v in vals], marker="o", ms=3, color=color,
                        ls=style, label=act)
                ax.fill_between(es, [min(v) for v in vals], [max(v) for v in vals],
                                color=color, alpha=0.15)
        if ref and act != "relu" and data[act]["test_acc"]:
            cur = data[act]["test_acc"]
            es = sorted(e for e in cur if e in ref)
            ps = [paired(cur[e], ref[e]) for e in es]
            axes[2].plot(es, [100 * p.mean for p in ps], marker="o", ms=3, color=color,
                         ls=style, label=act)
            if all(p.n >= 2 for p in ps):
                axes[2].fill_between(es, [100 * p.low for p in ps], [100 * p.high for p in ps],
                                     color=color, alpha=0.15)
    for ax, (_, label) in zip(axes, panels, strict=False):
        ax.set_ylabel(label)
    if ref:
        axes[2].axhline(0.0, color="k", lw=0.8)
        axes[2].set_ylabel("test acc − ReLU (pp, paired)")
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def find_state_dict(obj: Any, depth: int = 0) -> dict | None:
    """The first (nested) dict whose keys include ``*levels`` (or the former pwl's ``*slopes``)
    with tensor values."""
    import torch

    if not isinstance(obj, dict) or depth > 3:
        return None
    if any(isinstance(k, str) and k.endswith(("levels", "slopes")) and isinstance(v, torch.Tensor)
           for k, v in obj.items()):
        return obj
    for key in ("model", "model_state", "state_dict", "model_state_dict"):
        if key in obj:
            found = find_state_dict(obj[key], depth + 1)
            if found is not None:
                return found
    for v in obj.values():
        found = find_state_dict(v, depth + 1)
        if found is not None:
            return found
    return None


def load_checkpoint(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (never runs pickled code); numpy arrays
    (RNG states that ``tmaf train`` stores) are the only extra types allowed."""
    import pickle

    import numpy as np
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        core = getattr(np, "_core", None) or np.core
        allowed = [np.ndarray, np.dtype, core.multiarray._reconstruct,
                   *(type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64))]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)


def tmaf_layers_from_checkpoint(path: Path, form: str = "jump") -> dict[str, Any]:
    """Rebuild the TMAF layers (of the given ``form``) of a checkpoint from its ``*.levels`` /
    ``*.breakpoints`` only (no model class needed); ``*.slopes`` of the lab's former pwl module
    are the levels of a continuous diagonal layer, and ``*.knot_values`` / ``*.end_slopes``
    (parameterization="knot_values") give the levels of a continuous layer. Raises ValueError
    when the file holds no TMAF layer."""
    import torch

    import tmaf
    from tmaf._continuous import levels_from_knots

    obj = load_checkpoint(path)
    state = find_state_dict(obj)
    if state is None:
        raise ValueError(f"{path}: no TMAF levels in checkpoint")
    layers: dict[str, Any] = {}
    for key, levels in state.items():
        if not isinstance(key, str) or key.endswith("end_slopes"):  # read with its knot_values
            continue
        if key.endswith("knot_values"):
            prefix = key[: -len("knot_values")]
            bp, ends = state.get(prefix + "breakpoints"), state.get(prefix + "end_slopes")
            if not (isinstance(bp, torch.Tensor) and isinstance(ends, torch.Tensor)):
                continue
            key, levels, form = prefix + "levels", levels_from_knots(bp, levels, ends), "continuous"
        if not key.endswith(("levels", "slopes")):
            continue
        if key.endswith("slopes"):
            form = "continuous"
        prefix = key[: -len("levels")]
        bp = state.get(prefix + "breakpoints")
        if not isinstance(bp, torch.Tensor) or levels.dim() not in (2, 3):
            continue
        name = prefix.rstrip(".").removeprefix("module.") or "act"
        c = levels.shape[0]
        if levels.dim() == 2:
            layer = tmaf.DiagonalTMAF(c, breakpoints=bp.float(), form=form)
        else:
            layer = tmaf.BandedTMAF(c, (levels.shape[1] - 1) // 2, breakpoints=bp.float(),
                                    form=form)
        layer.load_state_dict({"levels": levels.float(), "breakpoints": bp.float()})
        layers[name] = layer
    if not layers:
        raise ValueError(f"{path}: no TMAF levels with breakpoints in checkpoint")
    return layers
