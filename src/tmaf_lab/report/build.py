"""Lay out the report: main tables, per-study details, curves, learned activations, skipped.

Every number in the output comes from a results.json / metrics.jsonl it names; figures are
either drawn here from those files or copied from the run folders (PNG files the runs saved).
"""

from __future__ import annotations

import math

from tmaf_lab.report import figures
from tmaf_lab.report.collect import ApproxFits, Collection, TrainRun
from tmaf_lab.report.document import Block, Bullets, Heading, Image, Para, Table
from tmaf_lab.report.layout import (
    Options,
    display,
    display_rel,
    group_by,
    run_images,
    setting_label,
    slug,
    train_groups,
)
from tmaf_lab.report.learned import activations_section
from tmaf_lab.report.stats import fmt, fmt_stat, mean_of, sort_activations, stat
from tmaf_lab.report.vs_relu import (
    all_records,
    by_activation,
    detail_cells,
    early_cells,
    gap_table,
    paired_table,
    study_labels,
)

CONVENTIONS = ("Numbers are mean ± sample std (n−1) over seeds; '(n=1)' marks a single seed. "
               "'X − ReLU' is the paired difference (same seed: same data, data order and "
               "initial weights) averaged over the seeds both ran, with its 95 % t interval "
               "(mean ± t₀.₉₇₅,ₙ₋₁ · sd/√n). The verdict follows the interval: 'better' or "
               "'worse' when it excludes 0, 'no difference detected at n = …' when it "
               "contains 0.")


def paired_tables(records: list[dict], scale: float, unit: str, diff_unit: str,
                  what: str) -> list[Block]:
    """X − ReLU for every activation; TMAF − pwl (its continuous twin) when pwl ran."""
    out: list[Block] = [paired_table(records, scale, unit, diff_unit,
                                     f"Paired differences to ReLU ({what}).")]
    if any("vs_pwl" in r for r in records):
        out.append(paired_table(records, scale, unit, diff_unit, "TMAF − pwl, paired by seed "
                                f"({what}): the same breakpoints and parameter count, TMAF's "
                                "discontinuous form against pwl's continuous one.", "vs_pwl"))
    return out


# ---------------------------------------------------------------- approx


def finite(runs, key: str) -> list[float]:
    return [r[key] for r in runs if key in r and math.isfinite(r[key])]


def diverged_note(runs) -> str:
    n = sum(bool(r.get("diverged")) for r in runs)
    return f" ({n} diverged)" if n else ""


def approx_main_table(studies: list[ApproxFits]) -> Table:
    acts = sort_activations(r["activation"] for s in studies for r in s.runs)
    rows = []
    for label, s in zip(study_labels(studies), studies, strict=True):
        by_act = group_by(s.runs, lambda r: r["activation"])
        stats = {a: stat(finite(by_act[a], "rel_l2")) for a in acts if a in by_act}
        cells = [fmt_stat(stats[a]) + diverged_note(by_act[a]) if a in stats else "–"
                 for a in acts]
        ranked = [a for a in stats if stats[a].n]
        best = min(ranked, key=lambda a: stats[a].mean) if len(ranked) > 1 else "–"
        rows.append((label, *cells, best))
    return Table(("study", *acts, "lowest"), tuple(rows),
                 "Relative L2 error on the held-out grid (lower is better).")


def approx_detail_table(study: ApproxFits, recs: dict[str, dict]) -> Table:
    by_act = group_by(study.runs, lambda r: r["activation"])
    step = next((r["early"]["step"] for r in recs.values() if "early" in r), None)
    rows = []
    for act in sort_activations(by_act):
        runs = by_act[act]
        cells = detail_cells(recs[act]) if act in recs else ("", "", "")
        early = early_cells(recs[act]) if act in recs and step is not None else ()
        rows.append((act, str(len(runs)) + diverged_note(runs), fmt(mean_of(runs, "params"), 6),
                     fmt_stat(stat(finite(runs, "rel_l2"))), fmt_stat(stat(finite(runs, "rmse"))),
                     fmt_stat(stat(finite(runs, "max_err"))),
                     fmt(mean_of(runs, "train_seconds")), *cells, *early))
    extra = (f"rel L2 @ step {step}", f"− ReLU @ step {step} [95 % CI]") if step else ()
    caption = f"Source: {display(study.folder / 'results.json')}"
    if step:
        caption += (f". The last two columns repeat the comparison at step {step} (the history "
                    "point nearest 10 % of the run): has the gap to ReLU grown, held or vanished "
                    "since?")
    return Table(("activation", "seeds", "params", "rel L2", "RMSE", "max err", "train s",
                  "rel L2 − ReLU", "95 % CI", "vs ReLU", *extra), tuple(rows), caption)


def approx_section(col: Collection, opt: Options, records: list[dict]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Function approximation (tmaf approx)")]
    figdir = opt.out / "figures"
    for i, (label, s) in enumerate(zip(study_labels(col.approx), col.approx, strict=True)):
        expr = f" = {s.expression}" if s.expression and s.expression != s.target else ""
        blocks += [Heading(3, f"Target: {label}{expr}"),
                   approx_detail_table(s, by_activation(records, label))]
        if diverged_note(s.runs):
            blocks.append(Para("Diverged runs (non-finite training loss) are counted in "
                               "'seeds' but left out of the error statistics."))
        cfg = s.config.get("config", {})
        if cfg:
            keys = [k for k in ("dim", "domain", "width", "depth", "steps", "lr", "batch",
                                "match_params", "breakpoints", "bp_range", "dtype") if k in cfg]
            blocks.append(Para("Config: " + ", ".join(f"{k}={cfg[k]}" for k in keys)))
        name = f"approx{i:02d}-{slug(s.target)}"
        wants_plots = cfg.get("plots", True) is not False  # `tmaf approx --no-plots`
        hist = None if s.images or not wants_plots else figures.approx_history(
            s.runs, f"{label}: error during training", figdir / f"{name}-history.png")
        if hist is not None:
            blocks.append(Image(display_rel(hist, opt.out),
                                f"{label}: per-run training curve from results.json history"))
        for src, img in run_images(s.images, opt, name):
            blocks.append(Image(img,
                                f"{label}: {display(src)} (saved by the run)"))
        if len(s.images) > opt.max_images_per_run:
            blocks.append(Para(f"{len(s.images) - opt.max_images_per_run} more PNG(s) in "
                               f"{display(s.folder)} not embedded."))
    return blocks


# ---------------------------------------------------------------- train

def train_main_table(runs: list[TrainRun]) -> Table:
    groups = train_groups(runs)
    acts = sort_activations(r.arm for r in runs)
    rows = []
    for (ds, model, epochs, items), by_act in groups.items():
        stats = {a: stat(r.test_acc for r in by_act[a]) for a in acts if a in by_act}
        best = max(stats, key=lambda a: stats[a].mean) if len(stats) > 1 else "–"
        rows.append((ds, model, str(epochs), setting_label(items),
                     *(fmt_stat(stats[a], 100) if a in stats else "–" for a in acts), best))
    return Table(("dataset", "model", "epochs", "options", *acts, "highest"), tuple(rows),
                 "Test accuracy in % (higher is better); options: tmaf train settings that "
                 "differ from its defaults (config.json).")


def train_detail_table(by_act: dict[str, list[TrainRun]], recs: dict[str, dict]) -> Table:
    rows = []
    for act in sort_activations(by_act):
        runs = by_act[act]
        cells = detail_cells(recs[act], 100) if act in recs else ("", "", "")
        rows.append((act, ",".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed)),
                     fmt(sum(r.params for r in runs) / len(runs), 7),
                     fmt_stat(stat(r.test_acc for r in runs), 100),
                     fmt_stat(stat(r.test_loss for r in runs)),
                     fmt(sum(r.train_seconds for r in runs) / len(runs)), *cells))
    return Table(("activation", "seeds", "params", "test acc %", "test loss", "train s",
                  "acc − ReLU (pp)", "95 % CI (pp)", "vs ReLU"), tuple(rows))


def train_section(col: Collection, opt: Options, records: list[dict]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Image classification (tmaf train)")]
    for (ds, model, epochs, items), by_act in train_groups(col.train).items():
        title = f"{ds} / {model} / {epochs} epoch(s) / {setting_label(items)}"
        blocks += [Heading(3, title), train_detail_table(by_act, by_activation(records, title))]
        folders = sorted(display(r.folder) for runs in by_act.values() for r in runs)
        blocks.append(Para("Sources: " + ", ".join(folders)))
        name = slug(f"train-{ds}-{model}-e{epochs}-{setting_label(items)}")
        png = figures.training_curves(by_act, title, opt.out / "figures" / f"{name}.png")
        if png is not None:
            blocks.append(Image(display_rel(png, opt.out), f"{title}: test accuracy and train "
                                "loss per epoch (metrics.jsonl; line = mean over seeds, band = "
                                "min-max), and test accuracy − ReLU per epoch (paired by seed; "
                                "band = 95 % t interval)"))
    return blocks


# ---------------------------------------------------------------- whole document

def provenance(col: Collection) -> list[Block]:
    items = []
    for s in col.approx:
        items.append(f"{display(s.folder)}: commit {s.config.get('commit', 'unknown')}, "
                     f"command: {' '.join(map(str, s.config.get('argv', []))) or 'unknown'}")
    for r in sorted(col.train, key=lambda r: str(r.folder)):
        items.append(f"{display(r.folder)}: commit {r.config.get('commit', 'unknown')}, "
                     f"command: {' '.join(map(str, r.config.get('argv', []))) or 'unknown'}")
    return [Heading(2, "Provenance"), Bullets(tuple(items))] if items else []


def build(col: Collection, opt: Options, header: list[Block],
          records: list[dict] | None = None) -> list[Block]:
    """The whole report; ``records`` (from :func:`paired.all_records`) are computed if None."""
    (opt.out / "figures").mkdir(parents=True, exist_ok=True)
    records = all_records(col) if records is None else records
    approx_recs = [r for r in records if r["kind"] == "approx"]
    train_recs = [r for r in records if r["kind"] == "train"]
    blocks = list(header) + [Para(CONVENTIONS), Heading(2, "Main results")]
    if col.approx:
        blocks += [Heading(3, "Function approximation"), approx_main_table(col.approx),
                   *paired_tables(approx_recs, 1.0, "(rel L2)", "(rel L2)",
                                  "relative L2 error; lower is better")]
        gaps = gap_table(approx_recs)
        if gaps is not None:
            blocks.append(gaps)
        overview = figures.approx_overview(
            list(zip(study_labels(col.approx), (s.runs for s in col.approx), strict=True)),
            opt.out / "figures" / "approx-overview.png")
        if overview is not None:
            blocks.append(Image(display_rel(overview, opt.out), "Error during training, median "
                                "over seeds, one panel per study (log scale)"))
    if col.train:
        blocks += [Heading(3, "Image classification"), train_main_table(col.train),
                   *paired_tables(train_recs, 100.0, "(%)", "(pp)",
                                  "test accuracy in percentage points; higher is better")]
    if not col.approx and not col.train:
        blocks.append(Para("No usable runs were found."))
    if col.approx:
        blocks += approx_section(col, opt, approx_recs)
    if col.train:
        blocks += train_section(col, opt, train_recs)
        blocks += activations_section(col, opt)
    if col.other_images:
        blocks.append(Heading(2, "Other figures"))
        seen = set()
        for i, src in enumerate(col.other_images[:opt.max_images_per_run * 4]):
            if src.resolve() in seen:
                continue
            seen.add(src.resolve())
            for _, img in run_images([src], opt, f"other{i:02d}"):
                blocks.append(Image(img, f"{display(src)}"))
    blocks += provenance(col)
    blocks.append(Heading(2, f"Skipped ({len(col.skipped)})"))
    blocks.append(Bullets(tuple(f"{s.path}: {s.reason}" for s in col.skipped))
                  if col.skipped else Para("Nothing was skipped."))
    return blocks
