"""Learned-activation section: TMAF layers rebuilt from each TMAF run's checkpoint and
drawn with :mod:`tmaf.plot` (curves vs ReLU, levels, couplings, dead/linear channels)."""

from __future__ import annotations

from tmaf_lab.report import figures
from tmaf_lab.report.build import (
    Options,
    display,
    display_rel,
    run_images,
    setting,
    setting_label,
    slug,
    train_groups,
)
from tmaf_lab.report.collect import Collection, Skipped, TrainRun
from tmaf_lab.report.document import Block, Heading, Image, Table
from tmaf_lab.report.stats import is_tmaf, sort_activations


def activation_figures(run: TrainRun, opt: Options, skipped: list[Skipped],
                       index: int = 0) -> list[Block]:
    """Figures + dead/linear table for one TMAF run, from its newest checkpoint."""
    try:
        import tmaf.plot as tplot

        layers = figures.tmaf_layers_from_checkpoint(run.checkpoints[-1])
    except Exception as e:  # noqa: BLE001 - a bad checkpoint is reported, never fatal
        skipped.append(Skipped(str(run.checkpoints[-1]), f"no learned-activation figure ({e})"))
        return []
    base = opt.out / "figures" / slug(f"act{index:02d}-{run.dataset}-{run.model}-"
                                      f"{run.activation}-s{run.seed}")
    label = (f"{run.dataset} / {run.model} / {setting_label(setting(run))} / {run.activation} "
             f"/ seed {run.seed}")
    out: list[Block] = [Heading(3, label)]
    figs = [("activations", tplot.activations(layers, channels=opt.activation_channels),
             f"alpha(y)·y of the first {opt.activation_channels} channels per layer "
             "(dashed: ReLU)"),
            ("levels", tplot.levels_heatmap(layers, minus_relu=True),
             "levels minus their ReLU start (what training changed), channel x interval")]
    if any(getattr(m, "bandwidth", 0) > 0 for m in layers.values()):
        figs.append(("coupling", tplot.couplings(layers), "off-diagonal coupling strength"))
    for tag, fig, what in figs:
        path = figures.save(fig, base.with_name(base.name + f"-{tag}.png"))
        out.append(Image(display_rel(path, opt.out),
                         f"{label}: {what}; from {display(run.checkpoints[-1])}"))
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
            with_ckpt = [r for r in runs if r.checkpoints]
            if is_tmaf(act) and with_ckpt and count < opt.max_activation_figures:
                blocks += activation_figures(with_ckpt[0], opt, col.skipped, count)
                count += 1
            for r in runs[:1]:
                for src, img in run_images(r.images, opt,
                                           slug(f"run-{r.dataset}-{r.model}-{act}-s{r.seed}")):
                    blocks.append(Image(img,
                                        f"{display(src)} (saved by the run)"))
    if not blocks:
        return []
    return [Heading(2, "Learned activations")] + blocks
