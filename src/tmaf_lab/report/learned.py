"""Learned-activation section: TMAF layers (either form; pwl is the continuous diagonal one)
rebuilt from each TMAF run's checkpoint and drawn with :mod:`tmaf_lab.report.layer_figures` (curves vs ReLU,
levels, couplings, dead/linear channels)."""

from __future__ import annotations

from pathlib import Path

from tmaf_lab.models import LAB_ACTIVATIONS, is_learned_name
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
        from tmaf_lab.report import layer_figures as tplot

        act = LAB_ACTIVATIONS.get(base_activation(run.arm), base_activation(run.arm))
        form = "continuous" if act.startswith("continuous_") else "jump"
        layers = figures.tmaf_layers_from_checkpoint(ckpt, form)
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
             f"{'F(y)' if form == 'continuous' else 'alpha(y)·y'} of the first "
             f"{opt.activation_channels} channels per layer "
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


def activations_section(col: Collection, opt: Options) -> list[Block]:
    blocks: list[Block] = []
    count = 0
    for by_act in train_groups(col.train).values():
        for act in sort_activations(by_act):
            runs = sorted(by_act[act], key=lambda r: r.seed)
            found = [(r, c) for r in runs if (c := find_checkpoint(r, col.reruns))]
            base = base_activation(act)
            if is_learned_name(base) and found and count < opt.max_activation_figures:
                run, (ckpt, note) = found[0]
                blocks += activation_figures(run, ckpt, note, opt, col.skipped, count)
                count += 1
            for r in runs[:1]:
                for src, img in run_images(r.images, opt,
                                           slug(f"run-{r.dataset}-{r.model}-{act}-s{r.seed}")):
                    blocks.append(Image(img, f"{display(src)} (saved by the run)"))
    if not blocks:
        return []
    return [Heading(2, "Learned activations")] + blocks
