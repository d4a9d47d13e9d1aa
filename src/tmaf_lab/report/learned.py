"""Learned-activation section: TMAF layers rebuilt from each TMAF run's checkpoint and
drawn with :mod:`tmaf.plot` (curves vs ReLU, levels, couplings, dead/linear channels); pwl
layers rebuilt from a pwl run's checkpoint and drawn as f_i(y) against ReLU."""

from __future__ import annotations

from pathlib import Path

from tmaf.factory import is_tmaf_name
from tmaf_lab.report import figures
from tmaf_lab.report.collect import Collection, Skipped, TrainRun
from tmaf_lab.report.document import Block, Heading, Image, Para, Table
from tmaf_lab.report.layout import (
    Options,
    display,
    display_rel,
    run_images,
    setting,
    setting_label,
    slug,
    train_groups,
)
from tmaf_lab.report.stats import base_activation, sort_activations


def _key(run: TrainRun) -> tuple:
    return (run.dataset, run.model, run.arm, run.epochs, run.seed, setting(run))


def find_checkpoint(run: TrainRun, reruns: list[TrainRun]) -> tuple[Path, str] | None:
    """The run's own newest checkpoint, or one from a rerun of the same configuration
    (``tmaf report --checkpoints DIR``), with a note comparing the rerun's test metrics."""
    if run.checkpoints:
        return run.checkpoints[-1], ""
    for r in reruns:
        if r.checkpoints and _key(r) == _key(run):
            same = (r.test_acc, r.test_loss) == (run.test_acc, run.test_loss)
            return r.checkpoints[-1], (
                f" (a rerun of {display(run.folder)}: test acc {r.test_acc} / loss "
                f"{r.test_loss:.6g} vs {run.test_acc} / {run.test_loss:.6g}, "
                f"{'identical' if same else 'DIFFERENT'})")
    return None


def activation_figures(run: TrainRun, ckpt: Path, note: str, opt: Options,
                       skipped: list[Skipped], index: int = 0) -> list[Block]:
    """Figures + dead/linear table for one TMAF run, from a checkpoint of it."""
    try:
        import tmaf.plot as tplot

        layers = figures.tmaf_layers_from_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 - a bad checkpoint is reported, never fatal
        skipped.append(Skipped(str(ckpt), f"no learned-activation figure ({e})"))
        return []
    base = opt.out / "figures" / slug(f"act{index:02d}-{run.dataset}-{run.model}-"
                                      f"{run.arm}-s{run.seed}")
    label = (f"{run.dataset} / {run.model} / {setting_label(setting(run))} / {run.arm} "
             f"/ seed {run.seed}")
    out: list[Block] = [Heading(3, label)]
    if note:
        out.append(Para(f"Checkpoint {display(ckpt)}{note}."))
    figs = [("activations", tplot.activations(layers, channels=opt.activation_channels),
             f"alpha(y)·y of the first {opt.activation_channels} channels per layer "
             "(dashed: ReLU)"),
            ("levels", tplot.levels_heatmap(layers, minus_relu=True),
             "levels minus their ReLU start (what training changed), channel x interval")]
    if any(getattr(m, "bandwidth", 0) > 0 for m in layers.values()):
        figs.append(("coupling", tplot.couplings(layers), "off-diagonal coupling strength"))
    for tag, fig, what in figs:
        path = figures.save(fig, base.with_name(base.name + f"-{tag}.png"))
        out.append(Image(display_rel(path, opt.out), f"{label}: {what}; from {display(ckpt)}"))
    rows = tuple((r["layer"], str(r["channels"]), str(r["bandwidth"]), str(len(r["dead"])),
                  str(len(r["linear"]))) for r in tplot.channel_summary(layers))
    out.append(Table(("layer", "channels", "bandwidth", "dead", "linear"), rows,
                     "dead = all levels 0 (output identically 0); linear = every entry's "
                     "levels equal across intervals."))
    return out


def pwl_layers_from_checkpoint(path: Path) -> dict:
    """name -> PiecewiseLinear rebuilt from ``*slopes`` / ``*breakpoints`` of a checkpoint."""
    import torch

    from tmaf_lab.pwl import PiecewiseLinear

    obj = figures.load_checkpoint(path)
    state = obj.get("model", obj) if isinstance(obj, dict) else {}
    layers = {}
    for key, slopes in state.items():
        bp = state.get(key[: -len("slopes")] + "breakpoints")
        if isinstance(key, str) and key.endswith("slopes") and isinstance(bp, torch.Tensor):
            layer = PiecewiseLinear(slopes.shape[0], breakpoints=bp.float())
            layer.load_state_dict({"slopes": slopes.float(), "breakpoints": bp.float()})
            layers[key[: -len("slopes")].rstrip(".").removeprefix("module.") or "act"] = layer
    if not layers:
        raise ValueError(f"{path}: no pwl slopes in checkpoint")
    return layers


def pwl_figure(run: TrainRun, ckpt: Path, opt: Options, skipped: list[Skipped],
               index: int) -> list[Block]:
    """f_i(y) of the first channels of every pwl layer, against ReLU, from a checkpoint."""
    try:
        import torch

        layers = pwl_layers_from_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 - a bad checkpoint is reported, never fatal
        skipped.append(Skipped(str(ckpt), f"no learned-activation figure ({e})"))
        return []
    y = torch.linspace(-3, 3, 241)
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig = figures.new_figure(3.2 * cols, 2.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    for ax, (name, layer) in zip(axes, layers.items(), strict=False):
        for i, curve in enumerate(layer.curves(y)[:opt.activation_channels]):
            ax.plot(y, curve, lw=1.2, color=f"C{i}")
        ax.plot(y, torch.relu(y), "k--", lw=0.8, label="ReLU")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xlabel("y")
    axes[0].legend(fontsize=8)
    label = (f"{run.dataset} / {run.model} / {setting_label(setting(run))} / {run.arm} "
             f"/ seed {run.seed}")
    path = figures.save(fig, opt.out / "figures" / slug(
        f"act{index:02d}-{run.dataset}-{run.model}-pwl-s{run.seed}-activations.png"))
    return [Heading(3, label), Image(display_rel(path, opt.out),
                                     f"{label}: f(y) of the first {opt.activation_channels} "
                                     f"channels per layer (dashed: ReLU); from {display(ckpt)}")]


def activations_section(col: Collection, opt: Options) -> list[Block]:
    blocks: list[Block] = []
    count = 0
    for by_act in train_groups(col.train).values():
        for act in sort_activations(by_act):
            runs = sorted(by_act[act], key=lambda r: r.seed)
            found = [(r, c) for r in runs if (c := find_checkpoint(r, col.reruns))]
            base = base_activation(act)
            if (is_tmaf_name(base) or base == "pwl") and found \
                    and count < opt.max_activation_figures:
                run, (ckpt, note) = found[0]
                blocks += (pwl_figure(run, ckpt, opt, col.skipped, count) if base == "pwl" else
                           activation_figures(run, ckpt, note, opt, col.skipped, count))
                count += 1
            for r in runs[:1]:
                for src, img in run_images(r.images, opt,
                                           slug(f"run-{r.dataset}-{r.model}-{act}-s{r.seed}")):
                    blocks.append(Image(img, f"{display(src)} (saved by the run)"))
    if not blocks:
        return []
    return [Heading(2, "Learned activations")] + blocks
